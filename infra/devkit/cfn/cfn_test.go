package cfn

import (
	"os"
	"path/filepath"
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
	if login.Env["WXB_TABLE"].Ref != "Table" || len(login.Routes) != 3 {
		t.Errorf("LoginFunction = %+v", login)
	}
	push := byID["FollowEventFunction"]
	if len(push.Queues) != 1 || push.Queues[0].Queue != "PushRetryQueue" || !push.Queues[0].PartialFailures {
		t.Errorf("FollowEventFunction queues = %+v", push.Queues)
	}
	if r := byID["TokenRefresherFunction"]; len(r.Schedules) != 1 || r.Schedules[0].Expression != "rate(5 minutes)" || r.Timeout != 90 {
		t.Errorf("TokenRefresherFunction = %+v", r)
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
	if _, err := valueOf(&n); err == nil {
		t.Error("!Sub must be refused: it would be passed on unresolved")
	}
}
