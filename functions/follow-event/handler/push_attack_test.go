package handler

// Attacks on "an acknowledged push is never lost" and on the GET URL check
// (issue 12): DynamoDB throttled, failing or timing out at the claim, at
// the link and at the claim's completion (through infra/devkit/awsfault,
// on the wire, with the SDK's own retries); SQS failing at the hand-over;
// the invocation's context ending mid-handling; the same event delivered
// five times at once; a delivery that crashed; a claim whose answer was
// lost; retry-queue messages replayed; the dead-letter path; hostile URL
// checks.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/binding"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/wechat/push"
)

// throughFaults sends every AWS call of the function (the claim, the
// identity store, the token uses, the retry queue) through an awsfault
// proxy in front of the IAM check, with the SDK's standard retries kept
// but quick.
func (e *env) throughFaults(t testing.TB) *awsfault.Proxy {
	t.Helper()
	proxy, cfg := e.faults(t)
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 10 * time.Millisecond })
	}
	db := dynamodb.NewFromConfig(cfg)
	proc := *e.processor().(*pushevent.Processor)
	proc.People, proc.Uses = identity.NewStore(db, e.table), binding.NewUses(db, e.table)
	e.setProcessor(&proc)
	e.h.Claims = idempotency.NewStore(db, e.table, "push")
	e.h.Queue = sqs.NewFromConfig(cfg)
	return proxy
}

// onePerson requires p's follow to be recorded: one person by unionid and
// OA openid, linked, following.
func (e *env) onePerson(t testing.TB, p sandbox.Person) identity.Person {
	t.Helper()
	byOA := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	byUnion := e.person(t, identity.UnionKey(p.UnionID))
	if byOA.UID != byUnion.UID || byOA.UnionID != p.UnionID || !byOA.FollowsOA() {
		t.Fatalf("%s: by OA openid %+v, by unionid %s; want one person, following, with the unionid", p.ID, byOA, byUnion.UID)
	}
	return byOA
}

// followUnheard makes p follow on the platform while its pushes go to a
// sink that answers "success" and does nothing: the platform's user/info
// knows the follower, wxbridge does not; the test then delivers the
// event itself. The sandbox keeps pushing to the sink afterwards.
func (e *env) followUnheard(t testing.TB, p sandbox.Person) {
	t.Helper()
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "success") }))
	t.Cleanup(sink.Close)
	if err := e.sb.SetPushTarget(sandbox.PushTarget{URL: sink.URL, Token: pushToken, EncodingAESKey: aesKey, Mode: e.mode}); err != nil {
		t.Fatal(err)
	}
	if d, err := e.sb.Follow(context.Background(), p.ID, ""); err != nil || !d.Delivered {
		t.Fatalf("follow: %v %+v", err, d)
	}
}

// TestAttackPushUnderDynamoDBFaults: whatever DynamoDB does on the wire
// when the push arrives (throttles, 500s, no answer) at the claim, the
// link or the claim's completion, WeChat gets "success" on its first
// attempt within its 5 s, and the follow is recorded, at once or from the
// retry queue once DynamoDB is back.
func TestAttackPushUnderDynamoDBFaults(t *testing.T) {
	claim, done := `{"S":"claimed"}`, `{"S":"done"}`
	rule := func(op, match, failure string) awsfault.Rule {
		return awsfault.Rule{Service: awsfault.DynamoDB, Operation: op, Match: match, Error: failure}
	}
	for _, tc := range []struct {
		name  string
		rules []awsfault.Rule
	}{
		{"claim_throttled", []awsfault.Rule{rule("UpdateItem", claim, awsfault.ThrottlingException)}},
		{"claim_500", []awsfault.Rule{rule("UpdateItem", claim, awsfault.InternalServerError)}},
		{"claim_no_answer", []awsfault.Rule{rule("UpdateItem", claim, awsfault.Timeout)}},
		{"link_500", []awsfault.Rule{rule("GetItem", "", awsfault.InternalServerError), rule("TransactWriteItems", "", awsfault.InternalServerError)}},
		{"link_over_capacity", []awsfault.Rule{rule("GetItem", "", awsfault.ProvisionedThroughputExceeded), rule("TransactWriteItems", "", awsfault.ProvisionedThroughputExceeded)}},
		{"link_no_answer", []awsfault.Rule{rule("GetItem", "", awsfault.Timeout), rule("TransactWriteItems", "", awsfault.Timeout)}},
		{"completion_500", []awsfault.Rule{rule("UpdateItem", done, awsfault.InternalServerError)}},
		{"completion_no_answer", []awsfault.Rule{rule("UpdateItem", done, awsfault.Timeout)}},
		{"every_dynamodb_call_500", []awsfault.Rule{rule("", "", awsfault.InternalServerError)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case has its own table, queue, sandbox and proxy
			e := newEnv(t, push.Safe)
			proxy := e.throughFaults(t)
			e.h.Budget = 600 * time.Millisecond // "no answer" cases wait for it
			for _, r := range tc.rules {
				if _, err := proxy.Add(r); err != nil {
					t.Fatal(err)
				}
			}
			p := e.sb.CreatePerson(sandbox.PersonSpec{})
			d, err := e.sb.Follow(context.Background(), p.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			if !d.Delivered || len(d.Attempts) != 1 || d.Attempts[0].Duration > e.h.Budget+enqueueTimeout+settleTimeout {
				t.Fatalf("push delivered=%v after %d attempts (%+v); want success on the first, within the budget", d.Delivered, len(d.Attempts), d.Attempts)
			}
			fired := 0
			for _, st := range proxy.List() {
				fired += st.Fired
			}
			if fired == 0 {
				t.Fatal("setup: no fault fired")
			}
			proxy.Clear()
			if _, failed := e.drain(t); failed != 0 {
				t.Fatalf("drain after recovery: %d failed", failed)
			}
			e.onePerson(t, p)
			if n := e.queued(t); n != 0 {
				t.Fatalf("%d events left in the retry queue", n)
			}
		})
	}
}

// TestAttackHandOverFailsThenWeChatRetries: user/info is down and the
// retry queue throttles the hand-over: the first attempt is not
// acknowledged (nothing holds the event) and its claim is given back, so
// WeChat's retry, once SQS takes messages again, is queued and acknowledged;
// the follow is linked when user/info is back.
func TestAttackHandOverFailsThenWeChatRetries(t *testing.T) {
	e := newEnv(t, push.Safe)
	proxy := e.throughFaults(t)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: -1}); err != nil {
		t.Fatal(err)
	}
	// The SDK tries SendMessage three times per hand-over: fail all three.
	if _, err := proxy.Add(awsfault.Rule{Service: awsfault.SQS, Operation: "SendMessage", Count: 3, Error: awsfault.ThrottlingException}); err != nil {
		t.Fatal(err)
	}
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	d, err := e.sb.Follow(context.Background(), p.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Delivered || len(d.Attempts) != 2 || d.Attempts[0].Status != http.StatusServiceUnavailable {
		t.Fatalf("delivered=%v after %+v; want 503 then success", d.Delivered, d.Attempts)
	}
	if n := e.queued(t); n != 1 {
		t.Fatalf("queued %d, want the one event", n)
	}
	e.sb.ClearFaults()
	e.drain(t)
	e.onePerson(t, p)
}

// TestAttackContextEndsMidHandling: the invocation's context ends while
// user/info is still answering (Lambda's deadline, API Gateway's 30 s):
// the event is queued on a context of its own and acknowledged, not
// dropped with the context.
func TestAttackContextEndsMidHandling(t *testing.T) {
	e := newEnv(t, push.Safe)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", Latency: 2 * time.Second, Count: 1}); err != nil {
		t.Fatal(err)
	}
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.followUnheard(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	resp, _ := e.h.HTTP(ctx, e.sealed(t, e.subscribeEvent(p)))
	acked := resp.StatusCode == 200 && resp.Body == "success"
	if q := e.queued(t); acked && q != 1 {
		t.Fatalf("acknowledged with %d events queued: the event went with the context", q)
	}
	if !acked {
		// Not acknowledged: WeChat retries, and the claim must let it in.
		again, _ := e.h.HTTP(context.Background(), e.sealed(t, e.subscribeEvent(p)))
		if again.StatusCode != 200 || again.Body != "success" {
			t.Fatalf("first answer %d %q, WeChat's retry %d %q: nobody holds the event", resp.StatusCode, resp.Body, again.StatusCode, again.Body)
		}
	}
	e.drain(t)
	e.onePerson(t, p)
}

// TestAttackSameEventFiveTimesAtOnce: WeChat's retries (or a duplicated
// delivery) arrive together while the first is still on user/info. One
// handles it, none is acknowledged without the event being held, and
// user/info is asked once.
func TestAttackSameEventFiveTimesAtOnce(t *testing.T) {
	e := newEnv(t, push.Safe)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", Latency: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.followUnheard(t, p)
	before := e.sb.Calls("/cgi-bin/user/info")
	req := e.sealed(t, e.subscribeEvent(p))
	var success, busy atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 5 {
		wg.Go(func() {
			<-start
			resp, _ := e.h.HTTP(context.Background(), req)
			switch {
			case resp.StatusCode == 200 && resp.Body == "success":
				success.Add(1)
			case resp.StatusCode == http.StatusServiceUnavailable:
				busy.Add(1)
			default:
				t.Errorf("answer %d %q", resp.StatusCode, resp.Body)
			}
		})
	}
	close(start)
	wg.Wait()
	if success.Load() < 1 {
		t.Fatalf("no delivery was acknowledged (%d busy)", busy.Load())
	}
	if n := e.sb.Calls("/cgi-bin/user/info") - before; n != 1 {
		t.Fatalf("user/info asked %d times for one event", n)
	}
	e.onePerson(t, p)
	// A sixth copy afterwards is a duplicate.
	if resp, _ := e.h.HTTP(context.Background(), req); resp.StatusCode != 200 || resp.Body != "success" {
		t.Fatalf("late copy: %d %q", resp.StatusCode, resp.Body)
	}
}

// crashOnce is the function's processor that crashes (as a Lambda
// invocation does when it runs out of memory or is killed) on its first
// event, after the claim was taken: nothing answers WeChat but the
// gateway's error.
type crashOnce struct {
	Processor
	crashed atomic.Bool
}

func (c *crashOnce) Process(ctx context.Context, e push.Event) (pushevent.Result, error) {
	if c.crashed.CompareAndSwap(false, true) {
		panic(http.ErrAbortHandler) // net/http drops the connection, as API Gateway answers 502
	}
	return c.Processor.Process(ctx, e)
}

// TestAttackCrashedDeliveryIsNotLost: the first delivery's invocation dies
// after taking the claim. WeChat retries at once (as the sandbox does,
// three times); every retry finds the dead invocation's claim "in
// progress" until its lease (budget + hand-over + 2 s) runs out, and gets
// 503. WeChat then gives up: the follow is never recorded, although
// nothing ever said it could not be.
func TestAttackCrashedDeliveryIsNotLost(t *testing.T) {
	e := newEnv(t, push.Safe)
	e.h.Budget = DefaultBudget
	e.setProcessor(&crashOnce{Processor: e.processor()})
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	d, err := e.sb.Follow(context.Background(), p.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	e.drain(t)
	if _, err := e.store.Lookup(context.Background(), identity.OAKey(oaApp, p.OAOpenID)); err != nil {
		var answers []string
		for _, a := range d.Attempts {
			answers = append(answers, strconv.Itoa(a.Status)+" "+strings.TrimSpace(a.Body+a.Error))
		}
		t.Fatalf("follow lost after one crashed invocation: WeChat's attempts got %q, nothing was queued (%v)", answers, err)
	}
}

// TestAttackClaimWhoseAnswerIsLost: DynamoDB takes the push's claim but
// its answer is lost (500); the SDK retries the same write, which finds
// the claim held — by this very delivery — and the push is answered "in
// progress". WeChat's retries find the same, and the event is lost.
func TestAttackClaimWhoseAnswerIsLost(t *testing.T) {
	e := newEnv(t, push.Safe)
	e.h.Budget = DefaultBudget
	lost, cfg := e.faults(t, awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `{"S":"claimed"}`, Count: 1, Error: awsfault.LostAnswer})
	e.h.Claims = idempotency.NewStore(dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
	}), e.table, "push")
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	d, err := e.sb.Follow(context.Background(), p.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if lost.List()[0].Fired != 1 {
		t.Fatal("setup: no claim answer was lost")
	}
	e.drain(t)
	if _, err := e.store.Lookup(context.Background(), identity.OAKey(oaApp, p.OAOpenID)); err != nil {
		t.Fatalf("follow lost after one lost DynamoDB answer (delivered=%v, attempts %+v): %v", d.Delivered, d.Attempts, err)
	}
}

// TestAttackRetryMessagesReplayed: a queued follow is delivered twice by
// SQS (at-least-once), concurrently and again later, after the follower
// unfollowed: the person ends as the platform says (unsubscribed), with
// one person and no duplicate.
func TestAttackRetryMessagesReplayed(t *testing.T) {
	e := newEnv(t, push.Safe)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: -1}); err != nil {
		t.Fatal(err)
	}
	e.follow(t, p.ID, "")
	ev := awstest.Receive(t, e.sqs, e.queueURL, 1)
	e.sb.ClearFaults()
	// The same message twice in one batch, and in two invocations at once.
	twice := events.SQSEvent{Records: []events.SQSMessage{ev.Records[0], ev.Records[0]}}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			raw, _ := json.Marshal(twice)
			out, err := e.h.Handle(context.Background(), raw)
			if err != nil || len(out.(events.SQSEventResponse).BatchItemFailures) != 0 {
				t.Errorf("replay: %v %+v", err, out)
			}
		})
	}
	wg.Wait()
	first := e.onePerson(t, p)
	// The follower leaves a few seconds later; then SQS delivers the old
	// follow once more.
	e.sb.Clock().Advance(3 * time.Second)
	if d, err := e.sb.Unfollow(context.Background(), p.ID); err != nil || !d.Delivered {
		t.Fatalf("unfollow: %v %+v", err, d)
	}
	raw, _ := json.Marshal(ev)
	if _, err := e.h.Handle(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	if got.UID != first.UID || got.FollowsOA() {
		t.Fatalf("after a replayed old follow: %+v, want %s not following", got, first.UID)
	}
}

// TestAttackDeadLetterPath: an event out of attempts goes to the
// dead-letter queue (where PushRetryDLQAlarm counts it) with its attempts;
// when the dead-letter queue does not take it, the message is kept, not
// dropped.
func TestAttackDeadLetterPath(t *testing.T) {
	e := newEnv(t, push.Safe)
	e.h.DeadLetterURL = e.dlqURL(t)
	proxy := e.throughFaults(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	body, _ := json.Marshal(queued{Event: e.subscribeEvent(p), Attempts: DefaultMaxAttempts + 3})
	if _, err := e.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &e.queueURL, MessageBody: aws.String(string(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.Add(awsfault.Rule{Service: awsfault.SQS, Operation: "SendMessage", Error: awsfault.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	ev := awstest.Receive(t, e.sqs, e.queueURL, 1)
	if resp := e.retryBatch(t, ev, 10*time.Second); len(resp.BatchItemFailures) != 1 {
		t.Fatalf("the dead-letter queue refused the event, yet the message was let go: %+v", resp)
	}
	if dl := e.deadLetters(t); dl != 0 {
		t.Fatalf("%d dead letters while SQS refused", dl)
	}
	proxy.Clear()
	e.sqs.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{QueueUrl: &e.queueURL, ReceiptHandle: &ev.Records[0].ReceiptHandle, VisibilityTimeout: 0})
	if resp := e.retryBatch(t, awstest.Receive(t, e.sqs, e.queueURL, 1), 10*time.Second); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %+v", resp)
	}
	if q, dl := e.queued(t), e.deadLetters(t); q != 0 || dl != 1 {
		t.Fatalf("%d queued, %d dead letters; want the event in the dead-letter queue", q, dl)
	}
	out, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.dlqURL(t))})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("dead letter: %v %+v", err, out)
	}
	var q queued
	if err := json.Unmarshal([]byte(*out.Messages[0].Body), &q); err != nil || q.FromUserName != p.OAOpenID || q.Attempts < DefaultMaxAttempts {
		t.Fatalf("dead letter %s: %+v %v; want the event with its attempts", *out.Messages[0].Body, q, err)
	}
	if !strings.Contains(e.logs.String(), `"outcome":"dead_letter"`) {
		t.Errorf("the dead letter was not logged")
	}
}

// TestAttackURLCheck: replays of a push's query, timestamps outside the
// window either way, and hostile values. Nothing but a fresh, signed
// check echoes.
func TestAttackURLCheck(t *testing.T) {
	e := newEnv(t, push.Safe)
	get := func(q map[string]string) events.APIGatewayV2HTTPResponse {
		req := events.APIGatewayV2HTTPRequest{RouteKey: "GET /wechat/push", RawPath: "/wechat/push", QueryStringParameters: q}
		req.RequestContext.HTTP.Method = "GET"
		resp, _ := e.h.HTTP(context.Background(), req)
		return resp
	}
	signed := func(ts, nonce, echo string) map[string]string {
		return map[string]string{"signature": push.Signature(pushToken, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": echo}
	}
	// at is a timestamp d from the function's clock now.
	at := func(d time.Duration) string { return strconv.FormatInt(e.sb.Clock().Now().Add(d).Unix(), 10) }
	if r := get(signed(at(0), "n", "ok")); r.StatusCode != 200 || r.Body != "ok" {
		t.Fatalf("setup: a fresh check = %d %q", r.StatusCode, r.Body)
	}
	// A push's own query, captured a while ago and replayed as a check.
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	captured := e.sealed(t, e.subscribeEvent(p)).QueryStringParameters
	e.sb.Clock().Advance(push.DefaultWindow + time.Minute)
	replay := map[string]string{"signature": captured["signature"], "timestamp": captured["timestamp"], "nonce": captured["nonce"], "echostr": "<script>"}
	w := push.DefaultWindow
	cases := map[string]map[string]string{
		"replayed_push_query":      replay,
		"old_check":                signed(at(-w-5*time.Second), "n", "x"),
		"just_in_the_future":       signed(at(w+5*time.Second), "n", "x"),
		"far_future":               signed(at(24*time.Hour), "n", "x"),
		"timestamp_zero":           signed("0", "n", "x"),
		"timestamp_negative":       signed("-1", "n", "x"),
		"timestamp_max_int64":      signed("9223372036854775807", "n", "x"),
		"timestamp_min_int64":      signed("-9223372036854775808", "n", "x"),
		"timestamp_overflow":       signed("99999999999999999999999", "n", "x"),
		"timestamp_not_a_number":   signed("now", "n", "x"),
		"timestamp_float":          signed(at(0)+".0", "n", "x"),
		"timestamp_with_spaces":    signed(" "+at(0)+" ", "n", "x"),
		"timestamp_missing":        {"signature": push.Signature(pushToken, "", "n"), "nonce": "n", "echostr": "x"},
		"signature_missing":        {"timestamp": at(0), "nonce": "n", "echostr": "x"},
		"echostr_missing":          {"signature": push.Signature(pushToken, at(0), "n"), "timestamp": at(0), "nonce": "n"},
		"signature_of_other_token": {"signature": push.Signature("guess", at(0), "n"), "timestamp": at(0), "nonce": "n", "echostr": "x"},
		"huge_values":              {"signature": strings.Repeat("a", 1<<16), "timestamp": strings.Repeat("9", 1<<16), "nonce": strings.Repeat("n", 1<<16), "echostr": strings.Repeat("e", 1<<16)},
		"nothing":                  {},
	}
	for name, q := range cases {
		t.Run(name, func(t *testing.T) {
			r := get(q)
			if r.StatusCode != http.StatusForbidden || (q["echostr"] != "" && strings.Contains(r.Body, q["echostr"])) {
				t.Fatalf("URL check = %d %q, want 403 without the echostr", r.StatusCode, r.Body)
			}
		})
	}
	// Within the window on either side, a signed check passes.
	for _, d := range []time.Duration{-w + 5*time.Second, w - 5*time.Second} {
		if r := get(signed(at(d), "n", "ok")); r.StatusCode != 200 || r.Body != "ok" {
			t.Fatalf("check at %s = %d %q, want it echoed", d, r.StatusCode, r.Body)
		}
	}
}

// slowFirstLink is the identity store with its first Link held until the
// test lets it go: a follow whose user/info answered "following" and
// whose write is slow (DynamoDB throttled, retried by the SDK).
type slowFirstLink struct {
	pushevent.People
	entered, release chan struct{}
	once             atomic.Bool
}

func (s *slowFirstLink) Link(ctx context.Context, sg identity.Sighting) (identity.Result, error) {
	if s.once.CompareAndSwap(false, true) {
		close(s.entered)
		<-s.release
	}
	return s.People.Link(ctx, sg)
}

// TestAttackUnfollowWhileTheFollowIsInFlight: a follow and an unfollow in
// the same second share their dedup key (defect 7's design). The follow's
// handling is still writing when the unfollow arrives; the unfollow finds
// the key "in progress" and is answered 503, and so are WeChat's three
// immediate retries. WeChat gives up on the unfollow; the follow's write
// then lands, and the person stays "following" for good.
func TestAttackUnfollowWhileTheFollowIsInFlight(t *testing.T) {
	e := newEnv(t, push.Safe)
	slow := &slowFirstLink{People: e.store, entered: make(chan struct{}), release: make(chan struct{})}
	proc := *e.processor().(*pushevent.Processor)
	proc.People = slow
	e.setProcessor(&proc)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.followUnheard(t, p)
	sub := e.subscribeEvent(p)
	unsub := sub
	unsub.Event = push.Unsubscribe
	followed := make(chan events.APIGatewayV2HTTPResponse)
	go func() {
		resp, _ := e.h.HTTP(context.Background(), e.sealed(t, sub))
		followed <- resp
	}()
	<-slow.entered // user/info said "following"; the write is under way
	if d, err := e.sb.Unfollow(context.Background(), p.ID); err != nil || !d.Delivered {
		t.Fatalf("unfollow on the platform: %v %+v", err, d)
	}
	// WeChat delivers the unfollow, and retries it at once up to three
	// times while it is not acknowledged.
	var answers []string
	acked := false
	for range 4 {
		resp, _ := e.h.HTTP(context.Background(), e.sealed(t, unsub))
		answers = append(answers, strconv.Itoa(resp.StatusCode)+" "+resp.Body)
		if acked = resp.StatusCode == 200 && resp.Body == "success"; acked {
			break
		}
	}
	close(slow.release)
	if resp := <-followed; resp.StatusCode != 200 {
		t.Fatalf("follow answered %d %q", resp.StatusCode, resp.Body)
	}
	e.drain(t)
	if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); got.FollowsOA() {
		t.Fatalf("the person unfollowed but is recorded following (the unfollow's attempts got %q, acknowledged %v)", answers, acked)
	}
}
