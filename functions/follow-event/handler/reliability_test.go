package handler

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/binding"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat/push"
)

// syncWriter serializes the writes of a test's logger and metrics into one
// buffer (in Lambda both write to stdout, which needs no lock).
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// retryBatch hands ev to the function under a deadline, as Lambda does
// with the function's timeout, and then deletes the messages it did not
// report as failed, as the event source does.
func (e *env) retryBatch(t testing.TB, ev events.SQSEvent, deadline time.Duration) events.SQSEventResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	raw, _ := json.Marshal(ev)
	out, err := e.h.Handle(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	resp := out.(events.SQSEventResponse)
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for _, m := range ev.Records {
		if !failed[m.MessageId] {
			e.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &e.queueURL, ReceiptHandle: &m.ReceiptHandle})
		}
	}
	return resp
}

// deadLetters is the depth of the retry queue's dead-letter queue.
func (e *env) deadLetters(t testing.TB) int { return awstest.Depth(t, e.sqs, e.dlqURL(t)) }

// dlqURL is the URL of the retry queue's dead-letter queue.
func (e *env) dlqURL(t testing.TB) string { return awstest.DeadLetterQueue(t, e.sqs, e.queueURL) }

// deferFollows makes n people follow while user/info takes latency, longer
// than the push budget: each push is answered at once and its event queued.
func (e *env) deferFollows(t testing.TB, n int, latency time.Duration) []sandbox.Person {
	t.Helper()
	e.h.Budget = 300 * time.Millisecond
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", Latency: latency}); err != nil {
		t.Fatal(err)
	}
	people := make([]sandbox.Person, n)
	var wg sync.WaitGroup
	for i := range people {
		people[i] = e.sb.CreatePerson(sandbox.PersonSpec{})
		wg.Add(1)
		go func() { defer wg.Done(); e.follow(t, people[i].ID, "") }()
	}
	wg.Wait()
	if q := e.queued(t); q != n {
		t.Fatalf("queued = %d, want the %d follows deferred", q, n)
	}
	return people
}

// TestDeferredFollowsAreHandledWhileWeChatIsSlow (issue 12, defect 1): a
// full batch of deferred follows, user/info still at 1.5 s, under the 10 s
// deadline the retry consumer had: every event is handled in the one
// invocation, none goes back, nothing reaches the dead-letter queue.
func TestDeferredFollowsAreHandledWhileWeChatIsSlow(t *testing.T) {
	e := newEnv(t, push.Safe)
	people := e.deferFollows(t, 10, 1500*time.Millisecond)
	resp := e.retryBatch(t, awstest.Receive(t, e.sqs, e.queueURL, 10), 10*time.Second)
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("%d of 10 events handed back: %+v\n%s", len(resp.BatchItemFailures), resp.BatchItemFailures, e.logs)
	}
	if strings.Contains(e.logs.String(), `"outcome":"handed_back"`) {
		t.Fatalf("events handed back untried:\n%s", e.logs)
	}
	for _, p := range people {
		if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); got.UnionID != p.UnionID || !got.FollowsOA() {
			t.Errorf("%s: %+v, want linked and following", p.ID, got)
		}
	}
	if q, dl := e.queued(t), e.deadLetters(t); q != 0 || dl != 0 {
		t.Fatalf("after the batch: %d queued, %d dead letters", q, dl)
	}
}

// TestUntriedEventsDoNotSpendAnAttempt: with the events handled one at a
// time and too little time for all, those the invocation cannot start go
// back as new messages with their attempt count kept, and the originals are
// deleted; SQS's receive count, which feeds the dead-letter queue, starts
// afresh for them.
func TestUntriedEventsDoNotSpendAnAttempt(t *testing.T) {
	e := newEnv(t, push.Safe)
	e.deferFollows(t, 3, time.Second)
	e.h.Concurrency = 1
	first := awstest.Receive(t, e.sqs, e.queueURL, 3)
	// One event fits (3.5 s of budget, 2 s to hand back, user/info at
	// 1 s); the others would start with less than minRetryBudget left.
	resp := e.retryBatch(t, first, minRetryBudget+handBackMargin+500*time.Millisecond)
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %+v: an untried event spent a receive", resp.BatchItemFailures)
	}
	if n := strings.Count(e.logs.String(), `"outcome":"handed_back"`); n != 2 {
		t.Fatalf("%d events handed back, want 2:\n%s", n, e.logs)
	}
	e.h.Concurrency = 0
	again := awstest.Receive(t, e.sqs, e.queueURL, 2)
	for _, m := range again.Records {
		for _, o := range first.Records {
			if o.MessageId == m.MessageId {
				t.Fatalf("message %s came back: the original was not let go", m.MessageId)
			}
		}
		var q queued
		json.Unmarshal([]byte(m.Body), &q)
		if m.Attributes["ApproximateReceiveCount"] != "1" || q.Attempts != 0 {
			t.Fatalf("handed-back message: receive %s, attempts %d; want 1 and 0", m.Attributes["ApproximateReceiveCount"], q.Attempts)
		}
	}
	if resp := e.retryBatch(t, again, 10*time.Second); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("second batch: %+v", resp.BatchItemFailures)
	}
	if e.queued(t) != 0 {
		t.Fatal("events left in the queue")
	}
}

// TestEventOutOfAttemptsGoesToTheDeadLetterQueue: an event handed back
// untried carries its attempts; once they reach the retry queue's
// maxReceiveCount over all its messages, the consumer moves it to the
// dead-letter queue itself, as SQS does by one message's receives.
func TestEventOutOfAttemptsGoesToTheDeadLetterQueue(t *testing.T) {
	e := newEnv(t, push.Safe)
	e.h.DeadLetterURL = e.dlqURL(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	body, _ := json.Marshal(queued{Event: e.subscribeEvent(p), Attempts: DefaultMaxAttempts})
	if _, err := e.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &e.queueURL, MessageBody: aws.String(string(body))}); err != nil {
		t.Fatal(err)
	}
	if resp := e.retryBatch(t, awstest.Receive(t, e.sqs, e.queueURL, 1), 10*time.Second); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %+v", resp.BatchItemFailures)
	}
	if q, dl := e.queued(t), e.deadLetters(t); q != 0 || dl != 1 {
		t.Fatalf("%d queued, %d dead letters; want the event in the dead-letter queue", q, dl)
	}
	if e.sb.Calls("/cgi-bin/user/info") != 0 {
		t.Error("an event out of attempts was tried again")
	}
}

// TestUserInfoConfigErrorWaitsThenLinks (issue 12, defect 2): user/info
// refused for the account's configuration (40164, the IP whitelist): the
// follow is not recorded as a separate person without unionid; it waits in
// the retry queue (counted for the alarm) and, once user/info answers,
// links to the person the mini-program login made.
func TestUserInfoConfigErrorWaitsThenLinks(t *testing.T) {
	e := newEnv(t, push.Safe)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	first := e.login(t, p)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: 40164}); err != nil {
		t.Fatal(err)
	}
	e.follow(t, p.ID, "")
	if got, err := e.store.Lookup(context.Background(), identity.OAKey(oaApp, p.OAOpenID)); err == nil {
		t.Fatalf("follow recorded while user/info was refused: %+v", got)
	}
	if n := e.queued(t); n != 1 {
		t.Fatalf("queued = %d, want the follow waiting", n)
	}
	if !strings.Contains(e.logs.String(), `"PushDeferred":1`) || !strings.Contains(e.logs.String(), `"class":"config"`) {
		t.Errorf("the wait for a configuration fix was not counted by class:\n%s", e.logs)
	}
	if handled, failed := e.drain(t); handled != 0 || failed != 1 {
		t.Fatalf("drain while refused: handled %d, failed %d", handled, failed)
	}
	e.sb.ClearFaults()
	if handled, failed := e.drain(t); handled != 1 || failed != 0 {
		t.Fatalf("drain: handled %d, failed %d", handled, failed)
	}
	got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	if got.UID != first.Person.UID || got.UnionID != p.UnionID || !got.FollowsOA() || !got.Linked() {
		t.Fatalf("follower = %+v, want linked to the mini-program person %s", got, first.Person.UID)
	}
}

// TestBindingTokenBindsOneWeChatUser (issue 12, defect 2): a stranger who
// scans a victim's binding QR code after the victim used it is not bound
// to the victim's account, whether the victim bound through the mini
// program (whose login may not reveal unionids) or through the code; the
// victim scanning it again is fine.
func TestBindingTokenBindsOneWeChatUser(t *testing.T) {
	e := newEnv(t, push.Safe)
	ctx := context.Background()
	uses := binding.NewUses(e.db, e.table)
	verifier := binding.NewVerifier(bindKey)
	verifier.Now = e.sb.Clock().Now

	// The victim binds account 8812 at login (as functions/login does:
	// spend the token, then link); that mini program reveals no unionid.
	victim := e.sb.CreatePerson(sandbox.PersonSpec{})
	tok, _ := binding.Sign(bindKey, "8812", e.sb.Clock().Now().Add(time.Hour))
	checked, err := verifier.Check(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uses.Spend(ctx, checked, identity.MPKey(mpApp, victim.MPOpenID).String()); err != nil {
		t.Fatal(err)
	}
	bound, err := e.store.Link(ctx, identity.Sighting{MP: &identity.MPSighting{AppID: mpApp, OpenID: victim.MPOpenID}, ExternalID: "8812"})
	if err != nil {
		t.Fatal(err)
	}
	// A stranger scans the same code (a QR code shown on the victim's
	// screen, photographed).
	stranger := e.sb.CreatePerson(sandbox.PersonSpec{})
	if d, err := e.sb.Scan(ctx, stranger.ID, tok, ""); err != nil || !d.Delivered {
		t.Fatalf("scan: %v %+v", err, d)
	}
	got := e.person(t, identity.OAKey(oaApp, stranger.OAOpenID))
	if got.UID == bound.Person.UID || got.ExternalID != "" || !got.FollowsOA() {
		t.Fatalf("stranger = %+v: bound to the victim's account %s", got, bound.Person.UID)
	}
	if v := e.person(t, identity.ExternalKey("8812")); v.UnionID != "" || len(v.OA) != 0 {
		t.Fatalf("the victim's person took the stranger's identities: %+v", v)
	}
	if !strings.Contains(e.logs.String(), `"reason":"token_used"`) {
		t.Errorf("the refused binding was not logged: %s", e.logs)
	}

	// Through the code: the first follower binds, a stranger after them
	// does not, and the first scanning again is no refusal.
	tok2, _ := binding.Sign(bindKey, "9001", e.sb.Clock().Now().Add(time.Hour))
	owner, other := e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, owner.ID, tok2)
	e.follow(t, other.ID, tok2)
	if got := e.person(t, identity.ExternalKey("9001")); got.UnionID != owner.UnionID {
		t.Fatalf("9001 bound to %+v, want the first follower", got)
	}
	if got := e.person(t, identity.OAKey(oaApp, other.OAOpenID)); got.ExternalID != "" {
		t.Fatalf("second follower bound: %+v", got)
	}
	e.logs.Reset()
	if d, err := e.sb.Scan(ctx, owner.ID, tok2, ""); err != nil || !d.Delivered {
		t.Fatalf("owner scanning again: %v %+v", err, d)
	}
	if strings.Contains(e.logs.String(), "binding refused") || !strings.Contains(e.logs.String(), `"outcome":"bound"`) {
		t.Fatalf("the owner's second scan: %s", e.logs)
	}
}

// TestQRSceneNeverBindsAFollowerWithoutUnionID: when user/info cannot give
// the follower's unionid (40003), the follow is recorded but the binding
// is not made, and the token stays unspent for its rightful user.
func TestQRSceneNeverBindsAFollowerWithoutUnionID(t *testing.T) {
	e := newEnv(t, push.Safe)
	tok, _ := binding.Sign(bindKey, "8812", e.sb.Clock().Now().Add(time.Hour))
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: 40003, Count: 1}); err != nil {
		t.Fatal(err)
	}
	unknown := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, unknown.ID, tok)
	if got := e.person(t, identity.OAKey(oaApp, unknown.OAOpenID)); got.ExternalID != "" || got.UnionID != "" || !got.FollowsOA() {
		t.Fatalf("follower without unionid = %+v, want followed and not bound", got)
	}
	if !strings.Contains(e.logs.String(), `"reason":"unionid_unknown"`) {
		t.Errorf("the refused binding was not logged: %s", e.logs)
	}
	rightful := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, rightful.ID, tok)
	if got := e.person(t, identity.ExternalKey("8812")); got.UnionID != rightful.UnionID {
		t.Fatalf("8812 = %+v, want the rightful follower", got)
	}
}

// sameSecond runs steps with the sandbox clock at the start of a second
// and reports whether they all fell in it.
func sameSecond(e *env, steps func() []sandbox.Delivery) ([]sandbox.Delivery, bool) {
	c := e.sb.Clock()
	c.Set(c.Now().Truncate(time.Second).Add(time.Second))
	ds := steps()
	for _, d := range ds {
		if d.Event.CreateTime != ds[0].Event.CreateTime {
			return ds, false
		}
	}
	return ds, true
}

// TestRefollowInTheSameSecond (issue 12, defect 7): follow, unfollow and
// follow again within one second leave the person following (and one more
// unfollow leaves them not); WeChat's retry of the first follow is still a
// duplicate at one conditional write.
func TestRefollowInTheSameSecond(t *testing.T) {
	e := newEnv(t, push.Safe)
	ctx := context.Background()
	var p sandbox.Person
	var ds []sandbox.Delivery
	for try := 0; ; try++ {
		p = e.sb.CreatePerson(sandbox.PersonSpec{})
		var ok bool
		ds, ok = sameSecond(e, func() []sandbox.Delivery {
			d1 := e.follow(t, p.ID, "")
			d2, err := e.sb.Unfollow(ctx, p.ID)
			if err != nil || !d2.Delivered {
				t.Fatalf("unfollow: %v %+v", err, d2)
			}
			return []sandbox.Delivery{d1, d2, e.follow(t, p.ID, "")}
		})
		if ok {
			break
		}
		if try == 2 {
			t.Fatal("three pushes never fell in one second")
		}
	}
	got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	if !got.FollowsOA() || got.UnionID != p.UnionID {
		t.Fatalf("after follow, unfollow, follow in one second: %+v, want following", got)
	}
	// WeChat's retry of the first follow (its answer lost): a duplicate.
	e.counter.Counts()
	calls := e.sb.Calls("/cgi-bin/user/info")
	if resp, _ := e.h.HTTP(ctx, e.sealed(t, ds[0].Event)); resp.Body != "success" {
		t.Fatalf("retry of the first follow: %d %q", resp.StatusCode, resp.Body)
	}
	if c := e.counter.Counts(); len(c) != 1 || c["UpdateItem"] != 1 || e.sb.Calls("/cgi-bin/user/info") != calls {
		t.Fatalf("the retried follow cost %v and %d user/info calls, want one conditional write", c, e.sb.Calls("/cgi-bin/user/info")-calls)
	}
	// WeChat's retry of the unfollow arrives last: the platform says the
	// person follows, so it changes nothing.
	if resp, _ := e.h.HTTP(ctx, e.sealed(t, ds[1].Event)); resp.Body != "success" {
		t.Fatalf("retry of the unfollow: %q", resp.Body)
	}
	if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); !got.FollowsOA() {
		t.Fatalf("a late copy of the unfollow unsubscribed a follower: %+v", got)
	}
	// One more unfollow (in the same second, most often).
	d, err := e.sb.Unfollow(ctx, p.ID)
	if err != nil || !d.Delivered {
		t.Fatalf("unfollow: %v %+v", err, d)
	}
	if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); got.FollowsOA() {
		t.Fatalf("after follow, unfollow, follow, unfollow (second unfollow at +%ds): %+v, want not following", d.Event.CreateTime-ds[0].Event.CreateTime, got)
	}
}

// slowTransport delays every request by d, or until its context ends.
type slowTransport struct{ d time.Duration }

func (s slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-time.After(s.d):
		return http.DefaultTransport.RoundTrip(r)
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

// TestSlowDynamoDBStillAnswersInTime: the dedup claim is bounded by the
// push budget. With DynamoDB answering after 6 s, longer than WeChat
// waits, the push is still answered within the budget and the hand-over,
// queued as when the table is out, and linked from the queue later.
func TestSlowDynamoDBStillAnswersInTime(t *testing.T) {
	e := newEnv(t, push.Safe)
	slow := e.fn.AWS.Copy()
	slow.HTTPClient = &http.Client{Transport: slowTransport{6 * time.Second}}
	e.h.Claims = idempotency.NewStore(dynamodb.NewFromConfig(slow), e.table, "push")
	e.h.Budget = 500 * time.Millisecond
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	d := e.follow(t, p.ID, "")
	if took, most := d.Attempts[0].Duration, e.h.Budget+enqueueTimeout+settleTimeout; took > most {
		t.Fatalf("answered after %s, want within %s", took, most)
	}
	if n := e.queued(t); n != 1 {
		t.Fatalf("queued = %d, want 1", n)
	}
	if handled, failed := e.drain(t); handled != 1 || failed != 0 {
		t.Fatalf("drain: handled %d, failed %d", handled, failed)
	}
	if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); !got.FollowsOA() || got.UnionID != p.UnionID {
		t.Fatalf("follower = %+v", got)
	}
}

// TestRetryDesignMatchesTemplate holds template.yaml's retry settings to
// the consumer's: a batch's events all start at once, one event's budget
// and the hand-back fit the function's timeout, a message is not redelivered
// while an invocation may still hold it, and the consumer's attempt limit
// is the queue's.
func TestRetryDesignMatchesTemplate(t *testing.T) {
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	fns, err := tpl.Functions()
	if err != nil {
		t.Fatal(err)
	}
	var fn cfn.Function
	for _, f := range fns {
		if f.LogicalID == "FollowEventFunction" {
			fn = f
		}
	}
	q, err := tpl.Queue("PushRetryQueue")
	if err != nil {
		t.Fatal(err)
	}
	if len(fn.Queues) != 1 {
		t.Fatalf("FollowEventFunction queues = %+v", fn.Queues)
	}
	batch := fn.Queues[0].BatchSize
	concurrency, _ := strconv.Atoi(fn.Env["WXB_PUSH_RETRY_CONCURRENCY"].Literal)
	timeout := time.Duration(fn.Timeout) * time.Second
	visibility, _ := strconv.Atoi(q.Attributes["VisibilityTimeout"])
	rounds := (batch + concurrency - 1) / max(concurrency, 1)
	switch {
	case concurrency != batch || DefaultConcurrency != batch:
		t.Errorf("concurrency %d (default %d) and batch size %d differ: some events would wait for others", concurrency, DefaultConcurrency, batch)
	case time.Duration(rounds)*retryBudget+handBackMargin > timeout:
		t.Errorf("%d rounds of %s and %s to hand back exceed the %s timeout", rounds, retryBudget, handBackMargin, timeout)
	case time.Duration(visibility)*time.Second < 6*timeout:
		t.Errorf("visibility timeout %ds is under 6 x the %s timeout", visibility, timeout)
	case q.MaxReceiveCount != DefaultMaxAttempts || fn.Env["WXB_PUSH_DLQ"].Ref != q.DeadLetter:
		t.Errorf("maxReceiveCount %d, dead-letter queue %s; the consumer counts %d attempts and sends to %+v", q.MaxReceiveCount, q.DeadLetter, DefaultMaxAttempts, fn.Env["WXB_PUSH_DLQ"])
	case DefaultBudget+enqueueTimeout+settleTimeout >= 5*time.Second:
		t.Errorf("a push may take %s to answer; WeChat waits 5 s", DefaultBudget+enqueueTimeout+settleTimeout)
	}
}
