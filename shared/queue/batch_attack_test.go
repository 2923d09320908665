package queue_test

// Attacks on queue.Batch (issue 12): handlers that panic, delays beyond
// SQS's 12-hour limit and below zero, messages without a receipt handle,
// an invocation whose context has ended, and the concurrency bound,
// measured. SQS is moto's.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/queue"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// recorded is the real SQS client, with the visibility changes it was
// asked for kept.
type recorded struct {
	*sqs.Client
	mu   sync.Mutex
	secs map[string]int32 // receipt handle -> visibility timeout asked for
}

func (r *recorded) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	r.mu.Lock()
	r.secs[aws.ToString(in.ReceiptHandle)] = in.VisibilityTimeout
	r.mu.Unlock()
	return r.Client.ChangeMessageVisibility(ctx, in, opts...)
}

type fixture struct {
	q    *recorded
	url  string
	logs *bytes.Buffer
	mu   sync.Mutex
}

func (f *fixture) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logs.Write(p)
}

func (f *fixture) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logs.String()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	client := sqs.NewFromConfig(awstest.Config(nil))
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name(t, "q"))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	return &fixture{q: &recorded{Client: client, secs: map[string]int32{}}, url: *out.QueueUrl, logs: &bytes.Buffer{}}
}

func (f *fixture) batch(concurrency int) *queue.Batch {
	return &queue.Batch{Queue: f.q, QueueURL: f.url, Concurrency: concurrency, Log: slog.New(slog.NewJSONHandler(f, nil))}
}

// event sends n messages and receives them as one Lambda SQS event.
func (f *fixture) event(t *testing.T, n int) events.SQSEvent {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := f.q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &f.url, MessageBody: aws.String(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	return awstest.Receive(t, f.q.Client, f.url, n)
}

func failures(resp events.SQSEventResponse) map[string]bool {
	out := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		out[f.ItemIdentifier] = true
	}
	return out
}

func TestAttackBatchPanics(t *testing.T) {
	f := newFixture(t)
	ev := f.event(t, 10)
	var handled atomic.Int32
	resp := f.batch(4).Run(context.Background(), ev, func(ctx context.Context, m queue.Message) error {
		switch m.Body {
		case "1":
			panic("boom")
		case "2":
			panic(errors.New("an error value"))
		case "3":
			panic(nil) // recover sees *runtime.PanicNilError
		case "4":
			var p *struct{ x int }
			_ = p.x // a nil dereference
		}
		handled.Add(1)
		return nil
	})
	bad := failures(resp)
	for _, m := range ev.Records {
		want := m.Body >= "1" && m.Body <= "4"
		if bad[m.MessageId] != want {
			t.Errorf("message %s: failure %v, want %v", m.Body, bad[m.MessageId], want)
		}
	}
	if handled.Load() != 6 || strings.Count(f.String(), `"outcome":"crashed"`) != 4 {
		t.Fatalf("handled %d, crashes logged %d; want 6 and 4:\n%s", handled.Load(), strings.Count(f.String(), `"outcome":"crashed"`), f)
	}
}

func TestAttackBatchDelays(t *testing.T) {
	f := newFixture(t)
	ev := f.event(t, 5)
	delays := map[string]time.Duration{"0": 13 * time.Hour, "1": 1000 * time.Hour, "2": -time.Hour, "3": 1500 * time.Millisecond, "4": queue.MaxDelay}
	resp := f.batch(5).Run(context.Background(), ev, func(ctx context.Context, m queue.Message) error {
		// Wrapped, as a handler's own error often is.
		return fmt.Errorf("job %s: %w", m.Body, queue.RetryAfter(delays[m.Body], errors.New("not yet")))
	})
	if len(resp.BatchItemFailures) != 5 {
		t.Fatalf("%d failures, want all 5 back", len(resp.BatchItemFailures))
	}
	if strings.Contains(f.String(), "not_delayed") {
		t.Fatalf("SQS refused a delay:\n%s", f)
	}
	want := map[string]int32{"0": int32(queue.MaxDelay / time.Second), "1": int32(queue.MaxDelay / time.Second), "2": 0, "3": 1, "4": int32(queue.MaxDelay / time.Second)}
	for _, m := range ev.Records {
		got, ok := f.q.secs[m.ReceiptHandle]
		if !ok || got != want[m.Body] || got > 12*60*60 || got < 0 {
			t.Errorf("delay %s: visibility %d (set %v), want %d within SQS's 0..43200", delays[m.Body], got, ok, want[m.Body])
		}
	}
}

// TestAttackBatchAfterTheContextEnded: the invocation's context is over
// (its deadline passed while handlers ran): a retry's delay is still set,
// since SQS would otherwise bring the message back at the queue's own
// visibility timeout.
func TestAttackBatchAfterTheContextEnded(t *testing.T) {
	f := newFixture(t)
	ev := f.event(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resp := f.batch(3).Run(ctx, ev, func(ctx context.Context, m queue.Message) error {
		return queue.RetryAfter(10*time.Minute, ctx.Err())
	})
	if len(resp.BatchItemFailures) != 3 || strings.Contains(f.String(), "not_delayed") {
		t.Fatalf("failures %d; logs:\n%s", len(resp.BatchItemFailures), f)
	}
	for _, m := range ev.Records {
		if f.q.secs[m.ReceiptHandle] != 600 {
			t.Errorf("visibility %d, want 600", f.q.secs[m.ReceiptHandle])
		}
	}
}

func TestAttackBatchMessagesWithoutReceiptHandles(t *testing.T) {
	f := newFixture(t)
	ev := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "a", Body: "a"},
		{MessageId: "b", Body: "b", Attributes: map[string]string{"ApproximateReceiveCount": "not a number"}},
		{MessageId: "c", Body: "c", Attributes: map[string]string{"ApproximateReceiveCount": "-7"}},
	}}
	var receives sync.Map
	resp := f.batch(2).Run(context.Background(), ev, func(ctx context.Context, m queue.Message) error {
		receives.Store(m.MessageId, m.Receives)
		if m.MessageId == "a" {
			return nil
		}
		return queue.RetryAfter(time.Minute, nil)
	})
	if bad := failures(resp); len(bad) != 2 || !bad["b"] || !bad["c"] {
		t.Fatalf("failures %v, want b and c back", resp.BatchItemFailures)
	}
	receives.Range(func(k, v any) bool {
		if v.(int) < 1 {
			t.Errorf("message %s: Receives %d, want at least 1", k, v)
		}
		return true
	})
	if strings.Count(f.String(), "not_delayed") != 2 {
		t.Fatalf("the undelayable retries were not logged:\n%s", f)
	}
}

func TestAttackBatchConcurrencyBound(t *testing.T) {
	f := newFixture(t)
	ev := f.event(t, 30)
	for _, bound := range []int{0, 1, 7, 64} {
		t.Run(strconv.Itoa(bound), func(t *testing.T) {
			var now, most atomic.Int32
			f.batch(bound).Run(context.Background(), ev, func(ctx context.Context, m queue.Message) error {
				n := now.Add(1)
				for {
					old := most.Load()
					if n <= old || most.CompareAndSwap(old, n) {
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
				now.Add(-1)
				return nil
			})
			want := int32(min(max(bound, 1), len(ev.Records)))
			// Each handler sleeps 5 ms, so with 30 messages the bound is
			// reached, and never passed.
			if most.Load() != want {
				t.Fatalf("at most %d handlers ran at once, want the bound %d", most.Load(), want)
			}
		})
	}
}
