package cfn

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Value is a property value: a literal, a !Ref, a !GetAtt or a !Sub
// string.
type Value struct {
	Literal string
	Ref     string // logical ID or parameter name
	GetAtt  string // "LogicalId.Attribute"
	Sub     string // a !Sub string: Expand resolves it
}

// subVar is a ${Name} or ${LogicalId.Attribute} in a !Sub string; ${!x}
// is a literal ${x}.
var subVar = regexp.MustCompile(`\$\{(!?)([^}]*)\}`)

// Expand is the string of a !Sub value v, each ${Name} replaced by what
// resolve gives for !Ref Name and each ${LogicalId.Attribute} by what it
// gives for !GetAtt LogicalId.Attribute. Any other value is resolve(v).
func (v Value) Expand(resolve func(Value) (string, error)) (string, error) {
	if v.Sub == "" {
		return resolve(v)
	}
	var failed error
	out := subVar.ReplaceAllStringFunc(v.Sub, func(m string) string {
		g := subVar.FindStringSubmatch(m)
		if g[1] == "!" {
			return "${" + g[2] + "}"
		}
		ref := Value{Ref: g[2]}
		if !strings.HasPrefix(g[2], "AWS::") && strings.Contains(g[2], ".") {
			ref = Value{GetAtt: g[2]}
		}
		s, err := resolve(ref)
		if err != nil && failed == nil {
			failed = err
		}
		return s
	})
	return out, failed
}

func valueOf(n *yaml.Node) (Value, error) {
	switch {
	case n.Tag == "!Ref":
		return Value{Ref: n.Value}, nil
	case n.Tag == "!GetAtt":
		return Value{GetAtt: n.Value}, nil
	case n.Tag == "!Sub" && n.Kind == yaml.ScalarNode:
		return Value{Sub: n.Value}, nil
	case n.Kind == yaml.ScalarNode && (n.Tag == "" || strings.HasPrefix(n.Tag, "!!")): // plain or quoted, not an intrinsic
		return Value{Literal: n.Value}, nil
	case n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "Ref":
		return Value{Ref: n.Content[1].Value}, nil
	}
	return Value{}, fmt.Errorf("cfn: line %d: only literals, !Ref, !GetAtt and a !Sub string are supported locally", n.Line)
}

// Function is what local runs need of an AWS::Serverless::Function: its
// environment (Globals merged in), timeout and triggers.
type Function struct {
	LogicalID string
	Env       map[string]Value
	Timeout   int // seconds
	Routes    []Route
	Queues    []QueueTrigger
	Schedules []Schedule
	Streams   []StreamTrigger
}

// Route is an HttpApi event.
type Route struct{ Method, Path string }

// QueueTrigger is an SQS event source.
type QueueTrigger struct {
	Queue              string // the queue's logical ID
	BatchSize          int
	PartialFailures    bool // FunctionResponseTypes has ReportBatchItemFailures
	MaximumConcurrency int
}

// StreamTrigger is a DynamoDB event: a DynamoDB stream event source.
type StreamTrigger struct {
	Table            string // the table's logical ID (from !GetAtt X.StreamArn)
	BatchSize        int
	StartingPosition string
	Filters          []string // FilterCriteria.Filters[].Pattern, JSON text
	// MaximumRetryAttempts is -1 (Lambda's default) for retries until the
	// record expires.
	MaximumRetryAttempts    int
	Bisect                  bool   // BisectBatchOnFunctionError
	OnFailure               string // logical ID of the SQS queue in DestinationConfig.OnFailure; "" for none
	ReportBatchItemFailures bool   // FunctionResponseTypes has ReportBatchItemFailures
}

// Lambda's defaults for a DynamoDB event source.
const (
	defaultStreamBatchSize = 100
	defaultStreamRetries   = -1
)

// Schedule is a ScheduleV2 (or Schedule) event.
type Schedule struct {
	Expression string // "rate(5 minutes)"
	Input      string
}

type functionProps struct {
	Timeout     *int `yaml:"Timeout"`
	Environment struct {
		Variables map[string]yaml.Node `yaml:"Variables"`
	} `yaml:"Environment"`
	Events map[string]struct {
		Type       string     `yaml:"Type"`
		Properties eventProps `yaml:"Properties"`
	} `yaml:"Events"`
}

// eventProps are the properties of a function's events, of every type this
// package reads.
type eventProps struct {
	Method                string    `yaml:"Method"`
	Path                  string    `yaml:"Path"`
	Queue                 yaml.Node `yaml:"Queue"`
	BatchSize             int       `yaml:"BatchSize"`
	FunctionResponseTypes []string  `yaml:"FunctionResponseTypes"`
	ScalingConfig         struct {
		MaximumConcurrency yaml.Node `yaml:"MaximumConcurrency"`
	} `yaml:"ScalingConfig"`
	ScheduleExpression string `yaml:"ScheduleExpression"`
	Schedule           string `yaml:"Schedule"`
	Input              string `yaml:"Input"`
	// DynamoDB
	Stream           yaml.Node `yaml:"Stream"`
	StartingPosition string    `yaml:"StartingPosition"`
	FilterCriteria   struct {
		Filters []struct {
			Pattern yaml.Node `yaml:"Pattern"`
		} `yaml:"Filters"`
	} `yaml:"FilterCriteria"`
	MaximumRetryAttempts       *int `yaml:"MaximumRetryAttempts"`
	BisectBatchOnFunctionError bool `yaml:"BisectBatchOnFunctionError"`
	DestinationConfig          struct {
		OnFailure struct {
			Destination yaml.Node `yaml:"Destination"`
		} `yaml:"OnFailure"`
	} `yaml:"DestinationConfig"`
}

// Functions returns every AWS::Serverless::Function in the template.
func (t *Template) Functions() ([]Function, error) {
	var global functionProps
	if err := t.Globals.Function.Decode(&global); err != nil && !t.Globals.Function.IsZero() {
		return nil, fmt.Errorf("cfn: Globals.Function: %w", err)
	}
	var out []Function
	for _, id := range t.ResourcesOf("AWS::Serverless::Function") {
		var p functionProps
		res := t.Resources[id]
		if err := res.Properties.Decode(&p); err != nil {
			return nil, fmt.Errorf("cfn: %s: %w", id, err)
		}
		f := Function{LogicalID: id, Env: map[string]Value{}, Timeout: 3}
		for _, src := range []functionProps{global, p} {
			if src.Timeout != nil {
				f.Timeout = *src.Timeout
			}
			for k, n := range src.Environment.Variables {
				v, err := valueOf(&n)
				if err != nil {
					return nil, fmt.Errorf("cfn: %s: %s: %w", id, k, err)
				}
				f.Env[k] = v
			}
		}
		events := make([]string, 0, len(p.Events))
		for name := range p.Events {
			events = append(events, name)
		}
		slices.Sort(events)
		for _, name := range events {
			ev := p.Events[name]
			switch ev.Type {
			case "HttpApi":
				f.Routes = append(f.Routes, Route{Method: strings.ToUpper(ev.Properties.Method), Path: ev.Properties.Path})
			case "SQS":
				q, err := valueOf(&ev.Properties.Queue)
				queue, ok := strings.CutSuffix(q.GetAtt, ".Arn")
				if err != nil || !ok {
					return nil, fmt.Errorf("cfn: %s.%s: Queue must be !GetAtt <Queue>.Arn", id, name)
				}
				qt := QueueTrigger{Queue: queue, BatchSize: ev.Properties.BatchSize, PartialFailures: slices.Contains(ev.Properties.FunctionResponseTypes, "ReportBatchItemFailures")}
				if qt.BatchSize == 0 {
					qt.BatchSize = 10
				}
				if mc := ev.Properties.ScalingConfig.MaximumConcurrency; !mc.IsZero() {
					fmt.Sscan(mc.Value, &qt.MaximumConcurrency) // a !Ref to a parameter leaves it 0: unbounded locally
				}
				f.Queues = append(f.Queues, qt)
			case "ScheduleV2", "Schedule":
				expr := ev.Properties.ScheduleExpression
				if expr == "" {
					expr = ev.Properties.Schedule
				}
				f.Schedules = append(f.Schedules, Schedule{Expression: expr, Input: ev.Properties.Input})
			case "DynamoDB":
				st, err := t.streamTrigger(ev.Properties)
				if err != nil {
					return nil, fmt.Errorf("cfn: %s.%s: %w", id, name, err)
				}
				f.Streams = append(f.Streams, st)
			default:
				return nil, fmt.Errorf("cfn: %s.%s: event type %s is not supported locally", id, name, ev.Type)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// streamTrigger reads a DynamoDB event's properties. The stream and the
// on-failure destination must be !GetAtt of the template's own table and
// queue, which local runs create.
func (t *Template) streamTrigger(p eventProps) (StreamTrigger, error) {
	s, err := valueOf(&p.Stream)
	table, ok := strings.CutSuffix(s.GetAtt, ".StreamArn")
	if err != nil || !ok {
		return StreamTrigger{}, fmt.Errorf("Stream must be !GetAtt <Table>.StreamArn")
	}
	var tp tableProps
	if err := t.properties(table, "AWS::DynamoDB::Table", &tp); err != nil {
		return StreamTrigger{}, err
	}
	if tp.StreamSpecification.StreamViewType == "" {
		return StreamTrigger{}, fmt.Errorf("table %s has no StreamSpecification", table)
	}
	switch p.StartingPosition {
	case "TRIM_HORIZON", "LATEST":
	default:
		return StreamTrigger{}, fmt.Errorf("StartingPosition %q: want TRIM_HORIZON or LATEST", p.StartingPosition)
	}
	st := StreamTrigger{
		Table: table, BatchSize: p.BatchSize, StartingPosition: p.StartingPosition, MaximumRetryAttempts: defaultStreamRetries,
		Bisect: p.BisectBatchOnFunctionError, ReportBatchItemFailures: slices.Contains(p.FunctionResponseTypes, "ReportBatchItemFailures"),
	}
	if st.BatchSize == 0 {
		st.BatchSize = defaultStreamBatchSize
	}
	if p.MaximumRetryAttempts != nil {
		st.MaximumRetryAttempts = *p.MaximumRetryAttempts
	}
	for i, f := range p.FilterCriteria.Filters {
		v, err := valueOf(&f.Pattern)
		if err != nil || v.Literal == "" || !json.Valid([]byte(v.Literal)) {
			return StreamTrigger{}, fmt.Errorf("FilterCriteria.Filters[%d].Pattern must be JSON text", i)
		}
		st.Filters = append(st.Filters, v.Literal)
	}
	if dest := p.DestinationConfig.OnFailure.Destination; !dest.IsZero() {
		d, err := valueOf(&dest)
		queue, ok := strings.CutSuffix(d.GetAtt, ".Arn")
		if err != nil || !ok {
			return StreamTrigger{}, fmt.Errorf("DestinationConfig.OnFailure.Destination must be !GetAtt <Queue>.Arn")
		}
		if _, err := t.Queue(queue); err != nil {
			return StreamTrigger{}, fmt.Errorf("on-failure destination: %w", err)
		}
		st.OnFailure = queue
	}
	return st, nil
}

// ResourcesOf lists the logical IDs of the resources of type typ, sorted.
func (t *Template) ResourcesOf(typ string) []string {
	var ids []string
	for id, r := range t.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Parameter is a template parameter.
type Parameter struct {
	Type    string    `yaml:"Type"`
	Default yaml.Node `yaml:"Default"`
	// What CloudFormation checks of a value (params.go).
	AllowedValues         []string `yaml:"AllowedValues"`
	AllowedPattern        string   `yaml:"AllowedPattern"`
	MinLength             *int     `yaml:"MinLength"`
	MaxLength             *int     `yaml:"MaxLength"`
	MinValue              *float64 `yaml:"MinValue"`
	MaxValue              *float64 `yaml:"MaxValue"`
	ConstraintDescription string   `yaml:"ConstraintDescription"`
}

// Defaults returns each parameter's default value ("" when it has none).
func (t *Template) Defaults() map[string]string {
	out := map[string]string{}
	for name, p := range t.Parameters {
		out[name] = p.Default.Value
	}
	return out
}

// SecretString returns the literal SecretString of an
// AWS::SecretsManager::Secret, or "" when it has none (a generated one).
func (t *Template) SecretString(logicalID string) (string, error) {
	var p struct {
		SecretString string `yaml:"SecretString"`
	}
	if err := t.properties(logicalID, "AWS::SecretsManager::Secret", &p); err != nil {
		return "", err
	}
	return p.SecretString, nil
}
