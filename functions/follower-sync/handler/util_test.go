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

// purge loses every job on the queue, visible or not.
func (e *env) purge(t testing.TB) {
	t.Helper()
	for {
		out, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &e.queueURL, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 && e.inFlight(t) == 0 {
			return
		}
		for _, m := range out.Messages {
			e.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle})
		}
	}
}
