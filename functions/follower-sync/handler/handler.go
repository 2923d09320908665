// Package handler is the follower-sync function: it takes batches from the
// sync queue and does each page or chunk job of a follower backfill,
// reporting the jobs to try again as partial batch failures after pushing
// their next delivery back by the job's backoff.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/backfill"
	"wxbridge/shared/observe"
)

// Processor does one job (backfill.Syncer).
type Processor interface {
	Process(ctx context.Context, j backfill.Job, attempt int) error
}

// Visibility is the SQS call that delays a job's next delivery.
type Visibility interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Handler consumes the sync queue.
type Handler struct {
	Syncer   Processor
	Queue    Visibility
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
	var (
		mu  sync.Mutex
		out events.SQSEventResponse
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, h.concurrency())
	for _, m := range ev.Records {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if !h.one(ctx, m) {
				mu.Lock()
				out.BatchItemFailures = append(out.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// one does one message and reports whether it is finished with.
func (h *Handler) one(ctx context.Context, m events.SQSMessage) bool {
	log := h.Log.With("request_id", observe.RequestID(ctx), "message_id", m.MessageId)
	var j backfill.Job
	if err := json.Unmarshal([]byte(m.Body), &j); err != nil {
		log.Error("job", "outcome", "dropped", "reason", "not a job")
		h.Metrics.Count("FollowerSyncDropped")
		return true
	}
	log = log.With("run", j.Run, "kind", j.Kind, "page", j.Page)
	attempt, err := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
	if err != nil || attempt < 1 {
		attempt = 1
	}
	err = h.Syncer.Process(ctx, j, attempt)
	var retry *backfill.RetryError
	switch {
	case err == nil:
		log.Info("job", "outcome", "done", "attempt", attempt)
		return true
	case errors.As(err, &retry):
		log.Warn("job", "outcome", "retry", "attempt", attempt, "delay", retry.Delay.String(), "error", retry.Err)
		_, verr := h.Queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(h.QueueURL), ReceiptHandle: aws.String(m.ReceiptHandle),
			VisibilityTimeout: int32(retry.Delay.Seconds()),
		})
		if verr != nil {
			// The job comes back after the queue's visibility timeout instead.
			log.Warn("delay job", "outcome", "not_delayed", "error", verr)
		}
		return false
	}
	log.Error("job", "outcome", "dropped", "error", err)
	h.Metrics.Count("FollowerSyncDropped")
	return true
}

func (h *Handler) concurrency() int {
	if h.Concurrency > 0 {
		return h.Concurrency
	}
	return 4
}
