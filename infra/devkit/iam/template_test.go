package iam

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stubEnv resolves every !Ref to a name made from it, as an environment
// that has every resource: tables and buses by name, queues by URL,
// secrets by ARN.
func stubEnv(t *testing.T, tpl *Template, region string, missing ...string) Env {
	return Env{Region: region, Ref: func(name string) (string, error) {
		for _, m := range missing {
			if m == name {
				return "", errors.New("not made")
			}
		}
		switch tpl.Resources[name].Type {
		case "AWS::SQS::Queue":
			return "http://127.0.0.1:1/123456789012/" + name, nil
		case "AWS::SecretsManager::Secret":
			return "arn:" + Partition(region) + ":secretsmanager:" + region + ":123456789012:secret:" + name + "-AbCdEf", nil
		case "":
			return "", errors.New("not a resource") // parameters: tests set what they need
		}
		return name, nil
	}}
}

func loadRepository(t *testing.T) *Template {
	t.Helper()
	tpl, err := LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// TestRepositoryTemplate admits every function of template.yaml (any
// policy the check cannot read fails here, not in a function's test) and
// checks a few of its rules, in us-east-1 and in AWS China.
func TestRepositoryTemplate(t *testing.T) {
	tpl := loadRepository(t)
	for _, region := range []string{"us-east-1", "cn-north-1"} {
		t.Run(region, func(t *testing.T) {
			env := stubEnv(t, tpl, region)
			base := env.Ref
			env.Ref = func(name string) (string, error) {
				if _, ok := tpl.Parameters[name]; ok {
					return "", nil // every parameter at an empty value
				}
				return base(name)
			}
			ch := New(tpl, env)
			for _, id := range sortedKeys(tpl.Resources) {
				if tpl.Resources[id].Type != samFunction {
					continue
				}
				if err := ch.Admit(id); err != nil {
					t.Fatalf("%s: %v", id, err)
				}
			}
			p := Partition(region)
			table := "arn:" + p + ":dynamodb:" + region + ":123456789012:table/Table"
			decide := func(fn string, req Request) Decision {
				t.Helper()
				ro := ch.roles[fn]
				if req.Context == nil {
					req.Context = map[string][]string{}
				}
				ch.globals(req.Context, ro, region)
				policies := ro.policies
				for _, a := range ch.resources {
					for _, arn := range a.resources {
						if arn == req.Resource {
							policies = append(policies[:len(policies):len(policies)], a.policy)
						}
					}
				}
				return Evaluate(policies, ro.arn, "123456789012", req)
			}
			if d := decide("LoginFunction", leading("dynamodb:UpdateItem", table, "P#01H")); !d.Allowed {
				t.Errorf("login UpdateItem P#: %+v", d)
			}
			if d := decide("LoginFunction", leading("dynamodb:UpdateItem", table, "SEND#job")); d.Allowed {
				t.Errorf("login UpdateItem SEND#: %+v, want denied", d)
			}
			if d := decide("FollowEventFunction", leading("dynamodb:Query", table+"/index/MsgKey", "wx#1")); !d.Allowed {
				t.Errorf("follow-event Query MsgKey: %+v", d)
			}
			secret := "arn:" + p + ":secretsmanager:" + region + ":123456789012:secret:MiniProgramTokenSecret-AbCdEf"
			put := Request{Action: "secretsmanager:PutSecretValue", Resource: secret}
			if d := decide("TokenRefresherFunction", put); !d.Allowed {
				t.Errorf("refresher PutSecretValue: %+v", d)
			}
			if d := decide("SendWorkerFunction", put); d.Allowed || !d.Explicit || !d.ResourcePolicy {
				t.Errorf("send-worker PutSecretValue: %+v, want the token secret's policy to deny it", d)
			}
			invoke := Request{Action: "lambda:InvokeFunction", Resource: "arn:" + p + ":lambda:" + region + ":123456789012:function:TokenRefresherFunction"}
			if d := decide("SendWorkerFunction", invoke); !d.Allowed {
				t.Errorf("send-worker invoke refresher: %+v", d)
			}
		})
	}
}

func writeTemplate(t *testing.T, src string) *Template {
	t.Helper()
	p := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tpl, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

const intrinsicsTemplate = `
Parameters:
  Extra: {Type: String}
Conditions:
  HasExtra: !Not [!Equals [!Ref Extra, ""]]
Resources:
  Table: {Type: AWS::DynamoDB::Table, Properties: {KeySchema: [{AttributeName: pk, KeyType: HASH}]}}
  Jobs: {Type: AWS::SQS::Queue}
  Bus: {Type: AWS::Events::EventBus}
  Reader:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - {Effect: Allow, Action: sqs:ReceiveMessage, Resource: !GetAtt Jobs.Arn}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - AWSLambdaBasicExecutionRole
        - !Ref Reader
        - DynamoDBReadPolicy: {TableName: !Ref Table}
        - SQSSendMessagePolicy: {QueueName: !GetAtt Jobs.QueueName}
        - EventBridgePutEventsPolicy: {EventBusName: !Ref Bus}
        - Statement:
            - Sid: Joined
              Effect: Allow
              Action: dynamodb:PutItem
              Resource: !Join ["", [!Sub "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/", !Ref Table]]
            - Sid: OnlyWithExtra
              Effect: Allow
              Action: dynamodb:DeleteItem
              Resource: !If [HasExtra, !GetAtt Table.Arn, !Ref AWS::NoValue]
            - Sid: Selected
              Effect: Allow
              Action: dynamodb:UpdateItem
              Resource: !Select [1, !Split [",", !Sub "x,${Table.Arn}"]]
`

// TestIntrinsics resolves the forms a policy is written in: SAM policy
// templates, managed policies of the template and AWS's, !Sub, !Join,
// !GetAtt, !If on a condition, AWS::NoValue, the partition.
func TestIntrinsics(t *testing.T) {
	tpl := writeTemplate(t, intrinsicsTemplate)
	for _, extra := range []string{"", "yes"} {
		env := stubEnv(t, tpl, "cn-northwest-1")
		base := env.Ref
		env.Ref = func(name string) (string, error) {
			if name == "Extra" {
				return extra, nil
			}
			return base(name)
		}
		ch := New(tpl, env)
		if err := ch.Admit("Fn"); err != nil {
			t.Fatal(err)
		}
		ro := ch.roles["Fn"]
		if ro.arn != "arn:aws-cn:iam::123456789012:role/FnRole" {
			t.Errorf("role %s", ro.arn)
		}
		table := "arn:aws-cn:dynamodb:cn-northwest-1:123456789012:table/Table"
		queue := "arn:aws-cn:sqs:cn-northwest-1:123456789012:Jobs"
		for _, tc := range []struct {
			req  Request
			want bool
		}{
			{leading("dynamodb:Query", table+"/index/ByX", "x"), true},     // DynamoDBReadPolicy
			{leading("dynamodb:PutItem", table, "x"), true},                // !Join
			{leading("dynamodb:DeleteItem", table, "x"), extra != ""},      // !If
			{leading("dynamodb:UpdateItem", table, "x"), true},             // !Select, !Split, ${Table.Arn}
			{Request{Action: "sqs:SendMessage", Resource: queue}, true},    // SQSSendMessagePolicy with QueueName
			{Request{Action: "sqs:ReceiveMessage", Resource: queue}, true}, // the template's managed policy
			{Request{Action: "sqs:DeleteMessage", Resource: queue}, false},
			{Request{Action: "events:PutEvents", Resource: "arn:aws-cn:events:cn-northwest-1:123456789012:event-bus/Bus"}, true},
			{Request{Action: "logs:PutLogEvents", Resource: "arn:aws-cn:logs:cn-northwest-1:123456789012:log-group:x"}, true},
		} {
			if tc.req.Context == nil {
				tc.req.Context = map[string][]string{}
			}
			if d := Evaluate(ro.policies, ro.arn, "123456789012", tc.req); d.Allowed != tc.want {
				t.Errorf("Extra=%q: %s on %s: %+v, want allowed %v", extra, tc.req.Action, tc.req.Resource, d, tc.want)
			}
		}
	}
}

// TestTemplateErrors: what the check cannot read is an error that names
// it; a reference to a resource the environment has not made allows
// nothing (and is noted), and in a Deny it is an error.
func TestTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ name, policies, want string }{
		{"unknown_SAM_policy_template", "- KMSDecryptPolicy: {KeyId: x}", "SAM policy template KMSDecryptPolicy"},
		{"unknown_managed_policy", "- AmazonS3FullAccess", "managed policy AmazonS3FullAccess"},
		{"unknown_intrinsic", "- Statement: [{Effect: Allow, Action: s3:GetObject, Resource: !ImportValue x}]", "Fn::ImportValue"},
		{"policy_variable", "- Statement: [{Effect: Allow, Action: s3:GetObject, Resource: !Sub 'arn:aws:s3:::b/${!aws:username}'}]", "policy variable"},
		{"unresolved_in_a_deny", "- Statement: [{Effect: Deny, Action: sqs:*, Resource: !GetAtt Gone.Arn}]", "Gone"},
		{"not_principal", "- Statement: [{Effect: Allow, NotPrincipal: {AWS: x}, Action: sqs:*, Resource: '*'}]", "NotPrincipal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl := writeTemplate(t, "Resources:\n  Gone: {Type: AWS::SQS::Queue}\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Policies:\n        "+tc.policies+"\n")
			err := New(tpl, stubEnv(t, tpl, "us-east-1", "Gone")).Admit("Fn")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Admit = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	t.Run("unresolved_in_an_allow_allows_nothing", func(t *testing.T) {
		tpl := writeTemplate(t, "Resources:\n  Gone: {Type: AWS::SQS::Queue}\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Policies:\n        - Statement: [{Sid: Send, Effect: Allow, Action: sqs:SendMessage, Resource: [!GetAtt Gone.Arn, '*']}]\n")
		ch := New(tpl, stubEnv(t, tpl, "us-east-1", "Gone"))
		if err := ch.Admit("Fn"); err != nil {
			t.Fatal(err)
		}
		ro := ch.roles["Fn"]
		if len(ro.notes) != 1 || !strings.Contains(ro.notes[0], "Gone") {
			t.Fatalf("notes %q, want one naming Gone", ro.notes)
		}
		if len(ro.policies[0].Statements[0].Resource) != 2 {
			t.Fatalf("statement %+v, want both resources kept", ro.policies[0].Statements[0])
		}
	})
}
