package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/observe"
	"wxbridge/shared/queue"
)

// TestHandlersLogWithTheMessageID: whatever a handler logs with its
// context names the message it is about, without the handler saying so.
func TestHandlersLogWithTheMessageID(t *testing.T) {
	var buf bytes.Buffer
	log := observe.Logger(&buf, "test")
	b := &queue.Batch{Concurrency: 2, Log: log}
	ev := events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m-1"}, {MessageId: "m-2"}}}
	out := b.Run(context.Background(), ev, func(ctx context.Context, m queue.Message) error {
		log.InfoContext(ctx, "handled", "body_of", m.MessageId)
		return nil
	})
	if len(out.BatchItemFailures) != 0 {
		t.Fatalf("failures: %v", out.BatchItemFailures)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["message_id"] == nil || rec["message_id"] != rec["body_of"] {
			t.Errorf("line %s: message_id %v, want %v", l, rec["message_id"], rec["body_of"])
		}
	}
}
