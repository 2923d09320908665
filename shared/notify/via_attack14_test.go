package notify

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/ddb"
)

// TestAttack14TryingVia: where an attempt whose outcome is unknown went
// (its app and openid) survives every later claim, whatever the later
// delivery would send from (a copy of the job naming another app), and
// goes with the trying mark: a fallback names its own, a known answer or
// the settle removes it.
func TestAttack14TryingVia(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	l := NewLedger(dynamodb.NewFromConfig(awstest.Config(nil)), awstest.Table(t))
	l.Now = func() time.Time { return now }
	const oa2, oa1 = "wx0000000000000a02#o-2", "wx0000000000000a01#o-1"

	c, err := l.claim(ctx, "j", "u", now.Add(time.Minute), Template, oa2, nil)
	if err != nil || c.UncertainVia != "" {
		t.Fatalf("first claim: %+v %v", c, err)
	}
	if err := l.release(ctx, "j", c, result{Channel: Template, AppID: "wx0000000000000a02", Class: "transient", Reason: "no answer"}, true); err != nil {
		t.Fatal(err)
	}
	// The copy naming the first account claims next: the mark names the
	// second's attempt, not the copy's.
	c, err = l.claim(ctx, "j", "u", now.Add(time.Minute), Template, oa1, nil)
	if err != nil || c.Uncertain != Template || c.UncertainVia != oa2 {
		t.Fatalf("claim after the unanswered attempt: %+v %v", c, err)
	}
	if e, _, _ := l.Get(ctx, "j"); e.TryingVia != oa2 {
		t.Fatalf("entry %+v", e)
	}
	// A resend answered (nothing new sent) releases the job as known: the
	// mark goes, and the next claim's is its own.
	if err := l.Release(ctx, "j", c, result{Channel: Template, ErrCode: -1, Class: "transient", Reason: "busy"}); err != nil {
		t.Fatal(err)
	}
	c, err = l.claim(ctx, "j", "u", now.Add(time.Minute), Subscribe, "wx0000000000000b01#m-1", nil)
	if err != nil || c.Uncertain != "" {
		t.Fatalf("claim after a known answer: %+v %v", c, err)
	}
	if _, err := l.try(ctx, "j", c, Template, oa1, nil); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := l.Get(ctx, "j"); e.Trying != Template || e.TryingVia != oa1 {
		t.Fatalf("after falling back: %+v", e)
	}
	if err := l.Settle(ctx, "j", c, result{Status: Sent, Channel: Template}); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := l.Get(ctx, "j"); e.Trying != "" || e.TryingVia != "" {
		t.Fatalf("settled: %+v", e)
	}

	// A claim whose answer was lost rebuilds the entry as before it: the
	// via it wrote with its own mark goes, an earlier attempt's stays.
	own := ddb.Item{"attempts": ddb.N(1), "trying": ddb.S("template"), "tried_at": ddb.Millis(now), "trying_via": ddb.S(oa1)}
	if e, _ := decodeEntry(beforeClaim(own, now, Template)); e.Trying != "" || e.TryingVia != "" {
		t.Errorf("before the claim's own mark: %+v", e)
	}
	earlier := ddb.Item{"attempts": ddb.N(2), "trying": ddb.S("template"), "tried_at": ddb.Millis(now.Add(-time.Minute)), "trying_via": ddb.S(oa2)}
	if e, _ := decodeEntry(beforeClaim(earlier, now, Template)); e.Trying != Template || e.TryingVia != oa2 {
		t.Errorf("before a claim after an earlier attempt: %+v", e)
	}
}
