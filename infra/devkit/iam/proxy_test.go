package iam_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/iam"
	"wxbridge/shared/ddb"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// checkedTemplate gives Fn narrow rights on each service the functions
// call; Table is the repository's table (pk, index MsgKey on msg_key).
const checkedTemplate = `
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      GlobalSecondaryIndexes: [{IndexName: MsgKey, KeySchema: [{AttributeName: msg_key, KeyType: HASH}]}]
  Jobs: {Type: AWS::SQS::Queue}
  Creds: {Type: AWS::SecretsManager::Secret}
  Bus: {Type: AWS::Events::EventBus}
  Target: {Type: AWS::Serverless::Function}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - Sid: People
              Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:BatchWriteItem, dynamodb:Scan]
              Resource: !GetAtt Table.Arn
              Condition:
                ForAllValues:StringLike:
                  dynamodb:LeadingKeys: ["P#*"]
            - Sid: Reports
              Effect: Allow
              Action: dynamodb:Query
              Resource: !Sub ${Table.Arn}/index/MsgKey
            - {Sid: Enqueue, Effect: Allow, Action: sqs:SendMessage, Resource: !GetAtt Jobs.Arn}
            - {Sid: Credentials, Effect: Allow, Action: secretsmanager:GetSecretValue, Resource: !Ref Creds}
            - Sid: MakeTokenSecrets
              Effect: Allow
              Action: secretsmanager:CreateSecret
              Resource: !Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/token/*
            - {Sid: Outcomes, Effect: Allow, Action: events:PutEvents, Resource: !GetAtt Bus.Arn}
            - {Sid: Refresh, Effect: Allow, Action: lambda:InvokeFunction, Resource: !GetAtt Target.Arn}
`

// world is a proxy in front of moto with the test's table, queue, secret
// and bus, and an in-process Lambda Invoke API.
type world struct {
	proxy                     *iam.Proxy
	table, queue, secret, bus string
	invoked                   atomic.Int32
}

func newWorld(t testing.TB) *world {
	t.Helper()
	p := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(p, []byte(checkedTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	tpl, err := iam.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{table: awstest.Table(t), queue: awstest.Queue(t, "SendQueue"), secret: awstest.Secret(t, map[string]string{"k": "v"}), bus: awstest.Name(t, "bus")}
	eb := eventbridge.NewFromConfig(awstest.Config(nil))
	if _, err := eb.CreateEventBus(context.Background(), &eventbridge.CreateEventBusInput{Name: aws.String(w.bus)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eb.DeleteEventBus(context.Background(), &eventbridge.DeleteEventBusInput{Name: aws.String(w.bus)})
	})
	refs := map[string]string{"Table": w.table, "Jobs": w.queue, "Creds": w.secret, "Bus": w.bus, "Target": "Target", "Fn": "Fn"}
	ch := iam.New(tpl, iam.Env{Region: awstest.Region, Ref: func(name string) (string, error) {
		if v, ok := refs[name]; ok {
			return v, nil
		}
		return "", errors.New("no such resource")
	}})
	if err := ch.Admit("Fn"); err != nil {
		t.Fatal(err)
	}
	lambdaAPI := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.invoked.Add(1)
		io.Copy(io.Discard, r.Body)
		rw.Header().Set("Content-Type", "application/json")
		rw.Write([]byte(`{"ok":true}`))
	})
	w.proxy, err = iam.Start(ch, iam.Options{Upstream: awstest.Endpoint(), Handlers: map[string]http.Handler{"lambda": lambdaAPI}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.proxy.Close)
	return w
}

// attempts counts the HTTP requests a client sends (the SDK's retries
// included).
type attempts struct{ n atomic.Int32 }

func (a *attempts) RoundTrip(r *http.Request) (*http.Response, error) {
	a.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// config is Fn's AWS configuration through the proxy, counting attempts.
func (w *world) config(a *attempts, function string) aws.Config {
	cfg := w.proxy.Config(awstest.Config(nil), function)
	cfg.HTTPClient = &http.Client{Transport: a}
	return cfg
}

func pk(v string) map[string]ddbtypes.AttributeValue { return ddb.Key(v) }

// TestProxy drives every API the functions call through the check with the
// SDK's own clients: what Fn's policy allows reaches moto, what it does not
// fails with the service's AccessDenied error after one attempt (the SDK
// does not retry it), as in AWS.
func TestProxy(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a := &attempts{}
	cfg := w.config(a, "Fn")
	db, q, sm := dynamodb.NewFromConfig(cfg), sqs.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg)
	eb, lc := eventbridge.NewFromConfig(cfg), awslambda.NewFromConfig(cfg)
	tbl := aws.String(w.table)
	put := func(v string) ddbtypes.TransactWriteItem {
		return ddbtypes.TransactWriteItem{Put: &ddbtypes.Put{TableName: tbl, Item: pk(v)}}
	}
	write := func(vs ...string) []ddbtypes.WriteRequest {
		var out []ddbtypes.WriteRequest
		for _, v := range vs {
			out = append(out, ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{Item: pk(v)}})
		}
		return out
	}
	secretName := w.secret[strings.Index(w.secret, ":secret:")+8 : len(w.secret)-7]
	for _, tc := range []struct {
		name string
		call func() error
		// denied is "" for an allowed call, else the denied action, then
		// the error code and HTTP status the SDK must report.
		denied, code string
		status       int
	}{
		{"GetItem_with_an_allowed_leading_key", func() error {
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tbl, Key: pk("P#1")})
			return err
		}, "", "", 0},
		{"GetItem_with_another_leading_key", func() error {
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tbl, Key: pk("IDEM#1")})
			return err
		}, "dynamodb:GetItem", "AccessDeniedException", 400},
		{"PutItem_by_table_ARN", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("arn:aws:dynamodb:us-east-1:123456789012:table/" + w.table), Item: pk("P#1")})
			return err
		}, "", "", 0},
		{"DeleteItem_not_granted", func() error {
			_, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: tbl, Key: pk("P#1")})
			return err
		}, "dynamodb:DeleteItem", "AccessDeniedException", 400},
		{"BatchWriteItem_every_item_allowed", func() error {
			_, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{w.table: write("P#2", "P#3")}})
			return err
		}, "", "", 0},
		{"BatchWriteItem_one_item_outside", func() error {
			_, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{w.table: write("P#4", "SEND#5")}})
			return err
		}, "dynamodb:BatchWriteItem", "AccessDeniedException", 400},
		{"TransactWriteItems_checks_each_item_by_its_action", func() error {
			_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
				put("P#6"), {Update: &ddbtypes.Update{TableName: tbl, Key: pk("P#1"), UpdateExpression: aws.String("SET n = :n"), ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":n": ddb.N(1)}}},
			}})
			return err
		}, "", "", 0},
		{"TransactWriteItems_ConditionCheck_needs_ConditionCheckItem", func() error {
			_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
				put("P#7"), {ConditionCheck: &ddbtypes.ConditionCheck{TableName: tbl, Key: pk("P#1"), ConditionExpression: aws.String("attribute_exists(pk)")}},
			}})
			return err
		}, "dynamodb:ConditionCheckItem", "AccessDeniedException", 400},
		{"Scan_has_no_leading_keys_and_passes_ForAllValues", func() error {
			_, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: tbl})
			return err
		}, "", "", 0},
		{"Query_on_the_granted_index", func() error {
			_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: tbl, IndexName: aws.String("MsgKey"), KeyConditionExpression: aws.String("#k = :k"),
				ExpressionAttributeNames: map[string]string{"#k": "msg_key"}, ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":k": ddb.S("wx#1")}})
			return err
		}, "", "", 0},
		{"Query_on_the_table_itself", func() error {
			_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: tbl, KeyConditionExpression: aws.String("pk = :k"),
				ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":k": ddb.S("P#1")}})
			return err
		}, "dynamodb:Query", "AccessDeniedException", 400},
		{"SendMessage", func() error {
			_, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(w.queue), MessageBody: aws.String("{}")})
			return err
		}, "", "", 0},
		{"SendMessageBatch_needs_SendMessage", func() error {
			_, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(w.queue), Entries: []sqstypes.SendMessageBatchRequestEntry{{Id: aws.String("1"), MessageBody: aws.String("{}")}}})
			return err
		}, "", "", 0},
		{"ReceiveMessage_not_granted_though_a_poller_would_have_it", func() error {
			_, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(w.queue)})
			return err
		}, "sqs:ReceiveMessage", "AccessDenied", 403},
		{"GetSecretValue_by_ARN", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(w.secret)})
			return err
		}, "", "", 0},
		{"GetSecretValue_by_name", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretName)})
			return err
		}, "", "", 0},
		{"PutSecretValue_not_granted", func() error {
			_, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(w.secret), SecretString: aws.String("{}")})
			return err
		}, "secretsmanager:PutSecretValue", "AccessDeniedException", 400},
		{"CreateSecret_under_the_granted_name", func() error {
			_, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("wxbridge/token/" + awstest.Name(t, "wx")), SecretString: aws.String("{}")})
			return err
		}, "", "", 0},
		{"CreateSecret_elsewhere", func() error {
			_, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(awstest.Name(t, "wx")), SecretString: aws.String("{}")})
			return err
		}, "secretsmanager:CreateSecret", "AccessDeniedException", 400},
		{"CreateSecret_with_tags_needs_TagResource", func() error {
			_, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("wxbridge/token/" + awstest.Name(t, "wx")), SecretString: aws.String("{}"),
				Tags: []smtypes.Tag{{Key: aws.String("wxbridge-appid"), Value: aws.String("wx1")}}})
			return err
		}, "secretsmanager:TagResource", "AccessDeniedException", 400},
		{"PutEvents_on_the_granted_bus", func() error {
			out, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{EventBusName: aws.String(w.bus), Source: aws.String("wxbridge"), DetailType: aws.String("x"), Detail: aws.String("{}")}}})
			if err == nil && out.FailedEntryCount != 0 {
				err = errors.New("PutEvents failed an entry")
			}
			return err
		}, "", "", 0},
		{"PutEvents_on_the_default_bus", func() error {
			_, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{Source: aws.String("wxbridge"), DetailType: aws.String("x"), Detail: aws.String("{}")}}})
			return err
		}, "events:PutEvents", "AccessDeniedException", 400},
		{"Invoke_the_granted_function", func() error {
			_, err := lc.Invoke(ctx, &awslambda.InvokeInput{FunctionName: aws.String("Target"), Payload: []byte("{}")})
			return err
		}, "", "", 0},
		{"Invoke_a_qualified_version_is_another_resource", func() error {
			_, err := lc.Invoke(ctx, &awslambda.InvokeInput{FunctionName: aws.String("Target:live"), Payload: []byte("{}")})
			return err
		}, "lambda:InvokeFunction", "AccessDeniedException", 403},
		{"Invoke_another_function_by_ARN", func() error {
			_, err := lc.Invoke(ctx, &awslambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:123456789012:function:Other"), Payload: []byte("{}")})
			return err
		}, "lambda:InvokeFunction", "AccessDeniedException", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.n.Store(0)
			before := len(w.proxy.Denials())
			err := tc.call()
			if tc.denied == "" {
				if err != nil {
					t.Fatalf("want allowed: %v", err)
				}
				return
			}
			var api smithy.APIError
			var resp *awshttp.ResponseError
			if !errors.As(err, &api) || api.ErrorCode() != tc.code || !errors.As(err, &resp) || resp.HTTPStatusCode() != tc.status {
				t.Fatalf("error %v, want %s (HTTP %d)", err, tc.code, tc.status)
			}
			if !strings.Contains(api.ErrorMessage(), "is not authorized to perform: "+tc.denied) {
				t.Errorf("message %q, want AWS's words naming %s", api.ErrorMessage(), tc.denied)
			}
			if n := a.n.Load(); n != 1 {
				t.Errorf("%d attempts, want 1: AccessDenied is not retried", n)
			}
			if d := w.proxy.Denials(); len(d) != before+1 || d[len(d)-1].Action != tc.denied || d[len(d)-1].Function != "Fn" {
				t.Errorf("denials %+v, want one more for %s", d[before:], tc.denied)
			}
		})
	}
	if n := w.invoked.Load(); n != 1 {
		t.Errorf("the Lambda API ran %d invokes, want only the allowed one", n)
	}
}

// TestCallers: only calls signed as an admitted function pass; the
// answer names why.
func TestCallers(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct{ name, key, want string }{
		{"not_a_function", "testing", "not a function's"},
		{"a_function_not_admitted", iam.AccessKeyID("Target"), "was not admitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := w.proxy.Config(awstest.Config(nil), "Fn")
			cfg.Credentials = credentials.NewStaticCredentialsProvider(tc.key, "x", "")
			_, err := dynamodb.NewFromConfig(cfg).GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(w.table), Key: pk("P#1")})
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" || !strings.Contains(api.ErrorMessage(), tc.want) {
				t.Fatalf("error %v, want AccessDeniedException saying %q", err, tc.want)
			}
		})
	}
}

// TestBehindFaults: an awsfault proxy in front of the check keeps working
// (the SDK retries a throttle away), and the check still denies behind it.
func TestBehindFaults(t *testing.T) {
	w := newWorld(t)
	faults := awsfault.ForTest(t, w.proxy.URL(), awsfault.Rule{Service: awsfault.DynamoDB, Operation: "GetItem", Count: 1, Error: awsfault.ThrottlingException})
	a := &attempts{}
	db := dynamodb.NewFromConfig(faults.Config(w.config(a, "Fn")))
	ctx := context.Background()
	if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(w.table), Key: pk("P#1")}); err != nil || a.n.Load() != 2 {
		t.Fatalf("GetItem through one throttle: %v after %d attempts, want success after 2", err, a.n.Load())
	}
	a.n.Store(0)
	_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(w.table), Key: pk("SEND#1")})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" || a.n.Load() != 1 {
		t.Fatalf("GetItem SEND#: %v after %d attempts, want AccessDeniedException at once", err, a.n.Load())
	}
}

// TestConcurrentCalls: calls of one function at once, while the checker
// admits it again (as FunctionEnv does for each function a test builds),
// are each decided on their own.
func TestConcurrentCalls(t *testing.T) {
	w := newWorld(t)
	db := dynamodb.NewFromConfig(w.proxy.Config(awstest.Config(nil), "Fn"))
	ctx := context.Background()
	var wg sync.WaitGroup
	var allowed, denied atomic.Int32
	for i := range 8 {
		wg.Go(func() {
			key := "P#" + strconv.Itoa(i)
			if i%2 == 1 {
				key = "SEND#" + strconv.Itoa(i)
			}
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(w.table), Key: pk(key)})
			var api smithy.APIError
			switch {
			case err == nil:
				allowed.Add(1)
			case errors.As(err, &api) && api.ErrorCode() == "AccessDeniedException":
				denied.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		for range 4 {
			if err := w.proxy.Checker().Admit("Fn"); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if allowed.Load() != 4 || denied.Load() != 4 {
		t.Fatalf("%d allowed, %d denied; want 4 and 4", allowed.Load(), denied.Load())
	}
}

// TestUnknownAPI: a call the check cannot map to IAM's actions and
// resources is denied, saying so, never let through unchecked.
func TestUnknownAPI(t *testing.T) {
	w := newWorld(t)
	_, err := sqs.NewFromConfig(w.proxy.Config(awstest.Config(nil), "Fn")).ListQueues(context.Background(), &sqs.ListQueuesInput{})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "AccessDenied" || !strings.Contains(api.ErrorMessage(), "does not map") {
		t.Fatalf("ListQueues: %v, want AccessDenied saying the check does not map it", err)
	}
}
