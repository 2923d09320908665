package handler

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/notify"
	"wxbridge/shared/wechat"
)

const (
	templatePath  = "/cgi-bin/message/template/send"
	subscribePath = "/cgi-bin/message/subscribe/send"
)

// settleAll plays the queue until it is empty: every job put off comes back
// at once, as if its delay had passed (the clock does not move).
func (e *env) settleAll(t testing.TB) {
	t.Helper()
	for range 10 {
		rounds := e.drain(t)
		if len(rounds) == 0 {
			return
		}
		for _, r := range rounds {
			e.later(t, r.failed)
		}
	}
	t.Fatal("the queue did not settle in 10 rounds")
}

// TestAnUnansweredSendIsNeverSentOnAnotherChannel: WeChat performed a send
// whose answer never came back (issue 12, defect 4). The job reaches the
// person once at most: a subscribe message is settled UNKNOWN (no dedup to
// resend it with), a template message is resent on its own channel within
// client_msg_id's window, and neither falls back to the other channel.
func TestAnUnansweredSendIsNeverSentOnAnotherChannel(t *testing.T) {
	t.Run("subscribe_answer_lost", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		e.sb.InjectFault(sandbox.Fault{Path: subscribePath, Count: 1, LostAnswer: true})
		e.enqueue(t, job("lost-sub", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template))
		e.settleAll(t)
		if inbox := e.inbox(t, p); len(inbox) != 1 || inbox[0].Channel != "subscribe" {
			t.Fatalf("inbox = %+v, want the one subscribe message", inbox)
		}
		if n := e.sb.Calls(templatePath); n != 0 {
			t.Fatalf("fell back to the template channel (%d calls)", n)
		}
		got := e.entry(t, "lost-sub")
		if got.Status != notify.Unknown || got.Channel != notify.Subscribe || !strings.Contains(got.Reason, "no answer") || got.Trying != "" {
			t.Fatalf("ledger = %+v", got)
		}
		if e.logLines(`"outcome":"UNKNOWN"`) != 1 {
			t.Fatal("the outcome was not logged as UNKNOWN")
		}
	})
	t.Run("subscribe_timeout", func(t *testing.T) {
		// The client gives up first: WeChat goes on and sends.
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		e.consent(t, p) // a second consent: a resend would reach them twice
		impatient := *e.sender
		impatient.WeChat = wechat.New(wechat.Options{APIBase: e.apiURL, Tokens: e.source, HTTPClient: &http.Client{Timeout: 700 * time.Millisecond}})
		e.h.Sender = &impatient
		e.sb.InjectFault(sandbox.Fault{Path: subscribePath, Count: 1, LostAnswer: true, Latency: 5 * time.Second})
		e.enqueue(t, job("slow-sub", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template))
		e.settleAll(t)
		if n := len(e.inbox(t, p)); n != 1 || e.sb.Calls(subscribePath) != 1 || e.sb.Calls(templatePath) != 0 {
			t.Fatalf("inbox %d, subscribe calls %d, template calls %d", n, e.sb.Calls(subscribePath), e.sb.Calls(templatePath))
		}
		if got := e.entry(t, "slow-sub"); got.Status != notify.Unknown || got.Channel != notify.Subscribe {
			t.Fatalf("ledger = %+v", got)
		}
	})
	t.Run("template_answer_lost_is_resent_on_its_channel", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		e.sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, LostAnswer: true})
		e.enqueue(t, job("lost-tpl", notify.Recipient{UnionID: p.UnionID}, notify.Template, notify.Subscribe))
		r := e.poll(t)
		if len(r.failed) != 1 {
			t.Fatalf("the job was not kept for a resend: %+v", r)
		}
		if got := e.entry(t, "lost-tpl"); got.Status != notify.InProgress || got.Trying != notify.Template || got.TriedAt == 0 {
			t.Fatalf("after the lost answer: %+v", got)
		}
		if d := retryIn(e.logs.String()); len(d) != 1 || d[0] > 5*time.Minute {
			t.Fatalf("resend in %v: it must come back inside the 10-minute window", d)
		}
		e.later(t, r.failed)
		e.settleAll(t)
		got := e.entry(t, "lost-tpl")
		if got.Status != notify.Sent || got.Channel != notify.Template || got.MsgID == "" || got.Trying != "" {
			t.Fatalf("ledger = %+v", got)
		}
		// WeChat deduplicated the resend by client_msg_id.
		if inbox := e.inbox(t, p); len(inbox) != 1 || e.sb.Calls(templatePath) != 2 || e.sb.Calls(subscribePath) != 0 {
			t.Fatalf("inbox %+v, template calls %d, subscribe calls %d", inbox, e.sb.Calls(templatePath), e.sb.Calls(subscribePath))
		}
	})
	t.Run("template_answer_lost_past_the_window_is_unknown", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		e.sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, LostAnswer: true})
		e.enqueue(t, job("late-tpl", notify.Recipient{UnionID: p.UnionID}, notify.Template, notify.Subscribe))
		r := e.poll(t)
		// The retry comes back too late (a backlog): a resend could reach
		// the person twice.
		e.sb.Clock().Advance(10 * time.Minute)
		e.later(t, r.failed)
		e.settleAll(t)
		got := e.entry(t, "late-tpl")
		if got.Status != notify.Unknown || got.Channel != notify.Template || !strings.Contains(got.Reason, "window") {
			t.Fatalf("ledger = %+v", got)
		}
		if n := len(e.inbox(t, p)); n != 1 || e.sb.Calls(templatePath) != 1 || e.sb.Calls(subscribePath) != 0 {
			t.Fatalf("inbox %d, template calls %d, subscribe calls %d", n, e.sb.Calls(templatePath), e.sb.Calls(subscribePath))
		}
	})
	t.Run("fallback_channel_answer_lost", func(t *testing.T) {
		// Template refused (43004: unfollowed, push missed), subscribe sent
		// with its answer lost: the entry names subscribe, not template.
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		e.sb.InjectFault(sandbox.Fault{Path: templatePath, ErrCode: 43004, Count: 1})
		e.sb.InjectFault(sandbox.Fault{Path: subscribePath, Count: 1, LostAnswer: true})
		e.enqueue(t, job("lost-fallback", notify.Recipient{UnionID: p.UnionID}, notify.Template, notify.Subscribe))
		e.settleAll(t)
		if got := e.entry(t, "lost-fallback"); got.Status != notify.Unknown || got.Channel != notify.Subscribe {
			t.Fatalf("ledger = %+v", got)
		}
		if n := len(e.inbox(t, p)); n != 1 {
			t.Fatalf("inbox has %d messages", n)
		}
	})
}

// faultyLedger makes the worker's ledger writes go through an awsfault
// proxy in front of the IAM check, with the SDK's retries kept but quick,
// and returns the proxy.
func (e *env) faultyLedger(t testing.TB) *awsfault.Proxy {
	t.Helper()
	proxy, cfg := e.faults(t)
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 20 * time.Millisecond })
	})
	ledger := notify.NewLedger(db, e.table)
	ledger.Now = e.sb.Clock().Now
	s := *e.sender
	s.Ledger = ledger
	e.h.Sender = &s
	return proxy
}

// failSentRecords makes every write that records SENT fail on the wire.
func failSentRecords(t testing.TB, proxy *awsfault.Proxy) {
	t.Helper()
	if _, err := proxy.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `{"S":"SENT"}`, Error: awsfault.InternalServerError}); err != nil {
		t.Fatal(err)
	}
}

// TestASendWhoseRecordFailsIsNeverRepeated: WeChat accepted the message,
// then DynamoDB refused every write of SENT (issue 12, defect 5). The
// message stays on the queue with the outcome kept; the job is never sent
// again, and the ledger ends with the true outcome (or, on a worker that
// never learnt it, the honest UNKNOWN).
func TestASendWhoseRecordFailsIsNeverRepeated(t *testing.T) {
	t.Run("the_worker_records_what_it_kept", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		e.consent(t, p)
		proxy := e.faultyLedger(t)
		failSentRecords(t, proxy)
		e.enqueue(t, job("unrecorded-1", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template))
		r := e.poll(t)
		if len(r.failed) != 1 {
			t.Fatalf("the message of a send whose outcome was not recorded was deleted: %+v", r)
		}
		if got := e.entry(t, "unrecorded-1"); got.Status != notify.InProgress {
			t.Fatalf("after the failed writes: %+v", got)
		}
		if !strings.Contains(e.logs.String(), `"LedgerWriteFailed":1`) {
			t.Fatal("no LedgerWriteFailed metric")
		}
		// DynamoDB is back; the message's next delivery only writes.
		proxy.Clear()
		e.later(t, r.failed)
		e.settleAll(t)
		if got := e.entry(t, "unrecorded-1"); got.Status != notify.Sent || got.Channel != notify.Subscribe || got.Trying != "" {
			t.Fatalf("ledger = %+v", got)
		}
		if n := len(e.inbox(t, p)); n != 1 || e.sb.Calls(subscribePath) != 1 || e.sb.Calls(templatePath) != 0 {
			t.Fatalf("inbox %d, subscribe calls %d, template calls %d", n, e.sb.Calls(subscribePath), e.sb.Calls(templatePath))
		}
		// A duplicate enqueue finds the job settled.
		e.enqueue(t, job("unrecorded-1", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template))
		e.settleAll(t)
		if n := len(e.inbox(t, p)); n != 1 {
			t.Fatalf("inbox has %d messages after a duplicate", n)
		}
	})
	t.Run("a_release_is_kept_too", func(t *testing.T) {
		// WeChat answered -1 (nothing sent) and the release could not be
		// written: the next delivery writes it and sends, rather than
		// taking the subscribe message for one that may have gone out.
		e := newEnv(t)
		p := e.follower(t)
		e.consent(t, p)
		proxy := e.faultyLedger(t)
		if _, err := proxy.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `{"N":"-1"}`, Error: awsfault.ThrottlingException}); err != nil {
			t.Fatal(err)
		}
		e.sb.InjectFault(sandbox.Fault{Path: subscribePath, ErrCode: -1, Count: 1})
		e.enqueue(t, job("unreleased", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe))
		r := e.poll(t)
		if len(r.failed) != 1 || !strings.Contains(e.logs.String(), `"status":"INPROGRESS"`) {
			t.Fatalf("round 1: %+v", r)
		}
		proxy.Clear()
		e.later(t, r.failed)
		e.settleAll(t)
		if got := e.entry(t, "unreleased"); got.Status != notify.Sent || got.Channel != notify.Subscribe {
			t.Fatalf("ledger = %+v", got)
		}
		if n := len(e.inbox(t, p)); n != 1 {
			t.Fatalf("inbox has %d messages", n)
		}
	})
	t.Run("another_worker_never_sends_again", func(t *testing.T) {
		for _, ch := range []notify.Channel{notify.Subscribe, notify.Template} {
			t.Run(string(ch), func(t *testing.T) {
				e := newEnv(t)
				p := e.follower(t)
				e.consent(t, p)
				e.consent(t, p)
				proxy := e.faultyLedger(t)
				failSentRecords(t, proxy)
				other := notify.Subscribe
				if ch == notify.Subscribe {
					other = notify.Template
				}
				id := "unrecorded-" + string(ch)
				e.enqueue(t, job(id, notify.Recipient{UnionID: p.UnionID}, ch, other))
				r := e.poll(t)
				if len(r.failed) != 1 {
					t.Fatalf("the message was deleted: %+v", r)
				}
				// The next delivery lands on a fresh worker that knows
				// nothing, after the first one's lease ran out.
				proxy.Clear()
				fresh := *e.sender
				fresh.Unrecorded = notify.NewUnrecorded()
				e.h.Sender = &fresh
				e.sb.Clock().Advance(DefaultLease + time.Minute)
				e.later(t, r.failed)
				e.settleAll(t)
				got := e.entry(t, id)
				want := map[notify.Channel]notify.Status{notify.Subscribe: notify.Unknown, notify.Template: notify.Sent}[ch]
				if got.Status != want || got.Channel != ch {
					t.Fatalf("ledger = %+v, want %s on %s", got, want, ch)
				}
				if n := len(e.inbox(t, p)); n != 1 {
					t.Fatalf("inbox has %d messages", n)
				}
			})
		}
	})
}

// TestAJobWaitsForItsRecipient: a job addressed to someone wxbridge has
// not linked yet (their follow still in the push retry queue) comes back
// until they are linked, within RecipientWait (issue 12).
func TestAJobWaitsForItsRecipient(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{}) // not linked yet
	e.enqueue(t, job("early", notify.Recipient{UnionID: p.UnionID}, notify.Template))
	r := e.poll(t)
	if len(r.failed) != 1 {
		t.Fatalf("an unknown recipient was not waited for: %+v", r)
	}
	if _, ok, _ := e.ledger.Get(context.Background(), "early"); ok {
		t.Fatal("a ledger entry for a job waiting for its recipient")
	}
	if e.logLines(`"outcome":"retry"`, `"class":"recipient"`) != 1 {
		t.Fatal("the wait was not logged")
	}
	// Their follow is linked at last.
	if d, err := e.sb.Follow(context.Background(), p.ID, ""); err != nil || !d.Delivered {
		t.Fatalf("follow: %v %+v", err, d)
	}
	e.sb.Clock().Advance(5 * time.Minute)
	e.later(t, r.failed)
	e.settleAll(t)
	if got := e.entry(t, "early"); got.Status != notify.Sent || got.Channel != notify.Template {
		t.Fatalf("ledger = %+v", got)
	}
	if n := len(e.inbox(t, p)); n != 1 {
		t.Fatalf("inbox has %d messages", n)
	}

	// A shorter wait is a setting.
	e.sender.RecipientWait = time.Minute
	e.enqueue(t, job("never", notify.Recipient{ExternalID: "nobody"}, notify.Template))
	r = e.poll(t)
	e.sb.Clock().Advance(time.Minute)
	e.later(t, r.failed)
	e.settleAll(t)
	if got := e.entry(t, "never"); got.Status != notify.Undeliverable || got.Reason != "recipient unknown to wxbridge" {
		t.Fatalf("ledger = %+v", got)
	}
}

// TestUnknownErrcodesRetryThenFail: an errcode wxbridge does not know may
// pass (wechat.Retryable): it is retried within MaxAttempts, alarmed on
// each time, then recorded FAILED; it never falls back.
func TestUnknownErrcodesRetryThenFail(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	e.consent(t, p)
	e.h.MaxAttempts = 2
	e.sb.InjectFault(sandbox.Fault{Path: templatePath, ErrCode: 99999})
	e.enqueue(t, job("mystery", notify.Recipient{UnionID: p.UnionID}, notify.Template, notify.Subscribe))
	r := e.poll(t)
	if len(r.failed) != 1 {
		t.Fatalf("an unknown errcode was not retried: %+v", r)
	}
	if got := e.entry(t, "mystery"); got.Status != notify.InProgress || got.ErrCode != 99999 || got.Class != "unknown" || got.Trying != "" {
		t.Fatalf("after the first answer: %+v", got)
	}
	e.later(t, r.failed)
	e.settleAll(t)
	if got := e.entry(t, "mystery"); got.Status != notify.Failed || got.Class != "unknown" || got.ErrCode != 99999 {
		t.Fatalf("ledger = %+v", got)
	}
	if e.logLines(`"msg":"send alarm"`, `"alarm":"unknown"`) != 2 || len(e.inbox(t, p)) != 0 {
		t.Fatalf("alarms %d, inbox %d", e.logLines(`"msg":"send alarm"`, `"alarm":"unknown"`), len(e.inbox(t, p)))
	}
}
