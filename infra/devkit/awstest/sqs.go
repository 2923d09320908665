package awstest

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Record is m as the Lambda SQS event source hands it to a function, with
// the system attributes it was received with (ApproximateReceiveCount).
func Record(m sqstypes.Message) events.SQSMessage {
	return events.SQSMessage{
		MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
		Attributes: m.Attributes, EventSource: "aws:sqs",
	}
}

// Event is ms as one Lambda SQS event.
func Event(ms []sqstypes.Message) events.SQSEvent {
	var ev events.SQSEvent
	for _, m := range ms {
		ev.Records = append(ev.Records, Record(m))
	}
	return ev
}

// Receive takes n messages off the queue at url as the event source
// mapping does (hidden for a minute, with their system attributes) and
// returns them as one SQS event; the test fails unless n arrive.
func Receive(t testing.TB, client *sqs.Client, url string, n int) events.SQSEvent {
	t.Helper()
	var ev events.SQSEvent
	for tries := 0; len(ev.Records) < n && tries < 20; tries++ {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: &url, MaxNumberOfMessages: int32(min(n-len(ev.Records), 10)), VisibilityTimeout: 60,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			t.Fatal(err)
		}
		ev.Records = append(ev.Records, Event(out.Messages).Records...)
	}
	if len(ev.Records) != n {
		t.Fatalf("received %d messages, want %d", len(ev.Records), n)
	}
	return ev
}

// Depth is the number of messages on the queue at url, visible or in
// flight. It may be called from any goroutine: a failure to ask is
// reported with t.Error and counts as 0.
func Depth(t testing.TB, client *sqs.Client, url string) int {
	t.Helper()
	out, err := client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	}})
	if err != nil {
		t.Error(err)
		return 0
	}
	n := 0
	for _, v := range out.Attributes {
		i, _ := strconv.Atoi(v)
		n += i
	}
	return n
}

// DeadLetterQueue is the URL of the dead-letter queue of the queue at url,
// found by its redrive policy.
func DeadLetterQueue(t testing.TB, client *sqs.Client, url string) string {
	t.Helper()
	ctx := context.Background()
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	}
	if err := json.Unmarshal([]byte(out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]), &policy); err != nil {
		t.Fatalf("redrive policy of %s: %v", url, err)
	}
	name := policy.DeadLetterTargetArn[strings.LastIndexByte(policy.DeadLetterTargetArn, ':')+1:]
	u, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		t.Fatal(err)
	}
	return *u.QueueUrl
}
