package handler

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/identity"
)

// TestStoreOutageAsksTheClientToRetry: DynamoDB failing past the SDK's
// retries is not a bug to report but a moment to wait out: 503 with
// Retry-After, nothing written, and the same code works once it passes.
func TestStoreOutageAsksTheClientToRetry(t *testing.T) {
	e := newEnv(t)
	p, cfg := e.faults(t)
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 5 * time.Millisecond })
	}
	e.h.people = identity.NewStore(dynamodb.NewFromConfig(cfg), e.table)

	person := e.sb.CreatePerson(sandbox.PersonSpec{})
	if _, err := p.Add(awsfault.Rule{Service: awsfault.DynamoDB, Count: 3, Error: awsfault.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	code, err := e.sb.WXLogin(person.ID)
	if err != nil {
		t.Fatal(err)
	}
	status, body, resp := e.call(t, "POST /mp/login", `{"code":"`+code+`"}`, "")
	if status != http.StatusServiceUnavailable || body["error"] != "unavailable" || resp.Headers["Retry-After"] == "" {
		t.Fatalf("login while DynamoDB fails = %d %v %v, want 503 unavailable with Retry-After", status, body, resp.Headers)
	}
	if _, err := e.store.Lookup(context.Background(), identity.MPKey(sandbox.DevMiniProgram.AppID, person.MPOpenID)); err == nil {
		t.Fatal("a login refused for an outage wrote the person")
	}
	p.Clear()
	if status, body := e.login(t, person.ID, ""); status != http.StatusOK {
		t.Fatalf("login after the outage = %d %v", status, body)
	}
}
