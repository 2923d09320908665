package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"wxbridge/infra/devkit/sandbox"
)

// TestAWSFaults makes DynamoDB fail under a function through /_dev/faults,
// as a developer would with curl: a rule matching one person's openid
// breaks that person's mini-program login until it is cleared, and a
// single throttle is absorbed by the SDK's retries.
func TestAWSFaults(t *testing.T) {
	s := startStack(t)
	faults := s.APIURL + "/_dev/faults"
	login := func(p sandbox.Person) (int, map[string]any) {
		t.Helper()
		code, err := s.sb.WXLogin(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		return call(t, "POST", s.APIURL+"/mp/login", map[string]any{"code": code}, nil)
	}
	rules := func() []map[string]any {
		t.Helper()
		status, out := call(t, "GET", faults, nil, nil)
		if status != 200 {
			t.Fatalf("GET /_dev/faults: %d %v", status, out)
		}
		var rs []map[string]any
		for _, r := range out["rules"].([]any) {
			rs = append(rs, r.(map[string]any))
		}
		return rs
	}

	ann := s.sb.CreatePerson(sandbox.PersonSpec{Nickname: "Ann"})
	status, rule := call(t, "POST", faults, map[string]any{"service": "dynamodb", "match": ann.MPOpenID, "error": "InternalServerError"}, nil)
	if status != 201 || rule["id"] == nil || rule["fired"] != 0.0 || rule["match"] != ann.MPOpenID {
		t.Fatalf("POST /_dev/faults: %d %v", status, rule)
	}
	if status, out := login(ann); status < 500 {
		t.Fatalf("login with DynamoDB failing: %d %v, want a 5xx", status, out)
	}
	// The SDK made its three attempts, each answered by the rule.
	if rs := rules(); len(rs) != 1 || rs[0]["fired"].(float64) < 3 {
		t.Fatalf("rules %v, want one that fired at least 3 times", rs)
	}
	if status, out := call(t, "DELETE", faults, nil, nil); status != 204 {
		t.Fatalf("DELETE /_dev/faults: %d %v", status, out)
	}
	if rs := rules(); len(rs) != 0 {
		t.Fatalf("after DELETE: %v", rs)
	}
	if status, out := login(ann); status != 200 {
		t.Fatalf("login after clearing: %d %v", status, out)
	}

	bob := s.sb.CreatePerson(sandbox.PersonSpec{Nickname: "Bob"})
	call(t, "POST", faults, map[string]any{"service": "dynamodb", "match": bob.MPOpenID, "count": 1, "error": "ThrottlingException"}, nil)
	if status, out := login(bob); status != 200 {
		t.Fatalf("login through one throttle: %d %v, want the SDK to retry it away", status, out)
	}
	if rs := rules(); len(rs) != 1 || rs[0]["fired"] != 1.0 {
		t.Fatalf("rules %v, want the throttle fired once", rs)
	}

	if status, out := call(t, "POST", faults, map[string]any{"service": "s3", "error": "timeout"}, nil); status != 400 || !strings.Contains(out["error"].(string), "service") {
		t.Fatalf("a rule for s3: %d %v, want 400 naming the service", status, out)
	}
}

// TestLambdaInvoke invokes functions through the devstack's Lambda API with
// the SDK's own Lambda client, as `aws lambda invoke --endpoint-url` does.
func TestLambdaInvoke(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	client := awslambda.NewFromConfig(aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("devstack", "devstack", ""),
		BaseEndpoint:     aws.String(s.APIURL),
		RetryMaxAttempts: 1,
	})
	invoke := func(name string, typ lambdatypes.InvocationType, payload string) (*awslambda.InvokeOutput, error) {
		in := &awslambda.InvokeInput{FunctionName: aws.String(name), InvocationType: typ}
		if payload != "" {
			in.Payload = []byte(payload)
		}
		return client.Invoke(ctx, in)
	}

	for _, name := range []string{
		"TokenRefresherFunction",
		"wxbridge-dev-TokenRefresherFunction",
		"arn:aws:lambda:us-east-1:123456789012:function:TokenRefresherFunction:$LATEST",
	} {
		out, err := invoke(name, "", "{}")
		if err != nil || out.StatusCode != 200 || out.FunctionError != nil {
			t.Fatalf("invoke %s: %v %+v", name, err, out)
		}
		var res struct {
			Apps []struct{ AppID, Outcome string }
		}
		// Every mini program's and official account's.
		if err := json.Unmarshal(out.Payload, &res); err != nil || len(res.Apps) != tokenApps(s) || res.Apps[0].Outcome == "" {
			t.Fatalf("invoke %s: payload %s (%v), want every app's outcome", name, out.Payload, err)
		}
	}

	t.Run("a_function_error_is_unhandled_with_its_message", func(t *testing.T) {
		out, err := invoke("TokenRefresherFunction", lambdatypes.InvocationTypeRequestResponse, `{"appid":"wxnobody"}`)
		if err != nil || out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" {
			t.Fatalf("invoke: %v %+v", err, out)
		}
		var fe struct{ ErrorMessage, ErrorType string }
		if json.Unmarshal(out.Payload, &fe) != nil || !strings.Contains(fe.ErrorMessage, "unknown appid") || fe.ErrorType == "" {
			t.Fatalf("payload %s, want errorMessage and errorType", out.Payload)
		}
	})
	t.Run("event_is_accepted_and_runs_later", func(t *testing.T) {
		out, err := invoke("TokenRefresherFunction", lambdatypes.InvocationTypeEvent, "{}")
		if err != nil || out.StatusCode != 202 {
			t.Fatalf("invoke: %v %+v", err, out)
		}
	})
	t.Run("dry_run_checks_the_function_exists", func(t *testing.T) {
		out, err := invoke("LoginFunction", lambdatypes.InvocationTypeDryRun, "")
		if err != nil || out.StatusCode != 204 {
			t.Fatalf("invoke: %v %+v", err, out)
		}
	})
	t.Run("an_http_function_takes_its_api_gateway_event", func(t *testing.T) {
		out, err := invoke("LoginFunction", "", `{"routeKey":"POST /mp/login","rawPath":"/mp/login","body":"{}","requestContext":{"http":{"method":"POST","path":"/mp/login"}}}`)
		var resp struct{ StatusCode int }
		if err != nil || out.FunctionError != nil || json.Unmarshal(out.Payload, &resp) != nil || resp.StatusCode != 400 {
			t.Fatalf("invoke: %v %+v (%s), want the function's 400 for a login without a code", err, out, out.Payload)
		}
	})
	t.Run("unknown_function_is_resource_not_found", func(t *testing.T) {
		_, err := invoke("NoSuchFunction", "", "{}")
		var nf *lambdatypes.ResourceNotFoundException
		if !errors.As(err, &nf) || !strings.Contains(nf.ErrorMessage(), "NoSuchFunction") {
			t.Fatalf("invoke: %v, want ResourceNotFoundException", err)
		}
	})
	t.Run("a_payload_that_is_not_json_is_refused", func(t *testing.T) {
		_, err := invoke("TokenRefresherFunction", "", "not json")
		var bad *lambdatypes.InvalidRequestContentException
		if !errors.As(err, &bad) {
			t.Fatalf("invoke: %v, want InvalidRequestContentException", err)
		}
	})
}

// tokenApps counts the apps of s that have an access token.
func tokenApps(s *Stack) int {
	n := 0
	for _, a := range s.apps.AllApps() {
		if a.Kind.TakesToken() {
			n++
		}
	}
	return n
}
