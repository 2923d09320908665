package handler

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

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
		var entries []sqstypes.DeleteMessageBatchRequestEntry
		for _, m := range out.Messages {
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: m.MessageId, ReceiptHandle: m.ReceiptHandle})
		}
		if len(entries) > 0 {
			e.sqs.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &e.queueURL, Entries: entries})
		}
	}
}
