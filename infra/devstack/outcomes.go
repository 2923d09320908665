package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/infra/devkit/streams"
	"wxbridge/shared/contract"
)

// The outcome events, in the devstack: the publisher's stream trigger runs
// as a streams.Source on moto's stream of the table; the template's
// OutcomeBus and its OutcomeEventsRule (OutcomeQueue=Enabled) deliver every
// event to OutcomeEventsQueue, which /_dev/config names outcome_queue_url;
// a second rule feeds the console's own queue.

// outcomeBus and outcomeQueue are the template's bus and optional queue.
const (
	outcomeBus   = "OutcomeBus"
	outcomeQueue = "OutcomeEventsQueue"
)

// subscribeConsole makes the console's outcome queue and the rule on the
// outcome bus that sends it every outcome event. Without a bus in the
// template it does nothing.
func (s *Stack) subscribeConsole(ctx context.Context) error {
	bus, ok := s.res.refs[outcomeBus]
	if !ok {
		return nil
	}
	name := s.prefix() + "ConsoleOutcomes"
	q := sqs.NewFromConfig(s.aws)
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return fmt.Errorf("console outcome queue: %w", err)
	}
	got, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return fmt.Errorf("console outcome queue: %w", err)
	}
	pattern, _ := json.Marshal(map[string][]string{"source": {contract.Source}})
	eb := eventbridge.NewFromConfig(s.aws)
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventBusName: aws.String(bus), EventPattern: aws.String(string(pattern))}); err != nil {
		return fmt.Errorf("console outcome rule: %w", err)
	}
	put, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(bus), Targets: []ebtypes.Target{
		{Id: aws.String("console"), Arn: aws.String(got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])},
	}})
	if err == nil && put.FailedEntryCount > 0 {
		err = fmt.Errorf("%s", aws.ToString(put.FailedEntries[0].ErrorMessage))
	}
	if err != nil {
		return fmt.Errorf("console outcome rule target: %w", err)
	}
	s.ConsoleOutcomeQueueURL = *out.QueueUrl
	return nil
}

// streamSources are f's DynamoDB stream triggers as event source
// mappings on moto, checked and ready to Run.
func (s *Stack) streamSources(ctx context.Context, f *function) ([]*streams.Source, error) {
	var out []*streams.Source
	for _, t := range f.def.Streams {
		arn := s.res.streams[t.Table]
		if arn == "" {
			return nil, fmt.Errorf("%s: table %s has no stream", f.def.LogicalID, t.Table)
		}
		src := &streams.Source{
			AWS: s.aws, StreamARN: arn, Trigger: t, OnFailureURL: s.res.queues[t.OnFailure],
			FunctionARN: s.res.arns[f.def.LogicalID], Log: s.log.With("function", f.def.LogicalID),
			Handler: func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
				payload, _ := json.Marshal(ev)
				res, err := f.invoke(ctx, payload)
				var resp events.DynamoDBEventResponse
				if err == nil {
					err = json.Unmarshal(res, &resp)
				}
				return resp, err
			},
		}
		if err := src.Open(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", f.def.LogicalID, err)
		}
		out = append(out, src)
	}
	return out, nil
}
