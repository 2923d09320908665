// Package queue runs SQS batches for the functions that consume a queue:
// each message handled once, concurrently up to a bound, and answered as a
// partial batch response. A handler asks for a message to come back later
// by returning Retry; SQS then redelivers it after that delay (and counts
// the receive toward the dead-letter queue's limit).
package queue

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

	"wxbridge/shared/observe"
)

// MaxDelay is the longest SQS keeps a message invisible: 12 hours, less a
// margin for the time the message has been in flight already.
const MaxDelay = 12*time.Hour - time.Minute

// Retry is the one way a message handler says "not done: bring this message
// back after After". Err says why (logged; may be nil).
type Retry struct {
	After time.Duration
	Err   error
}

// RetryAfter asks for the message to come back after d, because of err.
func RetryAfter(d time.Duration, err error) error { return &Retry{After: d, Err: err} }

func (r *Retry) Error() string {
	if r.Err == nil {
		return fmt.Sprintf("retry in %s", r.After)
	}
	return fmt.Sprintf("retry in %s: %v", r.After, r.Err)
}

func (r *Retry) Unwrap() error { return r.Err }

// Visibility is the SQS call that sets when a message comes back.
type Visibility interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Message is one SQS message as a handler sees it.
type Message struct {
	events.SQSMessage
	// Receives is how often SQS has delivered it, this time included.
	Receives int
}

// Handler handles one message: nil when it is done with (including a
// message dropped for good, which the handler logs itself), *Retry to have
// it back after a delay, any other error to have it back after the queue's
// visibility timeout. A panic counts as the last.
type Handler func(ctx context.Context, m Message) error

// Batch runs SQS batches.
type Batch struct {
	Queue    Visibility
	QueueURL string
	// Concurrency bounds the messages handled at once; 1 if unset.
	Concurrency int
	Log         *slog.Logger
}

// Run handles every message of ev with h, and answers which must come back.
func (b *Batch) Run(ctx context.Context, ev events.SQSEvent, h Handler) events.SQSEventResponse {
	failed := make([]bool, len(ev.Records))
	sem := make(chan struct{}, max(b.Concurrency, 1))
	var wg sync.WaitGroup
	for i, m := range ev.Records {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			failed[i] = true // a panic leaves it so
			defer func() {
				if p := recover(); p != nil {
					b.log().ErrorContext(observe.With(ctx, "message_id", m.MessageId), "message", "outcome", "crashed", "panic", fmt.Sprint(p))
				}
			}()
			failed[i] = b.one(ctx, m, h)
		}()
	}
	wg.Wait()
	var out events.SQSEventResponse
	for i, f := range failed {
		if f {
			out.BatchItemFailures = append(out.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: ev.Records[i].MessageId})
		}
	}
	return out
}

// one handles m and reports whether it must come back. Everything logged
// with the handler's context carries the message id.
func (b *Batch) one(ctx context.Context, m events.SQSMessage, h Handler) bool {
	ctx = observe.With(ctx, "message_id", m.MessageId)
	receives, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
	err := h(ctx, Message{SQSMessage: m, Receives: max(receives, 1)})
	if err == nil {
		return false
	}
	var r *Retry
	if errors.As(err, &r) {
		if verr := b.delay(ctx, m, r.After); verr != nil {
			// It still comes back, after the queue's own visibility timeout.
			b.log().WarnContext(ctx, "delay message", "outcome", "not_delayed", "error", verr)
		}
	}
	return true
}

// delay sets m to come back after d (at most MaxDelay).
func (b *Batch) delay(ctx context.Context, m events.SQSMessage, d time.Duration) error {
	if m.ReceiptHandle == "" {
		return errors.New("queue: message has no receipt handle")
	}
	secs := int32(min(max(d, 0), MaxDelay) / time.Second)
	_, err := b.Queue.ChangeMessageVisibility(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &b.QueueURL, ReceiptHandle: &m.ReceiptHandle, VisibilityTimeout: secs,
	})
	return err
}

func (b *Batch) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}
