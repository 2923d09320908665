package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
)

func TestTemplateToAFollowerIsSentAndReported(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	// A recipient key is required: the client refuses before SQS.
	if _, err := e.client.Enqueue(context.Background(), job("order-1-shipped", notify.Recipient{}, notify.Template)); !errors.Is(err, notify.ErrInvalid) {
		t.Fatalf("enqueue without recipient: %v", err)
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Fatalf("an invalid job was enqueued (%d)", n)
	}
	e.enqueue(t, job("order-1-shipped", notify.Recipient{UnionID: p.UnionID}))
	e.drain(t)
	got := e.entry(t, "order-1-shipped")
	if got.Status != notify.Sent || got.Channel != notify.Template || got.MsgID == "" || got.UID != e.uid(t, p) {
		t.Fatalf("ledger = %+v", got)
	}
	inbox := e.inbox(t, p)
	if len(inbox) != 1 || inbox[0].Channel != "template" || inbox[0].TemplateID != oaTemplate || inbox[0].Data["thing1"] != "Blue kettle" {
		t.Fatalf("inbox = %+v", inbox)
	}
	// WeChat reports the delivery later; follow-event records it.
	ds, err := e.sb.PushTemplateReports(context.Background())
	if err != nil || len(ds) != 1 || !ds[0].Delivered {
		t.Fatalf("report push: %v %+v", err, ds)
	}
	if got := e.entry(t, "order-1-shipped"); got.Status != notify.Delivered || got.Report != "success" || got.ReportedAt == nil {
		t.Fatalf("after the report: %+v", got)
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Fatalf("queue depth %d after a send", n)
	}
}

func TestDeliveryReportBlocked(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	if err := e.sb.RefuseTemplates(p.ID, true); err != nil {
		t.Fatal(err)
	}
	e.enqueue(t, job("j-blocked", notify.Recipient{UnionID: p.UnionID}, notify.Template))
	e.drain(t)
	if got := e.entry(t, "j-blocked"); got.Status != notify.Sent {
		t.Fatalf("before the report: %+v", got)
	}
	e.sb.PushTemplateReports(context.Background())
	if got := e.entry(t, "j-blocked"); got.Status != notify.Blocked || got.Report != sandbox.ReportUserBlock {
		t.Fatalf("after the report: %+v", got)
	}
	if len(e.inbox(t, p)) != 0 {
		t.Fatal("a refused message reached the inbox")
	}
}

func TestFallback(t *testing.T) {
	t.Run("template_to_subscribe_marks_the_unfollow", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		// The person unfollowed, and wxbridge missed the push: the table
		// still says they follow, WeChat answers 43004.
		e.sb.SetPushTarget(sandbox.PushTarget{URL: "http://127.0.0.1:1/nobody", Token: pushToken, Mode: "plaintext", Retries: 1})
		e.sb.Unfollow(context.Background(), p.ID)
		before, _ := e.store.Lookup(context.Background(), identity.UnionKey(p.UnionID))
		if !before.FollowsOA() {
			t.Fatal("setup: the table should still think the person follows")
		}
		e.consent(t, p)
		e.enqueue(t, job("j-fallback", notify.Recipient{UnionID: p.UnionID}, notify.Template, notify.Subscribe))
		e.drain(t)
		got := e.entry(t, "j-fallback")
		if got.Status != notify.Sent || got.Channel != notify.Subscribe || got.MsgID != "" {
			t.Fatalf("ledger = %+v", got)
		}
		inbox := e.inbox(t, p)
		if len(inbox) != 1 || inbox[0].Channel != "subscribe" || inbox[0].Data["phrase3"] != "已发货" {
			t.Fatalf("inbox = %+v", inbox)
		}
		after, _ := e.store.Lookup(context.Background(), identity.UnionKey(p.UnionID))
		if after.FollowsOA() || after.OA[oaApp].UnsubscribedAt == nil {
			t.Fatalf("43004 did not mark the person unfollowed: %+v", after.OA[oaApp])
		}
		// The next job skips the template channel without calling WeChat.
		calls := e.sb.Calls("/cgi-bin/message/template/send")
		e.consent(t, p)
		e.enqueue(t, job("j-fallback-2", notify.Recipient{UnionID: p.UnionID}, notify.Template, notify.Subscribe))
		e.drain(t)
		if e.sb.Calls("/cgi-bin/message/template/send") != calls || e.entry(t, "j-fallback-2").Channel != notify.Subscribe {
			t.Fatalf("a known non-follower was sent a template message: %+v", e.entry(t, "j-fallback-2"))
		}
	})
	t.Run("subscribe_to_template_without_consent", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.enqueue(t, job("j-back", notify.Recipient{MPOpenID: p.MPOpenID}, notify.Subscribe, notify.Template))
		e.drain(t)
		got := e.entry(t, "j-back")
		if got.Status != notify.Sent || got.Channel != notify.Template {
			t.Fatalf("ledger = %+v", got)
		}
		if inbox := e.inbox(t, p); len(inbox) != 1 || inbox[0].Channel != "template" {
			t.Fatalf("inbox = %+v", inbox)
		}
	})
	t.Run("nobody_reachable_is_undeliverable_with_why", func(t *testing.T) {
		e := newEnv(t)
		p := e.sb.CreatePerson(sandbox.PersonSpec{})
		e.login(t, p) // mini program only, no consent
		e.enqueue(t, job("j-nowhere", notify.Recipient{UnionID: p.UnionID}))
		e.drain(t)
		got := e.entry(t, "j-nowhere")
		if got.Status != notify.Undeliverable || got.ErrCode != 43101 || got.RID == "" ||
			!strings.Contains(got.Reason, "template: no official-account identity") || !strings.Contains(got.Reason, "subscribe: errcode 43101") {
			t.Fatalf("ledger = %+v", got)
		}
	})
	t.Run("unknown_recipient_is_undeliverable_once_the_wait_is_over", func(t *testing.T) {
		e := newEnv(t)
		e.enqueue(t, job("j-unknown", notify.Recipient{ExternalID: "nobody-9"}))
		r := e.poll(t)
		if len(r.failed) != 1 {
			t.Fatalf("an unknown recipient was not waited for: %+v", r)
		}
		e.sb.Clock().Advance(notify.DefaultRecipientWait)
		e.later(t, r.failed)
		e.drain(t)
		if got := e.entry(t, "j-unknown"); got.Status != notify.Undeliverable || !strings.Contains(got.Reason, "unknown") {
			t.Fatalf("ledger = %+v", got)
		}
	})
}

func TestAJobIDIsSentAtMostOnce(t *testing.T) {
	t.Run("enqueued_twice", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		j := job("twice", notify.Recipient{UnionID: p.UnionID})
		e.enqueue(t, j)
		e.drain(t)
		e.enqueue(t, j)
		e.drain(t)
		if n := len(e.inbox(t, p)); n != 1 {
			t.Fatalf("inbox has %d messages", n)
		}
		if !strings.Contains(e.logs.String(), `"outcome":"duplicate"`) {
			t.Fatal("the second delivery was not logged as a duplicate")
		}
	})
	t.Run("twice_in_one_batch_concurrently", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		j := job("same-batch", notify.Recipient{UnionID: p.UnionID})
		e.enqueue(t, j, j, j, j, j)
		// Slow WeChat down so that the five sends really overlap.
		e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/template/send", Latency: 50 * time.Millisecond})
		rounds := e.drain(t)
		for len(rounds) > 0 && len(rounds[len(rounds)-1].failed) > 0 {
			// Copies that found the job in flight come back after its lease.
			for _, r := range rounds {
				e.later(t, r.failed)
			}
			rounds = e.drain(t)
		}
		if n := len(e.inbox(t, p)); n != 1 {
			t.Fatalf("inbox has %d messages", n)
		}
		if e.sb.Calls("/cgi-bin/message/template/send") != 1 {
			t.Fatalf("template/send called %d times", e.sb.Calls("/cgi-bin/message/template/send"))
		}
	})
	t.Run("redelivery_after_a_crash_mid_send", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		// The worker dies right after WeChat accepted the message: the
		// answer never arrives and nothing is recorded (the claim stays
		// held), as when Lambda kills an invocation at its deadline.
		crash := &crashAfterSend{path: "/cgi-bin/message/template/send"}
		e.h.Sender = crashing(e, crash)
		e.enqueue(t, job("crash-1", notify.Recipient{UnionID: p.UnionID}))
		r := e.poll(t)
		if len(r.failed) != 1 || len(e.inbox(t, p)) != 1 {
			t.Fatalf("crash round: failed %d, inbox %d", len(r.failed), len(e.inbox(t, p)))
		}
		if got := e.entry(t, "crash-1"); got.Status != notify.InProgress || got.LeaseUntil == 0 {
			t.Fatalf("after the crash: %+v", got)
		}
		// SQS redelivers after the visibility timeout, past the lease.
		e.h.Sender = e.sender
		e.sb.Clock().Advance(DefaultLease + time.Minute)
		e.later(t, r.failed)
		e.drain(t)
		got := e.entry(t, "crash-1")
		if got.Status != notify.Sent || got.Attempts != 2 {
			t.Fatalf("after the redelivery: %+v", got)
		}
		if n := len(e.inbox(t, p)); n != 1 {
			t.Fatalf("inbox has %d messages after the redelivery", n)
		}
	})
	t.Run("crash_mid_subscribe_does_not_fall_back", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		crash := &crashAfterSend{path: "/cgi-bin/message/subscribe/send"}
		e.h.Sender = crashing(e, crash)
		e.enqueue(t, job("crash-2", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template))
		r := e.poll(t)
		e.h.Sender = e.sender
		e.sb.Clock().Advance(DefaultLease + time.Minute)
		e.later(t, r.failed)
		e.drain(t)
		if n := len(e.inbox(t, p)); n != 1 {
			t.Fatalf("inbox has %d messages: the takeover fell back to the template", n)
		}
		// The takeover does not even try the subscribe message again (no
		// dedup there): the ledger says honestly that it may have gone out.
		if got := e.entry(t, "crash-2"); got.Status != notify.Unknown || got.Channel != notify.Subscribe || !strings.Contains(got.Reason, "interrupted") {
			t.Fatalf("ledger = %+v", got)
		}
	})
}

// crashAfterSend lets one call to path reach WeChat, then stops the
// calling goroutine (runtime.Goexit), the way a killed invocation stops:
// nothing after the call runs, not even the ledger write.
type crashAfterSend struct {
	path    string
	crashed bool
	mu      sync.Mutex
}

func (c *crashAfterSend) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := httpClient.Transport.RoundTrip(r)
	c.mu.Lock()
	hit := r.URL.Path == c.path && !c.crashed
	c.crashed = c.crashed || hit
	c.mu.Unlock()
	if hit {
		resp.Body.Close()
		runtimeGoexit()
	}
	return resp, err
}

func TestExpiredJobsAreRecordedNotSent(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	j := job("expired-1", notify.Recipient{UnionID: p.UnionID})
	at := e.sb.Clock().Now().Add(time.Hour)
	j.ExpiresAt = &at
	e.enqueue(t, j)
	e.sb.Clock().Advance(2 * time.Hour)
	e.drain(t)
	if got := e.entry(t, "expired-1"); got.Status != notify.Expired {
		t.Fatalf("ledger = %+v", got)
	}
	if len(e.inbox(t, p)) != 0 || e.sb.Calls("/cgi-bin/message/template/send") != 0 {
		t.Fatal("an expired job was sent")
	}
}

func TestInvalidJobs(t *testing.T) {
	e := newEnv(t)
	e.enqueueRaw(t, "not json at all")
	e.enqueueRaw(t, `{"to":{"uid":"x"},"template":{"template_id":"t","data":{"thing1":"a"}}}`)
	e.enqueueRaw(t, `{"id":"bad-data","to":{"external_id":"8812"},"subscribe":{"template_id":"t","data":{"thing1":"this value is far longer than twenty characters"}}}`)
	rounds := e.drain(t)
	if len(rounds) == 0 || len(rounds[0].failed) != 0 {
		t.Fatalf("invalid jobs were retried: %+v", rounds)
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Fatalf("%d invalid jobs left on the queue", n)
	}
	got := e.entry(t, "bad-data")
	if got.Status != notify.Failed || got.Class != "invalid" || !strings.Contains(got.Reason, "subscribe.data.thing1") {
		t.Fatalf("ledger = %+v", got)
	}
	if strings.Contains(e.logs.String(), "far longer") {
		t.Fatal("a job's data reached the logs")
	}
	if c := e.logLines(`"outcome":"dropped"`); c != 2 {
		t.Fatalf("%d jobs logged as dropped, want 2 (not JSON, no id)", c)
	}
}

// retryIn reads the delays the worker logged, in order.
func retryIn(logs string) []time.Duration {
	var out []time.Duration
	for _, m := range regexp.MustCompile(`"retry_in":"([^"]+)"`).FindAllStringSubmatch(logs, -1) {
		d, _ := time.ParseDuration(m[1])
		out = append(out, d)
	}
	return out
}

func TestClasses(t *testing.T) {
	t.Run("transient_retries_with_growing_delays_then_sends", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/template/send", ErrCode: -1, Count: 2})
		e.enqueue(t, job("flaky", notify.Recipient{UnionID: p.UnionID}, notify.Template))
		for i := range 2 {
			r := e.poll(t)
			if len(r.failed) != 1 {
				t.Fatalf("round %d: %d failures", i, len(r.failed))
			}
			// The worker's delay keeps it invisible.
			if again := e.poll(t); again.received != 0 {
				t.Fatalf("round %d: the message came back at once", i)
			}
			if got := e.entry(t, "flaky"); got.Status != notify.InProgress || got.LeaseUntil != 0 || got.ErrCode != -1 {
				t.Fatalf("round %d: ledger = %+v", i, got)
			}
			e.later(t, r.failed)
		}
		d := retryIn(e.logs.String())
		if len(d) != 2 || d[0] < notify.RetryBase || d[1] < 2*notify.RetryBase || d[1] <= d[0] {
			t.Fatalf("retry delays %v do not grow from %s", d, notify.RetryBase)
		}
		e.drain(t)
		if got := e.entry(t, "flaky"); got.Status != notify.Sent || got.Attempts != 3 {
			t.Fatalf("ledger = %+v", got)
		}
		if len(e.inbox(t, p)) != 1 {
			t.Fatal("not delivered once")
		}
	})
	t.Run("transient_on_the_last_attempt_fails", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.h.MaxAttempts = 2
		e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/template/send", ErrCode: -1})
		e.enqueue(t, job("hopeless", notify.Recipient{UnionID: p.UnionID}, notify.Template))
		r := e.poll(t)
		e.later(t, r.failed)
		if r2 := e.poll(t); len(r2.failed) != 0 {
			t.Fatal("retried past MaxAttempts")
		}
		if got := e.entry(t, "hopeless"); got.Status != notify.Failed || got.Class != "transient" || got.ErrCode != -1 {
			t.Fatalf("ledger = %+v", got)
		}
	})
	t.Run("quota_defers_for_hours_and_alarms", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.sb.SetTemplateQuota(1)
		e.enqueue(t, job("q1", notify.Recipient{UnionID: p.UnionID}, notify.Template))
		e.drain(t)
		e.enqueue(t, job("q2", notify.Recipient{UnionID: p.UnionID}, notify.Template))
		r := e.poll(t)
		if len(r.failed) != 1 {
			t.Fatalf("quota: %d failures", len(r.failed))
		}
		d := retryIn(e.logs.String())
		if len(d) != 1 || d[0] < 15*time.Minute || d[0] > 12*time.Hour {
			t.Fatalf("quota delay %v, want hours (until the quota day turns)", d)
		}
		if !strings.Contains(e.logs.String(), `"SendAlarm":1`) || !strings.Contains(e.logs.String(), `"reason":"quota"`) {
			t.Fatal("no quota alarm metric")
		}
		if got := e.entry(t, "q2"); got.Status != notify.InProgress || got.ErrCode != 45009 || got.Class != "quota" {
			t.Fatalf("ledger = %+v", got)
		}
		// The next day the quota is back.
		e.sb.Clock().Advance(24 * time.Hour)
		e.refreshTokens(t)
		e.later(t, r.failed)
		e.drain(t)
		if got := e.entry(t, "q2"); got.Status != notify.Sent {
			t.Fatalf("after the quota day: %+v", got)
		}
	})
	t.Run("sender_errors_fail_fast_with_an_alarm", func(t *testing.T) {
		cases := []struct {
			name   string
			mutate func(*notify.Job)
			fault  *sandbox.Fault
			code   int
		}{
			{"bad_template_id", func(j *notify.Job) { j.Template.TemplateID = "no-such-template" }, nil, 40037},
			{"bad_page", func(j *notify.Job) { j.Subscribe.Page = "https://shop.example.com/not-a-page" }, nil, 41030},
			{"bad_data", nil, &sandbox.Fault{Path: "/cgi-bin/message/subscribe/send", ErrCode: 47003}, 47003},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t)
				p := e.follower(t)
				e.consent(t, p)
				j := job("sender-"+tc.name, notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template)
				if tc.code == 40037 {
					j.Channels = []notify.Channel{notify.Template, notify.Subscribe}
				}
				if tc.mutate != nil {
					tc.mutate(&j)
				}
				if tc.fault != nil {
					e.sb.InjectFault(*tc.fault)
				}
				e.enqueue(t, j)
				if rounds := e.drain(t); len(rounds) != 1 || len(rounds[0].failed) != 0 {
					t.Fatalf("a sender error was retried: %+v", rounds)
				}
				got := e.entry(t, j.ID)
				if got.Status != notify.Failed || got.Class != "sender" || got.ErrCode != tc.code || got.RID == "" {
					t.Fatalf("ledger = %+v", got)
				}
				if len(e.inbox(t, p)) != 0 {
					t.Fatal("fell back after a sender error")
				}
				if !strings.Contains(e.logs.String(), `"reason":"sender"`) {
					t.Fatal("no sender alarm metric")
				}
			})
		}
	})
	t.Run("user_state_codes_try_the_next_channel", func(t *testing.T) {
		for _, code := range []int{43004, 43019, 40003} {
			t.Run(fmt.Sprint(code), func(t *testing.T) {
				e := newEnv(t)
				p := e.follower(t)
				e.consent(t, p)
				e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/template/send", ErrCode: code, Count: 1})
				e.enqueue(t, job(fmt.Sprint("us-", code), notify.Recipient{UnionID: p.UnionID}))
				e.drain(t)
				if got := e.entry(t, fmt.Sprint("us-", code)); got.Status != notify.Sent || got.Channel != notify.Subscribe {
					t.Fatalf("ledger = %+v", got)
				}
				person, _ := e.store.Lookup(context.Background(), identity.UnionKey(p.UnionID))
				if person.FollowsOA() != (code != 43004) {
					t.Fatalf("errcode %d: follows = %v", code, person.FollowsOA())
				}
			})
		}
	})
}

// TestPoisonReachesTheDLQ: a job that crashes the worker every time ends in
// the dead-letter queue after the queue's receive limit, while a good job
// in the same batch is sent once.
func TestPoisonReachesTheDLQ(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	e.sender.People = poisonous{e.store}
	e.enqueue(t, job("poison", notify.Recipient{ExternalID: "poison"}), job("good", notify.Recipient{UnionID: p.UnionID}))
	dlq := e.dlq(t)
	for i := 0; i < 20 && e.depth(t, dlq) == 0; i++ {
		for _, r := range e.drain(t) {
			e.later(t, r.failed)
		}
	}
	if n := e.depth(t, dlq); n != 1 {
		t.Fatalf("DLQ depth %d", n)
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Fatalf("send queue depth %d", n)
	}
	if got := e.entry(t, "good"); got.Status != notify.Sent || len(e.inbox(t, p)) != 1 {
		t.Fatalf("good job: %+v", got)
	}
	if c := e.logLines(`"outcome":"crashed"`); c != 8 {
		t.Fatalf("crashed %d times, want the queue's maxReceiveCount (8)", c)
	}
}

// poisonous is the identity store with a bug that only one recipient
// triggers: nothing real panics on demand, so this wrapper does.
type poisonous struct{ *identity.Store }

func (p poisonous) Lookup(ctx context.Context, k identity.Key) (identity.Person, error) {
	if k == identity.ExternalKey("poison") {
		panic("poisonous recipient")
	}
	return p.Store.Lookup(ctx, k)
}

// TestStoreOutageRetries: with the table unreachable nothing is sent and the
// job comes back.
func TestStoreOutageRetries(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	e.sender.People = failingPeople{}
	e.enqueue(t, job("outage", notify.Recipient{UnionID: p.UnionID}))
	r := e.poll(t)
	if len(r.failed) != 1 || len(e.inbox(t, p)) != 0 {
		t.Fatalf("outage: failed %d", len(r.failed))
	}
}

// failingPeople is a store that is down.
type failingPeople struct{}

var errDown = errors.New("dynamodb: connection refused")

func (failingPeople) Lookup(context.Context, identity.Key) (identity.Person, error) {
	return identity.Person{}, errDown
}
func (failingPeople) ByUID(context.Context, string) (identity.Person, error) {
	return identity.Person{}, errDown
}
func (failingPeople) ByPhone(context.Context, string) (identity.Person, error) {
	return identity.Person{}, errDown
}
func (failingPeople) Link(context.Context, identity.Sighting) (identity.Result, error) {
	return identity.Result{}, errDown
}
