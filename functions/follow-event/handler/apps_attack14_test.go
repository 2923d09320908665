package handler

// Issue 14 attack on the push per official account: a crash between the
// dedup claim and the handling of a push to the second account. WeChat's
// retry finds the claim held, the event is queued, and the retry consumer
// applies it for the second account, not the default one.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat/push"
)

func TestCrashBetweenClaimAndHandlingKeepsTheAccount(t *testing.T) {
	e := newAppsEnv(t)
	ctx := context.Background()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	open2, _ := e.sb.OpenID(p.ID, oa2)

	// The first delivery reaches a Lambda that claims the event and dies:
	// WeChat sees no answer.
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer dead.Close()
	if err := e.sb.SetPushTargetApp(oa2, sandbox.PushTarget{URL: dead.URL, Token: pushToken2, Mode: push.Plaintext}); err != nil {
		t.Fatal(err)
	}
	d, err := e.sb.FollowApp(ctx, p.ID, oa2, "")
	if err != nil || d.Delivered {
		t.Fatalf("setup: the follow reached us: %+v %v", d, err)
	}
	claim, err := e.h.Claims.Claim(ctx, claimKey(oa2, d.Event), d.Event.FollowState(), e.h.claimLease())
	if err != nil || claim.State != idempotency.Claimed {
		t.Fatalf("setup: claim %+v %v", claim, err)
	}

	// WeChat's retry, within the dead claim's lease: queued, answered.
	resp, _ := e.h.HTTP(ctx, e.sealedFor(t, push.Plaintext, pushToken2, "", oa2, d.Event))
	if resp.StatusCode != http.StatusOK || resp.Body != "success" {
		t.Fatalf("retry answered %d %q", resp.StatusCode, resp.Body)
	}
	out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queueURL})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("queued: %v %v", out, err)
	}
	// Only looked at: visible again for the consumer.
	if _, err := e.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &e.queueURL, ReceiptHandle: out.Messages[0].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	var q queued
	if err := json.Unmarshal([]byte(*out.Messages[0].Body), &q); err != nil || q.AppID != oa2 {
		t.Fatalf("queued %s, want it for %s", *out.Messages[0].Body, oa2)
	}
	if handled, failed := e.drain(t); handled != 1 || failed != 0 {
		t.Fatalf("drain: handled %d, failed %d", handled, failed)
	}
	got := e.person(t, identity.OAKey(oa2, open2))
	if got.UnionID != p.UnionID || !got.OA[oa2].Subscribed || len(got.OA) != 1 {
		t.Fatalf("follower of %s = %+v", oa2, got)
	}
	if _, err := e.store.Lookup(ctx, identity.OAKey(oaApp, open2)); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("applied under the default account too: %v", err)
	}
}
