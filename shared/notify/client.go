package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Queue is the part of the SQS API the client uses.
type Queue interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Client puts jobs on the send queue. It validates each job first, so that
// a job that breaks the contract is refused at once rather than recorded
// FAILED later.
type Client struct {
	queue Queue
	url   string
}

// NewClient returns a client for the send queue at url (the stack's
// SendQueueUrl output).
func NewClient(q Queue, url string) *Client { return &Client{queue: q, url: url} }

// MaxBatch is the most messages one SQS SendMessageBatch call takes.
const MaxBatch = 10

// maxBatchBytes is SQS's limit on the bodies of one batch (and of one
// message).
const maxBatchBytes = 256 << 10

// Enqueue validates job and puts it on the queue, returning the SQS
// message id.
func (c *Client) Enqueue(ctx context.Context, job Job) (string, error) {
	body, err := encode(job)
	if err != nil {
		return "", err
	}
	out, err := c.queue.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &c.url, MessageBody: &body})
	if err != nil {
		return "", fmt.Errorf("notify: enqueue %s: %w", job.ID, err)
	}
	return aws.ToString(out.MessageId), nil
}

func encode(job Job) (string, error) {
	if err := Validate(job); err != nil {
		return "", err
	}
	b, err := json.Marshal(job)
	if err != nil {
		return "", fmt.Errorf("notify: encode %s: %w", job.ID, err)
	}
	if len(b) > maxBatchBytes {
		return "", &FieldError{Field: "(job)", Problem: fmt.Sprintf("is larger than SQS's %d bytes", maxBatchBytes)}
	}
	return string(b), nil
}

// Enqueued is what became of one job of a batch.
type Enqueued struct {
	JobID     string
	MessageID string // set when the job is on the queue
	Err       error  // why it is not
}

// EnqueueBatch validates jobs and puts the valid ones on the queue in SQS
// batches of up to 10. It returns one Enqueued per job, in order; the error
// joins every job's error (nil when all are on the queue).
func (c *Client) EnqueueBatch(ctx context.Context, jobs []Job) ([]Enqueued, error) {
	out := make([]Enqueued, len(jobs))
	var batch []sqstypes.SendMessageBatchRequestEntry
	size := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		c.sendBatch(ctx, batch, out)
		batch, size = nil, 0
	}
	for i, j := range jobs {
		out[i].JobID = j.ID
		body, err := encode(j)
		if err != nil {
			out[i].Err = err
			continue
		}
		if len(batch) == MaxBatch || size+len(body) > maxBatchBytes {
			flush()
		}
		batch = append(batch, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body)})
		size += len(body)
	}
	flush()
	var errs []error
	for _, e := range out {
		if e.Err != nil {
			errs = append(errs, e.Err)
		}
	}
	return out, errors.Join(errs...)
}

func (c *Client) sendBatch(ctx context.Context, batch []sqstypes.SendMessageBatchRequestEntry, out []Enqueued) {
	index := func(id *string) int { i, _ := strconv.Atoi(aws.ToString(id)); return i }
	res, err := c.queue.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &c.url, Entries: batch})
	if err != nil {
		for _, e := range batch {
			i := index(e.Id)
			out[i].Err = fmt.Errorf("notify: enqueue %s: %w", out[i].JobID, err)
		}
		return
	}
	for _, ok := range res.Successful {
		out[index(ok.Id)].MessageID = aws.ToString(ok.MessageId)
	}
	for _, f := range res.Failed {
		i := index(f.Id)
		out[i].Err = fmt.Errorf("notify: enqueue %s: %s: %s", out[i].JobID, aws.ToString(f.Code), aws.ToString(f.Message))
	}
}
