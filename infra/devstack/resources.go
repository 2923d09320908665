package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"gopkg.in/yaml.v3"

	"wxbridge/infra/devkit/cfn"
)

// account is moto's default account id, in the ARNs it makes.
const account = "123456789012"

// resources are the template's resources created locally: what !Ref and
// !GetAtt resolve to.
type resources struct {
	refs    map[string]string // logical ID or parameter -> what !Ref gives
	arns    map[string]string // logical ID -> its ARN
	attrs   map[string]string // "LogicalId.Attribute" -> what !GetAtt gives, besides Arn
	queues  map[string]string // queue logical ID -> URL
	streams map[string]string // table logical ID -> its stream's ARN
}

// create makes the template's tables (with their streams), queues
// (dead-letter queues first), secrets, event buses and the rules on them,
// under names prefixed with prefix (the stack's name, as CloudFormation
// names them). Secrets without a literal SecretString get
// seeds[logicalID]. Existing resources (a moto given by AWS_ENDPOINT_URL
// that already has them) are reused.
func create(ctx context.Context, cfg aws.Config, tpl *cfn.Template, prefix string, params map[string]string, seeds map[string]string) (*resources, error) {
	r := &resources{refs: map[string]string{}, arns: map[string]string{}, attrs: map[string]string{}, queues: map[string]string{}, streams: map[string]string{}}
	for k, v := range params {
		r.refs[k] = v
	}
	r.refs["AWS::Region"], r.refs["AWS::AccountId"], r.refs["AWS::URLSuffix"] = cfg.Region, account, "amazonaws.com"
	r.refs["AWS::Partition"], r.refs["AWS::StackName"] = "aws", strings.TrimSuffix(prefix, "-")

	db := dynamodb.NewFromConfig(cfg)
	for _, id := range tpl.ResourcesOf("AWS::DynamoDB::Table") {
		name := prefix + id
		def, err := tpl.Table(id, name)
		if err != nil {
			return nil, err
		}
		created, err := db.CreateTable(ctx, def.Create)
		var inUse *ddbtypes.ResourceInUseException
		switch {
		case err == nil:
			r.streams[id] = aws.ToString(created.TableDescription.LatestStreamArn)
		case errors.As(err, &inUse):
			got, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
			if err != nil {
				return nil, fmt.Errorf("table %s: %w", id, err)
			}
			r.streams[id] = aws.ToString(got.Table.LatestStreamArn)
		default:
			return nil, fmt.Errorf("create table %s: %w", id, err)
		}
		if r.streams[id] != "" {
			r.attrs[id+".StreamArn"] = r.streams[id]
		}
		if def.TTL != nil {
			if _, err := db.UpdateTimeToLive(ctx, def.TTL); err != nil && !strings.Contains(err.Error(), "already enabled") {
				return nil, fmt.Errorf("table %s TTL: %w", id, err)
			}
		}
		r.refs[id] = name
		r.arns[id] = fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", cfg.Region, account, name)
	}

	q := sqs.NewFromConfig(cfg)
	var makeQueue func(id string) error
	makeQueue = func(id string) error {
		if r.queues[id] != "" {
			return nil
		}
		def, err := tpl.Queue(id)
		if err != nil {
			return err
		}
		attrs := def.Attributes
		if def.DeadLetter != "" {
			if err := makeQueue(def.DeadLetter); err != nil {
				return err
			}
			policy, _ := json.Marshal(map[string]any{"deadLetterTargetArn": r.arns[def.DeadLetter], "maxReceiveCount": def.MaxReceiveCount})
			attrs["RedrivePolicy"] = string(policy)
		}
		out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(prefix + id), Attributes: attrs})
		if err != nil {
			return fmt.Errorf("create queue %s: %w", id, err)
		}
		got, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		if err != nil {
			return fmt.Errorf("queue %s: %w", id, err)
		}
		r.queues[id], r.refs[id] = *out.QueueUrl, *out.QueueUrl
		r.arns[id] = got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
		r.attrs[id+".QueueName"] = prefix + id
		return nil
	}
	for _, id := range tpl.ResourcesOf("AWS::SQS::Queue") {
		if err := makeQueue(id); err != nil {
			return nil, err
		}
	}

	sm := secretsmanager.NewFromConfig(cfg)
	for _, id := range tpl.ResourcesOf("AWS::SecretsManager::Secret") {
		value, err := tpl.SecretString(id)
		if err != nil {
			return nil, err
		}
		if seed, ok := seeds[id]; ok {
			value = seed
		}
		if value == "" {
			return nil, fmt.Errorf("secret %s: the template generates it and the devstack has no seed for it", id)
		}
		name := prefix + id
		out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
		var exists *smtypes.ResourceExistsException
		switch {
		case errors.As(err, &exists):
			put, perr := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
			if perr != nil {
				return nil, fmt.Errorf("secret %s: %w", id, perr)
			}
			r.refs[id], r.arns[id] = *put.ARN, *put.ARN
		case err != nil:
			return nil, fmt.Errorf("create secret %s: %w", id, err)
		default:
			r.refs[id], r.arns[id] = *out.ARN, *out.ARN
		}
	}

	for _, id := range tpl.ResourcesOf("AWS::Serverless::Function") {
		r.refs[id] = id
		r.arns[id] = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", cfg.Region, account, id)
	}

	if err := r.createBuses(ctx, eventbridge.NewFromConfig(cfg), tpl, prefix); err != nil {
		return nil, err
	}
	return r, nil
}

// createBuses makes the template's event buses, then the rules on them
// that deliver to the template's queues. Conditions are not read: the
// devstack has every optional part (OutcomeQueue=Enabled).
func (r *resources) createBuses(ctx context.Context, eb *eventbridge.Client, tpl *cfn.Template, prefix string) error {
	for _, id := range tpl.ResourcesOf("AWS::Events::EventBus") {
		var p struct {
			Name yaml.Node `yaml:"Name"`
		}
		props := tpl.Resources[id].Properties
		if err := props.Decode(&p); err != nil {
			return fmt.Errorf("event bus %s: %w", id, err)
		}
		name, err := r.value(&p.Name)
		if err != nil || name == "" {
			return fmt.Errorf("event bus %s: Name: %v", id, err)
		}
		out, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)})
		var exists *ebtypes.ResourceAlreadyExistsException
		arn := fmt.Sprintf("arn:aws:events:%s:%s:event-bus/%s", r.refs["AWS::Region"], account, name)
		switch {
		case err == nil:
			arn = aws.ToString(out.EventBusArn)
		case !errors.As(err, &exists):
			return fmt.Errorf("create event bus %s: %w", id, err)
		}
		r.refs[id], r.arns[id], r.attrs[id+".Name"] = name, arn, name
	}
	for _, id := range tpl.ResourcesOf("AWS::Events::Rule") {
		if err := r.createRule(ctx, eb, tpl, prefix, id); err != nil {
			return fmt.Errorf("event rule %s: %w", id, err)
		}
	}
	return nil
}

// createRule makes one AWS::Events::Rule with an event pattern and SQS
// queue targets (what local runs can deliver to).
func (r *resources) createRule(ctx context.Context, eb *eventbridge.Client, tpl *cfn.Template, prefix, id string) error {
	var p struct {
		Name         yaml.Node `yaml:"Name"`
		EventBusName yaml.Node `yaml:"EventBusName"`
		EventPattern yaml.Node `yaml:"EventPattern"`
		State        string    `yaml:"State"`
		Targets      []struct {
			ID          string    `yaml:"Id"`
			Arn         yaml.Node `yaml:"Arn"`
			RetryPolicy *struct {
				MaximumRetryAttempts     *int32 `yaml:"MaximumRetryAttempts"`
				MaximumEventAgeInSeconds *int32 `yaml:"MaximumEventAgeInSeconds"`
			} `yaml:"RetryPolicy"`
			DeadLetterConfig *struct {
				Arn yaml.Node `yaml:"Arn"`
			} `yaml:"DeadLetterConfig"`
		} `yaml:"Targets"`
	}
	props := tpl.Resources[id].Properties
	if err := props.Decode(&p); err != nil {
		return err
	}
	if p.EventPattern.IsZero() {
		return errors.New("only rules with an EventPattern run locally")
	}
	var pattern any
	if err := p.EventPattern.Decode(&pattern); err != nil {
		return fmt.Errorf("EventPattern: %w", err)
	}
	patternJSON, err := json.Marshal(pattern)
	if err != nil {
		return fmt.Errorf("EventPattern: %w", err)
	}
	bus, err := r.value(&p.EventBusName)
	if err != nil {
		return fmt.Errorf("EventBusName: %w", err)
	}
	name, err := r.value(&p.Name)
	if err != nil {
		return fmt.Errorf("Name: %w", err)
	}
	if name == "" {
		name = prefix + id
	}
	in := &eventbridge.PutRuleInput{Name: aws.String(name), EventPattern: aws.String(string(patternJSON)), State: ebtypes.RuleState(p.State)}
	if bus != "" {
		in.EventBusName = aws.String(bus)
	}
	out, err := eb.PutRule(ctx, in)
	if err != nil {
		return err
	}
	var targets []ebtypes.Target
	for _, t := range p.Targets {
		arn, err := r.value(&t.Arn)
		if err != nil || !strings.HasPrefix(arn, "arn:aws:sqs:") {
			return fmt.Errorf("target %s: only SQS queue targets (!GetAtt <Queue>.Arn) run locally", t.ID)
		}
		target := ebtypes.Target{Id: aws.String(t.ID), Arn: aws.String(arn)}
		if rp := t.RetryPolicy; rp != nil {
			target.RetryPolicy = &ebtypes.RetryPolicy{MaximumRetryAttempts: rp.MaximumRetryAttempts, MaximumEventAgeInSeconds: rp.MaximumEventAgeInSeconds}
		}
		if dl := t.DeadLetterConfig; dl != nil {
			dlq, err := r.value(&dl.Arn)
			if err != nil {
				return fmt.Errorf("target %s: DeadLetterConfig: %w", t.ID, err)
			}
			target.DeadLetterConfig = &ebtypes.DeadLetterConfig{Arn: aws.String(dlq)}
		}
		targets = append(targets, target)
	}
	if len(targets) > 0 {
		put, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: in.EventBusName, Targets: targets})
		if err != nil {
			return err
		}
		if put.FailedEntryCount > 0 {
			return fmt.Errorf("targets: %s", aws.ToString(put.FailedEntries[0].ErrorMessage))
		}
	}
	r.refs[id], r.arns[id] = name, aws.ToString(out.RuleArn)
	return nil
}

// subRef is a ${Name} in a !Sub string.
var subRef = regexp.MustCompile(`\$\{([^}!]+)\}`)

// value resolves a property that may be a literal, a !Ref, a !GetAtt or
// a !Sub of the references the devstack knows; "" when absent.
func (r *resources) value(n *yaml.Node) (string, error) {
	switch {
	case n.IsZero():
		return "", nil
	case n.Tag == "!Ref":
		return r.resolve(cfn.Value{Ref: n.Value})
	case n.Tag == "!GetAtt":
		return r.resolve(cfn.Value{GetAtt: n.Value})
	case n.Tag == "!Sub" && n.Kind == yaml.ScalarNode:
		var missing error
		out := subRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := m[2 : len(m)-1]
			v := cfn.Value{Ref: name}
			if strings.Contains(name, ".") {
				v = cfn.Value{GetAtt: name}
			}
			s, err := r.resolve(v)
			if err != nil {
				missing = err
			}
			return s
		})
		return out, missing
	case n.Kind == yaml.ScalarNode && (n.Tag == "" || strings.HasPrefix(n.Tag, "!!")):
		return n.Value, nil
	}
	return "", fmt.Errorf("line %d: only literals, !Ref, !GetAtt and a !Sub string run locally", n.Line)
}

// resolve turns a template value into what it is locally.
func (r *resources) resolve(v cfn.Value) (string, error) {
	switch {
	case v.Sub != "":
		return v.Expand(r.resolve)
	case v.Ref != "":
		if s, ok := r.refs[v.Ref]; ok {
			return s, nil
		}
		return "", fmt.Errorf("!Ref %s: not a resource or parameter the devstack knows", v.Ref)
	case v.GetAtt != "":
		if s, ok := r.attrs[v.GetAtt]; ok {
			return s, nil
		}
		id, attr, _ := strings.Cut(v.GetAtt, ".")
		if s, ok := r.arns[id]; ok && attr == "Arn" {
			return s, nil
		}
		return "", fmt.Errorf("!GetAtt %s: not supported locally", v.GetAtt)
	}
	return v.Literal, nil
}
