package cfn

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestTableFromRepositoryTemplate(t *testing.T) {
	tpl, err := LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	tb, err := tpl.Table("Table", "people-test")
	if err != nil {
		t.Fatal(err)
	}
	if got := *tb.Create.TableName; got != "people-test" {
		t.Errorf("table name = %q", got)
	}
	if len(tb.Create.KeySchema) == 0 || *tb.Create.KeySchema[0].AttributeName != "pk" {
		t.Errorf("key schema = %+v, want pk first", tb.Create.KeySchema)
	}
	if tb.TTL == nil || *tb.TTL.TimeToLiveSpecification.AttributeName != "ttl" {
		t.Errorf("TTL = %+v, want attribute ttl", tb.TTL)
	}
	// The outcome-publisher reads the table's stream: both images.
	if s := tb.Create.StreamSpecification; s == nil || !*s.StreamEnabled || s.StreamViewType != "NEW_AND_OLD_IMAGES" {
		t.Errorf("stream = %+v, want NEW_AND_OLD_IMAGES", s)
	}
}

func TestTableErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "template.yaml")
	src := "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimeout: !Ref X\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PROVISIONED\n      KeySchema: [{AttributeName: pk, KeyType: HASH}]\n"
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tpl, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, id string }{
		{"missing resource", "Nope"},
		{"wrong type", "Q"},
		{"provisioned billing", "T"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tpl.Table(tc.id, "x"); err == nil {
				t.Fatal("want an error")
			}
		})
	}
	if got, err := Find(filepath.Join(dir)); err != nil || got != p {
		t.Errorf("Find = %q, %v", got, err)
	}
}

func TestQueue(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "template.yaml")
	src := `Resources:
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDLQ.Arn
        maxReceiveCount: 5
  WorkDLQ:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 1209600
  Bad:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy:
        deadLetterTargetArn: arn:aws:sqs:us-east-1:1:x
        maxReceiveCount: 5
`
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tpl, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := tpl.Queue("Work")
	if err != nil {
		t.Fatal(err)
	}
	if q.Attributes["VisibilityTimeout"] != "60" || q.DeadLetter != "WorkDLQ" || q.MaxReceiveCount != 5 {
		t.Fatalf("queue = %+v", q)
	}
	if _, err := tpl.Queue("Bad"); err == nil {
		t.Fatal("a literal dead-letter ARN must be refused: local runs cannot follow it")
	}
}

func TestFunctionsFromRepositoryTemplate(t *testing.T) {
	tpl, err := LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	fns, err := tpl.Functions()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Function{}
	for _, f := range fns {
		byID[f.LogicalID] = f
	}
	login := byID["LoginFunction"]
	if login.Env["WXB_TABLE"].Ref != "Table" || !slices.Contains(login.Routes, Route{Method: "POST", Path: "/mp/{appid}/login"}) {
		t.Errorf("LoginFunction = %+v", login)
	}
	push := byID["FollowEventFunction"]
	if len(push.Queues) != 1 || push.Queues[0].Queue != "PushRetryQueue" || !push.Queues[0].PartialFailures {
		t.Errorf("FollowEventFunction queues = %+v", push.Queues)
	}
	if r := byID["TokenRefresherFunction"]; len(r.Schedules) != 1 || r.Schedules[0].Expression != "rate(5 minutes)" || r.Timeout != 90 {
		t.Errorf("TokenRefresherFunction = %+v", r)
	}
	pub := byID["OutcomePublisherFunction"]
	if len(pub.Streams) != 1 {
		t.Fatalf("OutcomePublisherFunction streams = %+v, want one", pub.Streams)
	}
	if s := pub.Streams[0]; s.Table != "Table" || s.StartingPosition != "TRIM_HORIZON" || s.BatchSize != 100 || len(s.Filters) != 1 ||
		s.MaximumRetryAttempts <= 0 || !s.Bisect || s.OnFailure != "OutcomeDLQ" || !s.ReportBatchItemFailures {
		t.Errorf("OutcomePublisherFunction stream = %+v", s)
	}
	if pub.Env["WXB_OUTCOME_BUS"].Ref != "OutcomeBus" {
		t.Errorf("OutcomePublisherFunction WXB_OUTCOME_BUS = %+v, want !Ref OutcomeBus", pub.Env["WXB_OUTCOME_BUS"])
	}
	if tpl.Defaults()["LogRetentionDays"] == "" {
		t.Error("parameter defaults missing")
	}
}

func TestValueOf(t *testing.T) {
	var doc struct {
		V map[string]yaml.Node `yaml:"v"`
	}
	src := "v:\n  plain: 6\n  quoted: \"6\"\n  ref: !Ref Table\n  att: !GetAtt Q.Arn\n  sub: !Sub x-${AWS::Region}\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]Value{"plain": {Literal: "6"}, "quoted": {Literal: "6"}, "ref": {Ref: "Table"}, "att": {GetAtt: "Q.Arn"}} {
		n := doc.V[k]
		if got, err := valueOf(&n); err != nil || got != want {
			t.Errorf("%s: %+v, %v", k, got, err)
		}
	}
	n := doc.V["sub"]
	v, err := valueOf(&n)
	if err != nil || v != (Value{Sub: "x-${AWS::Region}"}) {
		t.Fatalf("sub: %+v, %v", v, err)
	}
	resolve := func(r Value) (string, error) {
		switch r {
		case Value{Ref: "AWS::Region"}:
			return "cn-north-1", nil
		case Value{GetAtt: "Q.Arn"}:
			return "arn:q", nil
		}
		return "", fmt.Errorf("unknown %+v", r)
	}
	for sub, want := range map[string]string{"x-${AWS::Region}": "x-cn-north-1", "${Q.Arn}/*": "arn:q/*", "${!Literal}-${AWS::Region}": "${Literal}-cn-north-1"} {
		if got, err := (Value{Sub: sub}).Expand(resolve); err != nil || got != want {
			t.Errorf("Expand(%q) = %q, %v; want %q", sub, got, err, want)
		}
	}
	if _, err := (Value{Sub: "${Nope}"}).Expand(resolve); err == nil {
		t.Error("a reference that does not resolve must fail the expansion, not be passed on")
	}
	if got, err := (Value{Ref: "AWS::Region"}).Expand(resolve); err != nil || got != "cn-north-1" {
		t.Errorf("Expand of a !Ref = %q, %v", got, err)
	}
}

func TestStreamTriggers(t *testing.T) {
	const head = `Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  NoStream:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  DLQ:
    Type: AWS::SQS::Queue
  Topic:
    Type: AWS::SNS::Topic
  F:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        S:
          Type: DynamoDB
          Properties:
`
	load := func(t *testing.T, props string) ([]Function, error) {
		t.Helper()
		p := filepath.Join(t.TempDir(), "template.yaml")
		if err := os.WriteFile(p, []byte(head+props), 0o600); err != nil {
			t.Fatal(err)
		}
		tpl, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return tpl.Functions()
	}
	t.Run("every_property", func(t *testing.T) {
		fns, err := load(t, `            Stream: !GetAtt T.StreamArn
            StartingPosition: LATEST
            BatchSize: 7
            FilterCriteria:
              Filters:
                - Pattern: '{"eventName": ["INSERT"]}'
                - Pattern: '{"eventName": ["MODIFY"]}'
            FunctionResponseTypes: [ReportBatchItemFailures]
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 3
            DestinationConfig:
              OnFailure:
                Type: SQS
                Destination: !GetAtt DLQ.Arn
`)
		if err != nil {
			t.Fatal(err)
		}
		want := StreamTrigger{Table: "T", BatchSize: 7, StartingPosition: "LATEST", Filters: []string{`{"eventName": ["INSERT"]}`, `{"eventName": ["MODIFY"]}`},
			MaximumRetryAttempts: 3, Bisect: true, OnFailure: "DLQ", ReportBatchItemFailures: true}
		if len(fns) != 1 || len(fns[0].Streams) != 1 || !reflect.DeepEqual(fns[0].Streams[0], want) {
			t.Fatalf("streams = %+v, want %+v", fns, want)
		}
	})
	t.Run("lambda_defaults", func(t *testing.T) {
		fns, err := load(t, "            Stream: !GetAtt T.StreamArn\n            StartingPosition: TRIM_HORIZON\n")
		if err != nil {
			t.Fatal(err)
		}
		want := StreamTrigger{Table: "T", BatchSize: 100, StartingPosition: "TRIM_HORIZON", MaximumRetryAttempts: -1}
		if got := fns[0].Streams[0]; !reflect.DeepEqual(got, want) {
			t.Fatalf("stream = %+v, want Lambda's defaults %+v", got, want)
		}
	})
	for _, tc := range []struct{ name, props string }{
		{"stream_not_getatt", "            Stream: arn:aws:dynamodb:us-east-1:1:table/x/stream/y\n            StartingPosition: LATEST\n"},
		{"table_without_stream", "            Stream: !GetAtt NoStream.StreamArn\n            StartingPosition: LATEST\n"},
		{"no_starting_position", "            Stream: !GetAtt T.StreamArn\n"},
		{"pattern_not_json", "            Stream: !GetAtt T.StreamArn\n            StartingPosition: LATEST\n            FilterCriteria: {Filters: [{Pattern: '{eventName'}]}\n"},
		{"pattern_sub", "            Stream: !GetAtt T.StreamArn\n            StartingPosition: LATEST\n            FilterCriteria: {Filters: [{Pattern: !Sub '{}'}]}\n"},
		{"on_failure_literal", "            Stream: !GetAtt T.StreamArn\n            StartingPosition: LATEST\n            DestinationConfig: {OnFailure: {Destination: arn:aws:sqs:us-east-1:1:q}}\n"},
		{"on_failure_not_a_queue", "            Stream: !GetAtt T.StreamArn\n            StartingPosition: LATEST\n            DestinationConfig: {OnFailure: {Destination: !GetAtt Topic.Arn}}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fns, err := load(t, tc.props); err == nil {
				t.Fatalf("want an error, got %+v", fns)
			}
		})
	}
}
