package awsfault_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func start(t *testing.T) *awsfault.Proxy {
	t.Helper()
	p, err := awsfault.Start(awstest.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// via is the test's AWS configuration sent through p, with the SDK's
// standard retryer. fast shortens its backoff (up to 2 s, then 4 s, in the
// SDK) to a few milliseconds: what is retried and how often stays the
// SDK's.
func via(p *awsfault.Proxy, fast bool) aws.Config {
	cfg := awstest.Config(nil)
	cfg.BaseEndpoint = aws.String(p.URL())
	if fast {
		cfg.Retryer = func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 5 * time.Millisecond })
		}
	}
	return cfg
}

// once is via without retries: the first answer is the call's result.
func once(p *awsfault.Proxy) aws.Config {
	cfg := via(p, false)
	cfg.RetryMaxAttempts = 1
	return cfg
}

func add(t *testing.T, p *awsfault.Proxy, r awsfault.Rule) {
	t.Helper()
	if _, err := p.Add(r); err != nil {
		t.Fatal(err)
	}
}

func fired(t *testing.T, p *awsfault.Proxy) []int {
	t.Helper()
	var out []int
	for _, st := range p.List() {
		out = append(out, st.Fired)
	}
	return out
}

func key(pk string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}}
}

// bump increments a counter on item pk.
func bump(ctx context.Context, db *dynamodb.Client, table, pk string) (*dynamodb.UpdateItemOutput, error) {
	return db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &table,
		Key:                       key(pk),
		UpdateExpression:          aws.String("ADD n :one"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":one": &ddbtypes.AttributeValueMemberN{Value: "1"}},
	})
}

// counter reads item pk's counter straight from moto.
func counter(t *testing.T, table, pk string) string {
	t.Helper()
	out, err := dynamodb.NewFromConfig(awstest.Config(nil)).GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &table, Key: key(pk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := out.Item["n"].(*ddbtypes.AttributeValueMemberN); ok {
		return n.Value
	}
	return ""
}

func TestSDKRetries(t *testing.T) {
	ctx := context.Background()
	table := awstest.Table(t)

	t.Run("one_throttle_is_retried_transparently", func(t *testing.T) {
		p := start(t)
		add(t, p, awsfault.Rule{Service: "dynamodb", Operation: "UpdateItem", Count: 1, Error: "ThrottlingException"})
		out, err := bump(ctx, dynamodb.NewFromConfig(via(p, false)), table, "once")
		if err != nil {
			t.Fatalf("UpdateItem: %v, want the SDK to retry past one throttle", err)
		}
		if attempts, _ := retry.GetAttemptResults(out.ResultMetadata); len(attempts.Results) != 2 {
			t.Fatalf("%d attempts, want 2", len(attempts.Results))
		}
		if got := fired(t, p); len(got) != 1 || got[0] != 1 {
			t.Fatalf("fired %v, want [1]", got)
		}
		if n := counter(t, table, "once"); n != "1" {
			t.Fatalf("counter %q, want 1: the throttled attempt must not reach moto", n)
		}
	})

	t.Run("five_throttles_outlast_the_three_attempts", func(t *testing.T) {
		p := start(t)
		add(t, p, awsfault.Rule{Service: "dynamodb", Operation: "UpdateItem", Count: 5, Error: "ThrottlingException"})
		db := dynamodb.NewFromConfig(via(p, true))
		if n := db.Options().Retryer.MaxAttempts(); n != 3 {
			t.Fatalf("the standard retryer makes %d attempts; this test expects 3", n)
		}
		_, err := bump(ctx, db, table, "five")
		var te *ddbtypes.ThrottlingException
		if !errors.As(err, &te) || !strings.Contains(te.ErrorMessage(), "injected by awsfault") {
			t.Fatalf("UpdateItem: %v, want the throttle after the retries", err)
		}
		if got := fired(t, p); got[0] != 3 {
			t.Fatalf("fired %v, want [3]", got)
		}
		// Two throttles are left: the next call spends them and succeeds
		// on its third attempt.
		if _, err := bump(ctx, db, table, "five"); err != nil {
			t.Fatalf("second UpdateItem: %v", err)
		}
		if got := fired(t, p); got[0] != 5 {
			t.Fatalf("fired %v, want [5]", got)
		}
		if n := counter(t, table, "five"); n != "1" {
			t.Fatalf("counter %q, want 1", n)
		}
	})
}

// TestErrorShapes checks that each injected error reaches the SDK as the
// service's own error, typed where the service's model types it, with the
// HTTP status AWS uses, and that the SDK's retryer deems it retryable.
func TestErrorShapes(t *testing.T) {
	ctx := context.Background()
	table := awstest.Table(t)
	queue := awstest.Queue(t, "SendQueue")
	secret := awstest.Secret(t, map[string]string{"k": "v"})
	p := start(t)
	db := dynamodb.NewFromConfig(once(p))
	q := sqs.NewFromConfig(once(p))
	sm := secretsmanager.NewFromConfig(once(p))
	eb := eventbridge.NewFromConfig(once(p))
	putEvent := func() error {
		_, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
			{Source: aws.String("wxbridge"), DetailType: aws.String("shape"), Detail: aws.String("{}")},
		}})
		return err
	}

	tests := []struct {
		name   string
		rule   awsfault.Rule
		call   func() error
		status int
		code   string
		typed  func(error) bool
	}{
		{"dynamodb_internal_server_error", awsfault.Rule{Service: "dynamodb", Operation: "UpdateItem", Error: "InternalServerError"},
			func() error { _, err := bump(ctx, db, table, "shape"); return err }, 500, "InternalServerError",
			func(err error) bool { var e *ddbtypes.InternalServerError; return errors.As(err, &e) }},
		{"dynamodb_provisioned_throughput", awsfault.Rule{Service: "dynamodb", Operation: "PutItem", Error: "ProvisionedThroughputExceededException"},
			func() error {
				_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: key("shape")})
				return err
			}, 400, "ProvisionedThroughputExceededException",
			func(err error) bool {
				var e *ddbtypes.ProvisionedThroughputExceededException
				return errors.As(err, &e)
			}},
		{"dynamodb_throttling", awsfault.Rule{Service: "dynamodb", Operation: "GetItem", Error: "ThrottlingException"},
			func() error {
				_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &table, Key: key("shape")})
				return err
			}, 400, "ThrottlingException",
			func(err error) bool { var e *ddbtypes.ThrottlingException; return errors.As(err, &e) }},
		{"sqs_throttling_is_request_throttled", awsfault.Rule{Service: "sqs", Operation: "SendMessage", Error: "ThrottlingException"},
			func() error {
				_, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &queue, MessageBody: aws.String("x")})
				return err
			}, 400, "RequestThrottled",
			func(err error) bool { var e *sqstypes.RequestThrottled; return errors.As(err, &e) }},
		{"sqs_internal_failure", awsfault.Rule{Service: "sqs", Operation: "ReceiveMessage", Error: "InternalServerError"},
			func() error {
				_, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &queue})
				return err
			}, 500, "InternalFailure", nil},
		{"secretsmanager_throttling", awsfault.Rule{Service: "secretsmanager", Operation: "GetSecretValue", Error: "ThrottlingException"},
			func() error {
				_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &secret})
				return err
			}, 400, "ThrottlingException", nil},
		{"secretsmanager_internal_service_error", awsfault.Rule{Service: "secretsmanager", Operation: "GetSecretValue", Error: "InternalServerError"},
			func() error {
				_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &secret})
				return err
			}, 500, "InternalServiceError",
			func(err error) bool { var e *smtypes.InternalServiceError; return errors.As(err, &e) }},
		{"eventbridge_throttling", awsfault.Rule{Service: "events", Operation: "PutEvents", Error: "ThrottlingException"},
			putEvent, 400, "ThrottlingException", nil},
		{"eventbridge_internal_exception", awsfault.Rule{Service: "events", Operation: "PutEvents", Error: "InternalServerError"},
			putEvent, 500, "InternalException",
			func(err error) bool { var e *ebtypes.InternalException; return errors.As(err, &e) }},
	}
	retryable := retry.IsErrorRetryables(retry.DefaultRetryables)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.Clear()
			tt.rule.Count = 1
			add(t, p, tt.rule)
			err := tt.call()
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != tt.code || !strings.Contains(api.ErrorMessage(), "injected by awsfault") {
				t.Fatalf("error %v, want code %s with the injected message", err, tt.code)
			}
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != tt.status {
				t.Fatalf("error %v: want HTTP %d", err, tt.status)
			}
			if tt.typed != nil && !tt.typed(err) {
				t.Fatalf("error %T (%v) is not the service's typed error", api, err)
			}
			if v := retryable.IsErrorRetryable(err); v != aws.TrueTernary {
				t.Fatalf("the SDK's retryer calls %s not retryable", tt.code)
			}
			if err := tt.call(); err != nil {
				t.Fatalf("after the rule is spent: %v, want the call to reach moto", err)
			}
		})
	}
}

func TestMatching(t *testing.T) {
	ctx := context.Background()
	table := awstest.Table(t)
	p := start(t)
	db := dynamodb.NewFromConfig(once(p))
	sm := secretsmanager.NewFromConfig(once(p))
	secret := awstest.Secret(t, map[string]string{"k": "v"})

	add(t, p, awsfault.Rule{Service: "dynamodb", Operation: "UpdateItem", Match: "person#42", Error: "InternalServerError"})
	if _, err := bump(ctx, db, table, "person#7"); err != nil {
		t.Fatalf("a body without the match: %v", err)
	}
	for range 2 { // count 0: every match, until cleared
		if _, err := bump(ctx, db, table, "person#42"); err == nil {
			t.Fatal("a body with the match reached moto")
		}
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: key("person#42")}); err != nil {
		t.Fatalf("another operation: %v", err)
	}
	if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &secret}); err != nil {
		t.Fatalf("another service: %v", err)
	}
	if got := fired(t, p); got[0] != 2 {
		t.Fatalf("fired %v, want [2]", got)
	}

	// Any operation of the service, and the first armed rule wins.
	p.Clear()
	add(t, p, awsfault.Rule{Service: "secretsmanager", Count: 1, Error: "InternalServerError"})
	add(t, p, awsfault.Rule{Service: "secretsmanager", Count: 1, Error: "ThrottlingException"})
	var api smithy.APIError
	for _, want := range []string{"InternalServiceError", "ThrottlingException"} {
		_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &secret})
		if !errors.As(err, &api) || api.ErrorCode() != want {
			t.Fatalf("GetSecretValue: %v, want %s", err, want)
		}
	}
	if got := fired(t, p); len(got) != 2 || got[0] != 1 || got[1] != 1 {
		t.Fatalf("fired %v, want [1 1]", got)
	}
}

func TestTimeout(t *testing.T) {
	table := awstest.Table(t)

	t.Run("the_request_is_held_until_the_caller_gives_up", func(t *testing.T) {
		p := start(t)
		db := dynamodb.NewFromConfig(via(p, true))
		add(t, p, awsfault.Rule{Service: "dynamodb", Operation: "UpdateItem", Count: 1, Error: "timeout"})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err := bump(ctx, db, table, "slow")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("UpdateItem: %v, want the caller's deadline", err)
		}
		if took := time.Since(began); took < 300*time.Millisecond || took > 3*time.Second {
			t.Fatalf("gave up after %v, want its 300ms deadline", took)
		}
		if _, err := bump(context.Background(), db, table, "slow"); err != nil {
			t.Fatalf("after the held request: %v", err)
		}
		if n := counter(t, table, "slow"); n != "1" {
			t.Fatalf("counter %q, want 1: the held request must not reach moto", n)
		}
	})

	t.Run("close_drops_held_requests", func(t *testing.T) {
		p := start(t)
		db := dynamodb.NewFromConfig(once(p))
		add(t, p, awsfault.Rule{Service: "dynamodb", Error: "timeout"})
		failed := make(chan error, 1)
		go func() { _, err := bump(context.Background(), db, table, "held"); failed <- err }()
		for fired(t, p)[0] == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		began := time.Now()
		p.Close()
		if took := time.Since(began); took > 2*time.Second {
			t.Fatalf("Close took %v with a request held", took)
		}
		select {
		case err := <-failed:
			if err == nil {
				t.Fatal("the held request succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the held request is still waiting after Close")
		}
	})
}

func TestQueryProtocol(t *testing.T) {
	p := start(t)
	add(t, p, awsfault.Rule{Service: "sqs", Operation: "SendMessage", Count: 1, Error: "ThrottlingException"})
	req, _ := http.NewRequest("POST", p.URL()+"/", strings.NewReader("Action=SendMessage&Version=2012-11-05&QueueUrl=q&MessageBody=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260302/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/xml") ||
		!strings.Contains(string(body), "<Code>RequestThrottled</Code>") || !strings.Contains(string(body), "<Type>Sender</Type>") {
		t.Fatalf("HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestControl(t *testing.T) {
	p := start(t)
	mux := http.NewServeMux()
	mux.Handle("/_dev/faults", p.Control())
	do := func(method, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, "/_dev/faults", strings.NewReader(body))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != want {
			t.Fatalf("%s %s: %d (%s), want %d", method, body, w.Code, w.Body, want)
		}
		var out map[string]any
		if w.Body.Len() > 0 {
			json.Unmarshal(w.Body.Bytes(), &out)
		}
		return out
	}
	got := do("POST", `{"service":"DynamoDB","operation":"UpdateItem","match":"x","count":2,"error":"ThrottlingException"}`, 201)
	if got["id"] != 1.0 || got["service"] != "dynamodb" || got["fired"] != 0.0 || got["count"] != 2.0 {
		t.Fatalf("created %v", got)
	}
	for _, bad := range []string{
		`{"service":"s3","error":"InternalServerError"}`,
		`{"service":"sqs","error":"ProvisionedThroughputExceededException"}`,
		`{"service":"sqs","error":"Boom"}`,
		`{"service":"sqs","error":"timeout","count":-1}`,
		`{"service":"sqs","error":"timeout","operaton":"SendMessage"}`,
		`not json`,
	} {
		if e := do("POST", bad, 400); e["error"] == nil || !strings.Contains(e["error"].(string), "awsfault") {
			t.Errorf("POST %s: %v, want an awsfault error", bad, e)
		}
	}
	rules := do("GET", "", 200)["rules"].([]any)
	if len(rules) != 1 || rules[0].(map[string]any)["error"] != "ThrottlingException" {
		t.Fatalf("rules %v", rules)
	}
	do("DELETE", "", 204)
	if rules := do("GET", "", 200)["rules"].([]any); len(rules) != 0 {
		t.Fatalf("after DELETE: %v", rules)
	}
	do("PUT", "", 405)
}

func TestLostAnswer(t *testing.T) {
	ctx := context.Background()
	table := awstest.Table(t)
	p := start(t)
	db := dynamodb.NewFromConfig(once(p))
	add(t, p, awsfault.Rule{Service: "dynamodb", Operation: "PutItem", Count: 1, Error: awsfault.LostAnswer})
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: key("lost#1"),
		ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InternalServerError" {
		t.Fatalf("PutItem with its answer lost = %v, want InternalServerError", err)
	}
	// It happened all the same: the same conditional put now finds the item.
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: key("lost#1"),
		ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("the put whose answer was lost was not performed: retry got %v", err)
	}
	if _, err := p.Add(awsfault.Rule{Service: "sqs", Error: awsfault.LostAnswer}); err != nil {
		t.Fatalf("lost_answer is refused for sqs: %v", err)
	}
}
