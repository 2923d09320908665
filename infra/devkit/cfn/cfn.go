// Package cfn reads resource definitions out of template.yaml so that local
// runs (the devstack and the tests) create exactly the tables, queues and
// secrets the deployed stack has: one source of truth for keys, TTL and
// redrive.
package cfn

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"gopkg.in/yaml.v3"
)

// Template is the parsed resources section of a CloudFormation/SAM template.
type Template struct {
	Parameters map[string]Parameter `yaml:"Parameters"`
	Globals    struct {
		Function yaml.Node `yaml:"Function"`
	} `yaml:"Globals"`
	Resources map[string]Resource `yaml:"Resources"`
}

// Resource is one resource: its type and undecoded properties.
type Resource struct {
	Type       string    `yaml:"Type"`
	Properties yaml.Node `yaml:"Properties"`
}

// Load parses the template at path.
func Load(path string) (*Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Template
	if err := yaml.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("cfn: %s: %w", path, err)
	}
	return &t, nil
}

// Find looks for template.yaml in dir and its parents, the way the go tool
// finds go.mod, so tests in any package locate the repository's template.
func Find(dir string) (string, error) {
	for {
		p := filepath.Join(dir, "template.yaml")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cfn: template.yaml not found in any parent directory")
		}
		dir = parent
	}
}

// LoadNearest finds and loads the template above the working directory.
func LoadNearest() (*Template, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	p, err := Find(wd)
	if err != nil {
		return nil, err
	}
	return Load(p)
}

func (t *Template) properties(logicalID, wantType string, v any) error {
	r, ok := t.Resources[logicalID]
	if !ok {
		return fmt.Errorf("cfn: no resource %q in template", logicalID)
	}
	if r.Type != wantType {
		return fmt.Errorf("cfn: resource %q is %s, not %s", logicalID, r.Type, wantType)
	}
	if err := r.Properties.Decode(v); err != nil {
		return fmt.Errorf("cfn: %s properties: %w", logicalID, err)
	}
	return nil
}

type tableProps struct {
	BillingMode          string `yaml:"BillingMode"`
	AttributeDefinitions []struct {
		AttributeName string `yaml:"AttributeName"`
		AttributeType string `yaml:"AttributeType"`
	} `yaml:"AttributeDefinitions"`
	KeySchema              []keyElem `yaml:"KeySchema"`
	GlobalSecondaryIndexes []struct {
		IndexName  string    `yaml:"IndexName"`
		KeySchema  []keyElem `yaml:"KeySchema"`
		Projection struct {
			ProjectionType   string   `yaml:"ProjectionType"`
			NonKeyAttributes []string `yaml:"NonKeyAttributes"`
		} `yaml:"Projection"`
	} `yaml:"GlobalSecondaryIndexes"`
	TimeToLiveSpecification struct {
		AttributeName string `yaml:"AttributeName"`
		Enabled       bool   `yaml:"Enabled"`
	} `yaml:"TimeToLiveSpecification"`
	StreamSpecification struct {
		StreamViewType string `yaml:"StreamViewType"`
	} `yaml:"StreamSpecification"`
}

type keyElem struct {
	AttributeName string `yaml:"AttributeName"`
	KeyType       string `yaml:"KeyType"`
}

func keySchema(ks []keyElem) []ddbtypes.KeySchemaElement {
	out := make([]ddbtypes.KeySchemaElement, len(ks))
	for i, k := range ks {
		out[i] = ddbtypes.KeySchemaElement{AttributeName: aws.String(k.AttributeName), KeyType: ddbtypes.KeyType(k.KeyType)}
	}
	return out
}

// Table is what it takes to create a table like a template's.
type Table struct {
	Create *dynamodb.CreateTableInput
	// TTL is nil when the template enables no TTL.
	TTL *dynamodb.UpdateTimeToLiveInput
}

// Table returns the create (and TTL) inputs for the AWS::DynamoDB::Table
// resource logicalID, under the given table name.
func (t *Template) Table(logicalID, name string) (Table, error) {
	var p tableProps
	if err := t.properties(logicalID, "AWS::DynamoDB::Table", &p); err != nil {
		return Table{}, err
	}
	if len(p.KeySchema) == 0 {
		return Table{}, fmt.Errorf("cfn: %s has no KeySchema", logicalID)
	}
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: ddbtypes.BillingModePayPerRequest,
		KeySchema:   keySchema(p.KeySchema),
	}
	if p.BillingMode != "" && p.BillingMode != string(ddbtypes.BillingModePayPerRequest) {
		return Table{}, fmt.Errorf("cfn: %s: billing mode %s is not supported locally", logicalID, p.BillingMode)
	}
	for _, a := range p.AttributeDefinitions {
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{
			AttributeName: aws.String(a.AttributeName), AttributeType: ddbtypes.ScalarAttributeType(a.AttributeType),
		})
	}
	for _, g := range p.GlobalSecondaryIndexes {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, ddbtypes.GlobalSecondaryIndex{
			IndexName: aws.String(g.IndexName),
			KeySchema: keySchema(g.KeySchema),
			Projection: &ddbtypes.Projection{
				ProjectionType:   ddbtypes.ProjectionType(g.Projection.ProjectionType),
				NonKeyAttributes: g.Projection.NonKeyAttributes,
			},
		})
	}
	if v := p.StreamSpecification.StreamViewType; v != "" {
		in.StreamSpecification = &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: ddbtypes.StreamViewType(v)}
	}
	out := Table{Create: in}
	if p.TimeToLiveSpecification.Enabled {
		out.TTL = &dynamodb.UpdateTimeToLiveInput{
			TableName: aws.String(name),
			TimeToLiveSpecification: &ddbtypes.TimeToLiveSpecification{
				AttributeName: aws.String(p.TimeToLiveSpecification.AttributeName),
				Enabled:       aws.Bool(true),
			},
		}
	}
	return out, nil
}

type queueProps struct {
	VisibilityTimeout             *int `yaml:"VisibilityTimeout"`
	MessageRetentionPeriod        *int `yaml:"MessageRetentionPeriod"`
	DelaySeconds                  *int `yaml:"DelaySeconds"`
	ReceiveMessageWaitTimeSeconds *int `yaml:"ReceiveMessageWaitTimeSeconds"`
	FifoQueue                     bool `yaml:"FifoQueue"`
	RedrivePolicy                 *struct {
		DeadLetterTargetArn yaml.Node `yaml:"deadLetterTargetArn"`
		MaxReceiveCount     int       `yaml:"maxReceiveCount"`
	} `yaml:"RedrivePolicy"`
}

// Queue is what it takes to create a queue like a template's.
type Queue struct {
	// Attributes are CreateQueue attributes, except the redrive policy.
	Attributes map[string]string
	// DeadLetter is the logical ID of the dead-letter queue ("" for none)
	// and MaxReceiveCount its redrive threshold.
	DeadLetter      string
	MaxReceiveCount int
}

// Queue returns the attributes of the AWS::SQS::Queue resource logicalID.
// The dead-letter target must be written !GetAtt <LogicalId>.Arn.
func (t *Template) Queue(logicalID string) (Queue, error) {
	var p queueProps
	if err := t.properties(logicalID, "AWS::SQS::Queue", &p); err != nil {
		return Queue{}, err
	}
	if p.FifoQueue {
		return Queue{}, fmt.Errorf("cfn: %s: FIFO queues are not supported locally", logicalID)
	}
	q := Queue{Attributes: map[string]string{}}
	for name, v := range map[string]*int{
		"VisibilityTimeout":             p.VisibilityTimeout,
		"MessageRetentionPeriod":        p.MessageRetentionPeriod,
		"DelaySeconds":                  p.DelaySeconds,
		"ReceiveMessageWaitTimeSeconds": p.ReceiveMessageWaitTimeSeconds,
	} {
		if v != nil {
			q.Attributes[name] = fmt.Sprint(*v)
		}
	}
	if rp := p.RedrivePolicy; rp != nil {
		n := rp.DeadLetterTargetArn
		target, ok := strings.CutSuffix(n.Value, ".Arn")
		if n.Tag != "!GetAtt" || !ok || target == "" {
			return Queue{}, fmt.Errorf("cfn: %s: deadLetterTargetArn must be !GetAtt <Queue>.Arn", logicalID)
		}
		if _, err := t.Queue(target); err != nil {
			return Queue{}, fmt.Errorf("cfn: %s: dead-letter queue: %w", logicalID, err)
		}
		q.DeadLetter, q.MaxReceiveCount = target, rp.MaxReceiveCount
	}
	return q, nil
}
