package handler

// Follow state ends where WeChat says, whatever the order things arrive
// in (issue 12, the chaos story's follow-state failures): push times have
// whole seconds, so changes of one second are settled by user/info, never
// by which write lands last; an answer older than what is recorded never
// undoes it; and an event that finds its second's claim held is queued,
// never refused.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// inOneSecond runs try, each time from the start of a sandbox second,
// until try reports that the pushes it made fell in one second (three
// tries: a loaded machine may take longer than a second).
func inOneSecond(t testing.TB, e *env, try func() bool) {
	t.Helper()
	for range 3 {
		c := e.sb.Clock()
		c.Set(c.Now().Truncate(time.Second).Add(time.Second))
		if try() {
			return
		}
	}
	t.Fatal("the pushes never fell in one second")
}

// unfollow makes p unfollow and requires WeChat to have been answered.
func (e *env) unfollow(t testing.TB, p sandbox.Person) sandbox.Delivery {
	t.Helper()
	d, err := e.sb.Unfollow(context.Background(), p.ID)
	if err != nil || !d.Delivered {
		t.Fatalf("unfollow: %v %+v", err, d)
	}
	return d
}

// answered43004 sends p a template message as the send worker does and
// requires WeChat's 43004 (not following).
func (e *env) answered43004(t testing.TB, p sandbox.Person) {
	t.Helper()
	_, err := e.wc.SendTemplate(context.Background(), oaApp, wechat.TemplateMessage{
		ToUser: p.OAOpenID, TemplateID: strings.Repeat("T", 43), Data: map[string]string{"thing1": "order shipped"},
	})
	if !errors.Is(err, wechat.ErrNotFollowing) {
		t.Fatalf("template send while unfollowed: %v, want 43004", err)
	}
}

// recordUnfollowBySend records a 43004 as the send worker does
// (notify.Sender's unfollowed): not following, at the worker's own now,
// which has sub-second precision.
func (e *env) recordUnfollowBySend(t testing.TB, p sandbox.Person, at time.Time) {
	t.Helper()
	if _, err := e.store.Link(context.Background(), identity.Sighting{OA: &identity.OASighting{
		AppID: oaApp, OpenID: p.OAOpenID, Follow: &identity.Follow{Subscribed: false, At: at},
	}}); err != nil {
		t.Fatal(err)
	}
}

// agrees requires wxbridge's follow state of p to be the platform's.
func (e *env) agrees(t testing.TB, p sandbox.Person, what string) {
	t.Helper()
	sp, _ := e.sb.Person(p.ID)
	got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	if oa := got.OA[oaApp]; oa.Subscribed != sp.Following {
		t.Fatalf("%s: wxbridge says following=%v (subscribed_at %v, unsubscribed_at %v), WeChat %v", what, oa.Subscribed, oa.SubscribedAt, oa.UnsubscribedAt, sp.Following)
	}
}

// TestSends43004DoesNotUndoARefollowOfItsSecond (chaos seed 598914191,
// p6): follow, unfollow, follow again in one second; in between, a send
// to the follower is answered 43004 and the send worker records the
// unfollow at its own now, 610 ms into that second. Whether that lands
// before or after the refollow's push, the follower ends following: a
// time of wxbridge's clock does not outrank a push of its second, and the
// order writes land in does not decide within one.
func TestSends43004DoesNotUndoARefollowOfItsSecond(t *testing.T) {
	e := newEnv(t, push.Safe)
	for _, tc := range []struct {
		name   string
		record func(record, refollow func() int64)
	}{
		{"recorded_after_the_refollow", func(record, refollow func() int64) { refollow(); record() }},
		{"recorded_before_the_refollow", func(record, refollow func() int64) { record(); refollow() }},
		{"recorded_while_the_refollow_is_handled", func(record, refollow func() int64) {
			var wg sync.WaitGroup
			wg.Go(func() { refollow() })
			wg.Go(func() { record() })
			wg.Wait()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p sandbox.Person
			inOneSecond(t, e, func() bool {
				p = e.sb.CreatePerson(sandbox.PersonSpec{})
				second := e.follow(t, p.ID, "").Event.CreateTime
				e.unfollow(t, p)
				e.answered43004(t, p)
				var refollowed int64
				tc.record(
					func() int64 { e.recordUnfollowBySend(t, p, time.Unix(second, 610e6)); return 0 },
					func() int64 { refollowed = e.follow(t, p.ID, "").Event.CreateTime; return 0 },
				)
				return refollowed == second
			})
			e.agrees(t, p, strings.ReplaceAll(tc.name, "_", " "))
		})
	}
}

// gate holds the first AWS request through it until released, and says
// when one arrived.
type gate struct {
	arrived, release chan struct{}
	once             sync.Once
}

func newGate() *gate { return &gate{arrived: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.arrived)
		select {
		case <-g.release:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// retryConsumerThrough is the function as another invocation runs it for
// the retry queue, its identity store's DynamoDB calls going through rt.
func (e *env) retryConsumerThrough(rt http.RoundTripper) *Handler {
	cfg := e.fn.AWS.Copy()
	cfg.HTTPClient = &http.Client{Transport: rt}
	proc := *e.processor().(*pushevent.Processor)
	proc.People = identity.NewStore(dynamodb.NewFromConfig(cfg), e.table)
	h := *e.h
	h.Accounts = withProcessor(h.Accounts, oaApp, &proc)
	return &h
}

// TestStaleAnswerDoesNotUndoAnUnfollowOfItsSecond (chaos seed 977277439,
// size 4, p18): a follow waits in the retry queue (user/info failed when
// it was pushed). The retry consumer asks user/info (the follower still
// follows) and its write is slowed; meanwhile the follower unfollows in
// the same second and that push is handled. The retry's answer, asked
// before the unfollow, must not undo it when its write lands last.
func TestStaleAnswerDoesNotUndoAnUnfollowOfItsSecond(t *testing.T) {
	e := newEnv(t, push.Safe)
	ctx := context.Background()
	var p sandbox.Person
	inOneSecond(t, e, func() bool {
		p = e.sb.CreatePerson(sandbox.PersonSpec{})
		e.login(t, p)
		if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: -1, Count: 1}); err != nil {
			t.Fatal(err)
		}
		follow := e.follow(t, p.ID, "")
		batch := awstest.Receive(t, e.sqs, e.queueURL, 1)
		g := newGate()
		consumer := e.retryConsumerThrough(g)
		done := make(chan error, 1)
		go func() {
			_, err := consumer.Retry(ctx, batch)
			done <- err
		}()
		<-g.arrived // user/info said "follows"; the write is held
		unfollow := e.unfollow(t, p)
		e.agrees(t, p, "the unfollow handled")
		close(g.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return unfollow.Event.CreateTime == follow.Event.CreateTime
	})
	e.agrees(t, p, "the retried follow written after the unfollow")
	if got := e.person(t, identity.UnionKey(p.UnionID)); got.OA[oaApp].OpenID != p.OAOpenID {
		t.Fatalf("the retried follow did not link the follower: %+v", got)
	}
}

// TestUnfollowOnItsWordDoesNotWinATie: a follow whose claim could not be
// taken (the dedup store was out) is linked from the retry queue; the
// unfollow of its second then finds no claim for its second and is taken
// on its own word. It loses the tie with the follow recorded from
// user/info, so it asks user/info itself and records what it says.
func TestUnfollowOnItsWordDoesNotWinATie(t *testing.T) {
	e := newEnv(t, push.Safe)
	claims := e.h.Claims
	var p sandbox.Person
	calls := 0
	inOneSecond(t, e, func() bool {
		p = e.sb.CreatePerson(sandbox.PersonSpec{})
		e.h.Claims, e.h.Budget = idempotency.NewStore(dynamodb.NewFromConfig(deadConfig(t)), e.table, "push"), time.Second
		follow := e.follow(t, p.ID, "")
		e.h.Claims, e.h.Budget = claims, time.Minute
		if handled, failed := e.drain(t); handled != 1 || failed != 0 {
			t.Fatalf("drain: handled %d, failed %d", handled, failed)
		}
		e.agrees(t, p, "the follow linked from the queue")
		calls = e.sb.Calls("/cgi-bin/user/info")
		return e.unfollow(t, p).Event.CreateTime == follow.Event.CreateTime
	})
	e.agrees(t, p, "the unfollow of the follow's second")
	if n := e.sb.Calls("/cgi-bin/user/info") - calls; n != 1 {
		t.Fatalf("the unfollow asked user/info %d times, want once to settle the tie", n)
	}
}

// TestHeldClaimQueuesTheNextEventOfItsSecond (chaos seed 598914191, p4): a
// follow is handled but marking its claim done fails (DynamoDB answers
// 500), so the claim stays held for its lease. The unfollow of the same
// second finds it held: it is queued and answered "success", not refused
// until WeChat gives up, and the queue brings the follower's state to
// WeChat's.
func TestHeldClaimQueuesTheNextEventOfItsSecond(t *testing.T) {
	e := newEnv(t, push.Safe)
	proxy, cfg := e.faults(t)
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 10 * time.Millisecond })
	}
	e.h.Claims = idempotency.NewStore(dynamodb.NewFromConfig(cfg), e.table, "push")
	// Only the completion of a handled event: the claim itself goes through.
	if _, err := proxy.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `{"S":"handled"}`, Error: awsfault.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	var p sandbox.Person
	inOneSecond(t, e, func() bool {
		p = e.sb.CreatePerson(sandbox.PersonSpec{})
		follow := e.follow(t, p.ID, "")
		unfollow, err := e.sb.Unfollow(context.Background(), p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !unfollow.Delivered || len(unfollow.Attempts) != 1 {
			t.Fatalf("unfollow while its second's claim is held: delivered=%v after %d attempts %+v", unfollow.Delivered, len(unfollow.Attempts), unfollow.Attempts)
		}
		if handled, failed := e.drain(t); failed != 0 || handled != 1 {
			t.Fatalf("drain: handled %d, failed %d", handled, failed)
		}
		return unfollow.Event.CreateTime == follow.Event.CreateTime
	})
	e.agrees(t, p, "after the queued unfollow")
}
