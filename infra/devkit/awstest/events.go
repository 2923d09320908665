package awstest

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Bus creates an EventBridge bus for the template's AWS::Events::EventBus
// logicalID and returns its name (what !Ref gives). It is deleted when the
// test ends.
func Bus(t testing.TB, logicalID string) string {
	t.Helper()
	if r, ok := template.Resources[logicalID]; !ok || r.Type != "AWS::Events::EventBus" {
		t.Fatalf("awstest: template.yaml has no AWS::Events::EventBus %s", logicalID)
	}
	name := Name(t, logicalID)
	eb := eventbridge.NewFromConfig(Config(nil))
	if _, err := eb.CreateEventBus(context.Background(), &eventbridge.CreateEventBusInput{Name: aws.String(name)}); err != nil {
		t.Fatalf("create event bus %s: %v", logicalID, err)
	}
	t.Cleanup(func() {
		eb.DeleteEventBus(context.Background(), &eventbridge.DeleteEventBusInput{Name: aws.String(name)})
	})
	return name
}

// Subscribe makes a queue that a rule on bus sends the events matching
// pattern to (EventBridge's JSON pattern, such as {"source":["wxbridge"]}),
// as a business subscribes its own queue, and returns the queue's URL. The
// queue and the rule are deleted when the test ends.
func Subscribe(t testing.TB, bus, pattern string) string {
	t.Helper()
	ctx := context.Background()
	q, eb := sqs.NewFromConfig(Config(nil)), eventbridge.NewFromConfig(Config(nil))
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(Name(t, "subscriber"))})
	if err != nil {
		t.Fatalf("create subscriber queue: %v", err)
	}
	t.Cleanup(func() { q.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("subscriber queue attributes: %v", err)
	}
	rule := Name(t, "rule")
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: &rule, EventBusName: &bus, EventPattern: &pattern}); err != nil {
		t.Fatalf("put rule: %v", err)
	}
	target := []ebtypes.Target{{Id: aws.String("subscriber"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: &rule, EventBusName: &bus, Targets: target}); err != nil {
		t.Fatalf("put targets: %v", err)
	}
	t.Cleanup(func() {
		eb.RemoveTargets(context.Background(), &eventbridge.RemoveTargetsInput{Rule: &rule, EventBusName: &bus, Ids: []string{"subscriber"}})
		eb.DeleteRule(context.Background(), &eventbridge.DeleteRuleInput{Name: &rule, EventBusName: &bus})
	})
	return aws.ToString(out.QueueUrl)
}
