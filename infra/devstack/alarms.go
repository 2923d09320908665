package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
	"gopkg.in/yaml.v3"

	"wxbridge/infra/devkit/cfn"
)

// alarmProps is what the devstack reads of an AWS::CloudWatch::Alarm. The
// actions are left out: they notify AlarmTopicArn, which a devstack has
// not.
type alarmProps struct {
	AlarmDescription string `yaml:"AlarmDescription"`
	Namespace        string `yaml:"Namespace"`
	MetricName       string `yaml:"MetricName"`
	Dimensions       []struct {
		Name  string    `yaml:"Name"`
		Value yaml.Node `yaml:"Value"`
	} `yaml:"Dimensions"`
	Statistic string `yaml:"Statistic"`
	Metrics   []struct {
		ID         string `yaml:"Id"`
		Expression string `yaml:"Expression"`
		Label      string `yaml:"Label"`
		Period     *int32 `yaml:"Period"`
		ReturnData *bool  `yaml:"ReturnData"`
	} `yaml:"Metrics"`
	Period             *int32   `yaml:"Period"`
	EvaluationPeriods  *int32   `yaml:"EvaluationPeriods"`
	DatapointsToAlarm  *int32   `yaml:"DatapointsToAlarm"`
	Threshold          *float64 `yaml:"Threshold"`
	ComparisonOperator string   `yaml:"ComparisonOperator"`
	TreatMissingData   string   `yaml:"TreatMissingData"`
}

// cloudWatch is a CloudWatch client moto understands: the SDK speaks
// CloudWatch's CBOR protocol by default, which moto 5.2 does not; AWS
// answers the query protocol as well.
func cloudWatch(cfg aws.Config) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		o.Protocol = awsquery.New(schemas.GraniteServiceVersion20100801)
	})
}

// createAlarms puts the template's alarms in moto's CloudWatch, named
// prefix + logical ID, so that what watches a deployed stack's alarms
// (wxctl doctor) finds them locally too, and a test can set one to ALARM.
// moto keeps them but does not evaluate them: they stay OK unless set.
func createAlarms(ctx context.Context, cfg aws.Config, tpl *cfn.Template, prefix string, r *resources) error {
	cw := cloudWatch(cfg)
	for _, id := range tpl.ResourcesOf("AWS::CloudWatch::Alarm") {
		var p alarmProps
		props := tpl.Resources[id].Properties
		if err := props.Decode(&p); err != nil {
			return fmt.Errorf("alarm %s: %w", id, err)
		}
		name := prefix + id
		in := &cloudwatch.PutMetricAlarmInput{
			AlarmName:          aws.String(name),
			AlarmDescription:   aws.String(p.AlarmDescription),
			ComparisonOperator: cwtypes.ComparisonOperator(p.ComparisonOperator),
			EvaluationPeriods:  p.EvaluationPeriods,
			DatapointsToAlarm:  p.DatapointsToAlarm,
			Threshold:          p.Threshold,
			TreatMissingData:   nonEmpty(p.TreatMissingData),
			Period:             p.Period,
			Namespace:          nonEmpty(p.Namespace),
			MetricName:         nonEmpty(p.MetricName),
			Statistic:          cwtypes.Statistic(p.Statistic),
		}
		for _, d := range p.Dimensions {
			v, err := r.alarmDimension(&d.Value)
			if err != nil {
				return fmt.Errorf("alarm %s: dimension %s: %w", id, d.Name, err)
			}
			in.Dimensions = append(in.Dimensions, cwtypes.Dimension{Name: aws.String(d.Name), Value: aws.String(v)})
		}
		for _, m := range p.Metrics {
			in.Metrics = append(in.Metrics, cwtypes.MetricDataQuery{
				Id: aws.String(m.ID), Expression: nonEmpty(m.Expression), Label: nonEmpty(m.Label), Period: m.Period, ReturnData: m.ReturnData,
			})
		}
		if _, err := cw.PutMetricAlarm(ctx, in); err != nil {
			return fmt.Errorf("create alarm %s: %w", id, err)
		}
		r.refs[id] = name
		r.arns[id] = fmt.Sprintf("arn:aws:cloudwatch:%s:%s:alarm:%s", cfg.Region, account, name)
	}
	return nil
}

// alarmDimension resolves a dimension's value: a literal, a !Ref (a
// function's name) or a !GetAtt of a queue's QueueName or a resource's Arn.
func (r *resources) alarmDimension(n *yaml.Node) (string, error) {
	switch {
	case n.Tag == "!Ref":
		return r.resolve(cfn.Value{Ref: n.Value})
	case n.Tag != "!GetAtt" && (n.Kind != yaml.ScalarNode || strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!")):
		return "", fmt.Errorf("line %d: only literals, !Ref and !GetAtt are supported locally", n.Line)
	case n.Tag != "!GetAtt":
		return n.Value, nil
	}
	id, attr, _ := strings.Cut(n.Value, ".")
	if attr == "QueueName" {
		if url, ok := r.queues[id]; ok {
			return url[strings.LastIndex(url, "/")+1:], nil
		}
		return "", fmt.Errorf("!GetAtt %s: no such queue", n.Value)
	}
	return r.resolve(cfn.Value{GetAtt: n.Value})
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
