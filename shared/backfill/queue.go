package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/shared/backoff"
)

// SQSClient is the SQS call the queue makes.
type SQSClient interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Queue sends jobs to the sync queue, ten to a request.
type Queue struct {
	Client SQSClient
	URL    string
}

// Send queues jobs, retrying entries SQS did not take. Jobs already sent
// when it fails stay sent: every job is safe to receive twice.
func (q Queue) Send(ctx context.Context, jobs []Job) error {
	for len(jobs) > 0 {
		n := min(len(jobs), 10)
		if err := q.batch(ctx, jobs[:n]); err != nil {
			return err
		}
		jobs = jobs[n:]
	}
	return nil
}

func (q Queue) batch(ctx context.Context, jobs []Job) error {
	entries := make(map[string]sqstypes.SendMessageBatchRequestEntry, len(jobs))
	for i, j := range jobs {
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		id := strconv.Itoa(i)
		entries[id] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(string(b))}
	}
	for attempt := 0; len(entries) > 0; attempt++ {
		// SQS refused some entries (throttling): send those again, a
		// little later each time.
		if err := backoff.Sleep(ctx, time.Duration(attempt)*50*time.Millisecond); err != nil {
			return err
		}
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.URL)}
		for _, e := range entries {
			in.Entries = append(in.Entries, e)
		}
		out, err := q.Client.SendMessageBatch(ctx, in)
		if err != nil {
			return fmt.Errorf("followers: queue jobs: %w", err)
		}
		for _, ok := range out.Successful {
			delete(entries, aws.ToString(ok.Id))
		}
		if len(entries) > 0 && attempt >= 3 {
			return fmt.Errorf("followers: queue jobs: %d not accepted: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
	}
	return nil
}
