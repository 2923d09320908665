package handler

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/backfill"
)

func mustJSON(t testing.TB, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatal(err)
	}
}

func jobOf(t testing.TB, body string) backfill.Job {
	t.Helper()
	var j backfill.Job
	mustJSON(t, body, &j)
	return j
}

func itoa(n int) string { return strconv.Itoa(n) }

func sendInput(url, body string) *sqs.SendMessageInput {
	return &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}
}

// purge loses every job on the queue, visible or not, as SQS's PurgeQueue
// does.
func (e *env) purge(t testing.TB) {
	t.Helper()
	if _, err := e.sqs.PurgeQueue(context.Background(), &sqs.PurgeQueueInput{QueueUrl: &e.queueURL}); err != nil {
		t.Fatal(err)
	}
	if n := e.inFlight(t); n != 0 {
		t.Fatalf("%d jobs left on the queue after the purge", n)
	}
}
