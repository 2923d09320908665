// Package handler is the follower-sync function: it takes batches from the
// sync queue and does each page or chunk job of a follower backfill,
// reporting the jobs to try again as partial batch failures after pushing
// their next delivery back by the job's backoff (shared/queue).
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/backfill"
	"wxbridge/shared/observe"
	"wxbridge/shared/queue"
)

// Jobs does one backfill job (backfill.Syncer): nil when it is done, a
// *queue.Retry to have it back later, another error when it can never be
// done.
type Jobs interface {
	Process(ctx context.Context, j backfill.Job, attempt int) error
}

// Handler consumes the sync queue.
type Handler struct {
	Jobs     Jobs
	Queue    queue.Visibility
	QueueURL string
	// Concurrency bounds the jobs of one batch done at once; default 4.
	Concurrency int
	Log         *slog.Logger
	Metrics     *observe.Metrics
}

// Handle does a batch of jobs. A job to retry is reported as a batch item
// failure, so SQS delivers it again once its visibility (set to the job's
// backoff) runs out; a job that can never be done is logged and dropped.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	b := queue.Batch{Queue: h.Queue, QueueURL: h.QueueURL, Concurrency: h.concurrency(), Log: h.Log}
	return b.Run(ctx, ev, h.one), nil
}

// one does one message: nil when it is finished with.
func (h *Handler) one(ctx context.Context, m queue.Message) error {
	var j backfill.Job
	if err := json.Unmarshal([]byte(m.Body), &j); err != nil {
		h.Log.ErrorContext(ctx, "job", "outcome", "dropped", "reason", "not a job")
		h.Metrics.Count("FollowerSyncDropped")
		return nil
	}
	ctx = observe.With(ctx, "run", j.Run, "kind", j.Kind, "page", j.Page)
	err := h.Jobs.Process(ctx, j, m.Receives)
	var retry *queue.Retry
	switch {
	case err == nil:
		h.Log.InfoContext(ctx, "job", "outcome", "done", "attempt", m.Receives)
		return nil
	case errors.As(err, &retry):
		h.Log.WarnContext(ctx, "job", "outcome", "retry", "attempt", m.Receives, "delay", retry.After.String(), "error", retry.Err)
		return err
	}
	h.Log.ErrorContext(ctx, "job", "outcome", "dropped", "error", err)
	h.Metrics.Count("FollowerSyncDropped")
	return nil
}

func (h *Handler) concurrency() int {
	if h.Concurrency > 0 {
		return h.Concurrency
	}
	return 4
}
