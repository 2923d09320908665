package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/infra/devkit/cfn"
)

// account is moto's default account id, in the ARNs it makes.
const account = "123456789012"

// resources are the template's resources created locally: what !Ref and
// !GetAtt resolve to.
type resources struct {
	refs   map[string]string // logical ID or parameter -> what !Ref gives
	arns   map[string]string // logical ID -> its ARN
	queues map[string]string // queue logical ID -> URL
}

// create makes the template's table, queues (dead-letter queues first) and
// secrets under names prefixed with prefix. Secrets without a literal
// SecretString get seeds[logicalID]. Existing resources (a moto given by
// AWS_ENDPOINT_URL that already has them) are reused.
func create(ctx context.Context, cfg aws.Config, tpl *cfn.Template, prefix string, params map[string]string, seeds map[string]string) (*resources, error) {
	r := &resources{refs: map[string]string{}, arns: map[string]string{}, queues: map[string]string{}}
	for k, v := range params {
		r.refs[k] = v
	}
	r.refs["AWS::Region"], r.refs["AWS::AccountId"], r.refs["AWS::URLSuffix"] = cfg.Region, account, "amazonaws.com"

	db := dynamodb.NewFromConfig(cfg)
	for _, id := range tpl.ResourcesOf("AWS::DynamoDB::Table") {
		name := prefix + id
		def, err := tpl.Table(id, name)
		if err != nil {
			return nil, err
		}
		_, err = db.CreateTable(ctx, def.Create)
		var inUse *ddbtypes.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return nil, fmt.Errorf("create table %s: %w", id, err)
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
	return r, nil
}

// resolve turns a template value into what it is locally.
func (r *resources) resolve(v cfn.Value) (string, error) {
	switch {
	case v.Ref != "":
		if s, ok := r.refs[v.Ref]; ok {
			return s, nil
		}
		return "", fmt.Errorf("!Ref %s: not a resource or parameter the devstack knows", v.Ref)
	case v.GetAtt != "":
		id, attr, _ := strings.Cut(v.GetAtt, ".")
		if s, ok := r.arns[id]; ok && attr == "Arn" {
			return s, nil
		}
		return "", fmt.Errorf("!GetAtt %s: not supported locally", v.GetAtt)
	}
	return v.Literal, nil
}
