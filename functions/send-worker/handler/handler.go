// Package handler is the send-worker function: it consumes the send queue
// in SQS batches (queue.Batch), sends each job through notify.Sender
// (concurrently, with a bound), and answers with a partial batch response:
// jobs that must be tried again (queue.Retry) are reported as failures
// after their visibility is set to the delay they need; everything else is
// deleted. Only a job that crashes the worker again and again reaches the
// dead-letter queue.
package handler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/notify"
	"wxbridge/shared/observe"
	"wxbridge/shared/queue"
)

// Queue is the SQS call the worker makes itself (the event source mapping
// receives and deletes): setting a retried job's delay.
type Queue = queue.Visibility

// Sender sends one job.
type Sender interface {
	Send(ctx context.Context, job notify.Job, at notify.Attempt) notify.Result
	Reject(ctx context.Context, jobID string, why error, at notify.Attempt) notify.Result
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

// Handle sends a batch through queue.Batch: concurrently up to
// Concurrency, answering a partial batch response in which a job that must
// come back later is a failure with its visibility set to its delay.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	b := queue.Batch{Queue: h.Queue, QueueURL: h.QueueURL, Concurrency: cmp.Or(h.Concurrency, DefaultConcurrency), Log: h.Log}
	return b.Run(ctx, ev, h.one), nil
}

// errCrashed makes a message that crashed the worker come back after the
// queue's visibility timeout, counting toward the dead-letter queue.
var errCrashed = errors.New("send-worker: crashed")

// one handles one message: nil when done with it, *queue.Retry to have it
// back after a delay.
func (h *Handler) one(ctx context.Context, m queue.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			h.Log.ErrorContext(ctx, "send", "outcome", "crashed", "panic", fmt.Sprint(p))
			h.Metrics.Count("SendCrashes")
			err = errCrashed
		}
	}()
	at := notify.Attempt{Lease: h.lease(ctx), Receives: m.Receives, FirstReceived: firstReceived(m), Last: m.Receives >= cmp.Or(h.MaxAttempts, DefaultMaxAttempts)}
	job, perr := notify.Parse([]byte(m.Body))
	var res notify.Result
	switch {
	case perr != nil && job.ID == "":
		// Nothing to record it against; it can never become valid.
		h.Log.ErrorContext(ctx, "send", "outcome", "dropped", "reason", perr.Error())
		h.Metrics.Count("Sends", "outcome", "dropped", "class", "invalid")
		return nil
	case perr != nil:
		res = h.Sender.Reject(ctx, job.ID, perr, at)
	default:
		res = h.Sender.Send(ctx, job, at)
	}
	attrs := []any{"job_id", res.JobID, "uid", res.UID, "receives", m.Receives}
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
	if res.Retry != nil {
		h.Log.WarnContext(ctx, "send", append(attrs, "outcome", "retry", "retry_in", res.Retry.After.Round(time.Second).String())...)
		h.Metrics.Count("Sends", "outcome", "retry", "class", classOf(res))
		return res.Retry
	}
	outcome := string(res.Status)
	if res.Duplicate {
		outcome = "duplicate"
	}
	level := slog.LevelInfo
	if res.Status == notify.Failed || res.Status == notify.Unknown || res.Err != nil {
		level = slog.LevelWarn
	}
	h.Log.Log(ctx, level, "send", append(attrs, "outcome", outcome, "msgid", res.MsgID)...)
	h.Metrics.Count("Sends", "outcome", outcome, "class", classOf(res))
	return nil
}

// firstReceived is when SQS first delivered m (the event's
// ApproximateFirstReceiveTimestamp, Unix ms); zero when absent.
func firstReceived(m queue.Message) time.Time {
	ms, err := strconv.ParseInt(m.Attributes["ApproximateFirstReceiveTimestamp"], 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
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
