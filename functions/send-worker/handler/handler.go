// Package handler is the send-worker function: it consumes the send queue
// in SQS batches, sends each job through notify.Sender (concurrently, with
// a bound), and answers with a partial batch response: jobs that must be
// tried again are reported as failures after their visibility is set to
// the delay they need; everything else is deleted. Only a job that crashes
// the worker again and again reaches the dead-letter queue.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/notify"
	"wxbridge/shared/observe"
)

// Queue is the SQS call the worker makes itself (the event source mapping
// receives and deletes).
type Queue interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Sender sends one job.
type Sender interface {
	Send(ctx context.Context, job notify.Job, at notify.Attempt) notify.Result
	Reject(ctx context.Context, jobID string, why error) notify.Result
}

// Handler consumes the send queue.
type Handler struct {
	Sender   Sender
	Queue    Queue
	QueueURL string
	// Concurrency bounds the sends in flight within one batch; default
	// DefaultConcurrency.
	Concurrency int
	// MaxAttempts is the receive after which a transient failure is
	// recorded FAILED instead of retried; it must stay below the queue's
	// maxReceiveCount, so that only crashes reach the dead-letter queue.
	MaxAttempts int
	Log         *slog.Logger
	Metrics     *observe.Metrics
	Now         func() time.Time
}

// Defaults.
const (
	DefaultConcurrency = 10
	DefaultMaxAttempts = 6
	// DefaultLease is the claim's lease outside Lambda, where the context
	// has no deadline.
	DefaultLease = 2 * time.Minute
	// leaseMargin covers the clock skew between the worker and the table.
	leaseMargin = 5 * time.Second
)

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Handle sends a batch. A job whose goroutine never reports (a panic) is a
// batch item failure: it comes back after the queue's visibility timeout
// and counts toward the dead-letter queue's receive limit.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	n := len(ev.Records)
	failed := make([]bool, n)
	for i := range failed {
		failed[i] = true
	}
	limit := h.Concurrency
	if limit <= 0 {
		limit = DefaultConcurrency
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, m := range ev.Records {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				if p := recover(); p != nil {
					h.Log.Error("send", "request_id", observe.RequestID(ctx), "message_id", m.MessageId, "outcome", "crashed", "panic", fmt.Sprint(p))
					h.Metrics.Count("SendCrashes")
				}
			}()
			failed[i] = h.one(ctx, m)
		}()
	}
	wg.Wait()
	var out events.SQSEventResponse
	for i, f := range failed {
		if f {
			out.BatchItemFailures = append(out.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: ev.Records[i].MessageId})
		}
	}
	return out, nil
}

// one handles one message and reports whether it must come back.
func (h *Handler) one(ctx context.Context, m events.SQSMessage) bool {
	log := h.Log.With("request_id", observe.RequestID(ctx), "message_id", m.MessageId)
	receives, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
	receives = max(receives, 1)
	job, err := notify.Parse([]byte(m.Body))
	var res notify.Result
	switch {
	case err != nil && job.ID == "":
		// Nothing to record it against; it can never become valid.
		log.Error("send", "outcome", "dropped", "reason", err.Error())
		h.Metrics.Count("Sends", "outcome", "dropped", "class", "invalid")
		return false
	case err != nil:
		res = h.Sender.Reject(ctx, job.ID, err)
	default:
		maxAttempts := h.MaxAttempts
		if maxAttempts <= 0 {
			maxAttempts = DefaultMaxAttempts
		}
		res = h.Sender.Send(ctx, job, notify.Attempt{Lease: h.lease(ctx), Last: receives >= maxAttempts})
	}
	attrs := []any{"job_id", res.JobID, "uid", res.UID, "receives", receives}
	if res.Channel != "" {
		attrs = append(attrs, "channel", res.Channel)
	}
	if res.ErrCode != 0 {
		attrs = append(attrs, "errcode", res.ErrCode, "rid", res.RID)
	}
	if res.Class != "" {
		attrs = append(attrs, "class", res.Class)
	}
	if res.Reason != "" {
		attrs = append(attrs, "reason", res.Reason)
	}
	if res.Err != nil {
		attrs = append(attrs, "error", res.Err.Error())
	}
	if res.Retry == notify.NoRetry {
		outcome := string(res.Status)
		if res.Duplicate {
			outcome = "duplicate"
		}
		level := slog.LevelInfo
		if res.Status == notify.Failed || res.Err != nil {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "send", append(attrs, "outcome", outcome, "msgid", res.MsgID)...)
		h.Metrics.Count("Sends", "outcome", outcome, "class", classOf(res))
		return false
	}
	delay := notify.RetryDelay(res.Retry, receives, res.Wait, h.now())
	if err := h.delay(ctx, m, delay); err != nil {
		// The message still comes back, after the queue's own timeout.
		attrs = append(attrs, "visibility_error", err.Error())
	}
	log.Warn("send", append(attrs, "outcome", "retry", "retry_in", delay.Round(time.Second).String())...)
	h.Metrics.Count("Sends", "outcome", "retry", "class", classOf(res))
	return true
}

// classOf is the Sends metric's class dimension: the failure's class
// (wechat.Class names, "store", "invalid", "expired"), or "none".
func classOf(res notify.Result) string {
	if res.Class == "" {
		return "none"
	}
	return res.Class
}

// lease is how long a claim holds: until the invocation's deadline (after
// which Lambda has stopped this worker, so nothing can still be sending).
func (h *Handler) lease(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d.Add(leaseMargin)
	}
	return h.now().Add(DefaultLease)
}

func (h *Handler) delay(ctx context.Context, m events.SQSMessage, d time.Duration) error {
	if m.ReceiptHandle == "" {
		return errors.New("no receipt handle")
	}
	secs := int32(min(d, 12*time.Hour-time.Minute) / time.Second)
	_, err := h.Queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &h.QueueURL, ReceiptHandle: &m.ReceiptHandle, VisibilityTimeout: secs,
	})
	return err
}
