package handler

import (
	"context"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/notify"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/reach"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// Subscribe-notification templates (43 characters, as the platform's).
var (
	tplOnce = "OneTimeTemplate000000000000000000000000000A"
	tplLong = "LongTermTemplate00000000000000000000000000B"
	tplNo   = "RefusedTemplate000000000000000000000000000C"
)

// reachEnv is env with the function recording consents and interactions
// (held to its IAM policy, as in Lambda); rs reads them as the test.
func reachEnv(t *testing.T) (*env, *reach.Store) {
	t.Helper()
	e := newEnv(t, push.Safe)
	p := e.processor().(*pushevent.Processor)
	p.Reach = reach.New(e.fn.DB, e.table)
	p.LongTerm = reach.ParseLongTerm(tplLong)
	p.Reports = notify.NewLedger(e.fn.DB, e.table)
	return e, reach.New(e.db, e.table)
}

func (e *env) reachOf(t *testing.T, rs *reach.Store, p sandbox.Person) reach.State {
	t.Helper()
	k := reach.Key{AppID: oaApp, OpenID: p.OAOpenID}
	m, err := rs.Get(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return m[k]
}

// delivered checks a sandbox push, delivered(t)(e.sb.Message(...)): the
// function took it at the first attempt.
func delivered(t *testing.T) func(sandbox.Delivery, error) {
	return func(d sandbox.Delivery, err error) {
		t.Helper()
		if err != nil || !d.Delivered || len(d.Attempts) != 1 {
			t.Fatalf("push: %+v, %v", d, err)
		}
	}
}

// TestConsentEventsAreRecorded: the official account's popup and settings
// events, as the sandbox pushes them, become the person's consents.
func TestConsentEventsAreRecorded(t *testing.T) {
	e, rs := reachEnv(t)
	ctx := context.Background()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, p.ID, "")

	d, err := e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: tplOnce}, sandbox.OAPopup{TemplateID: tplLong, LongTerm: true}, sandbox.OAPopup{TemplateID: tplNo, Reject: true})
	delivered(t)(d, err)
	st := e.reachOf(t, rs, p)
	once, long, no := st.Consents[tplOnce], st.Consents[tplLong], st.Consents[tplNo]
	if once.Left != 1 || once.LongTerm || !long.LongTerm || !no.Rejected || st.ConsentGone(tplOnce) || st.ConsentGone(tplLong) || !st.ConsentGone(tplNo) {
		t.Fatalf("after the popup: %+v", st.Consents)
	}
	// A second acceptance adds one; declining the popup later keeps them.
	e.sb.Clock().Advance(time.Second)
	delivered(t)(e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: tplOnce}))
	e.sb.Clock().Advance(time.Second)
	delivered(t)(e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: tplOnce, Reject: true}))
	if c := e.reachOf(t, rs, p).Consents[tplOnce]; c.Left != 2 || c.Rejected {
		t.Fatalf("two acceptances and a declined popup: %+v", c)
	}
	// Turning the template off in the settings withdraws it, long-term or not.
	e.sb.Clock().Advance(time.Second)
	delivered(t)(e.sb.OARevoke(ctx, p.ID, tplOnce))
	delivered(t)(e.sb.OARevoke(ctx, p.ID, tplLong))
	st = e.reachOf(t, rs, p)
	if !st.ConsentGone(tplOnce) || !st.ConsentGone(tplLong) || st.Consents[tplOnce].Left != 0 {
		t.Fatalf("after withdrawing: %+v", st.Consents)
	}
	// The sandbox agrees: bizsend answers 43101 for both.
	for _, tpl := range []string{tplOnce, tplLong} {
		if left, lt := e.sb.OAConsents(p.ID, tpl); left != 0 || lt {
			t.Errorf("the sandbox still holds a consent for %s: %d %v", tpl, left, lt)
		}
	}
}

// TestConsentPushedTwiceCountsOnce: WeChat's retry of an answered popup is
// a duplicate for the push's dedup, and the same event handled again (from
// the retry queue, or when dedup was down) still adds one consent only.
func TestConsentPushedTwiceCountsOnce(t *testing.T) {
	e, rs := reachEnv(t)
	ctx := context.Background()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	ev := push.Event{ToUserName: "gh", FromUserName: p.OAOpenID, CreateTime: e.sb.Clock().Now().Unix(), MsgType: "event", Event: push.SubscribePopup,
		Templates: []push.TemplateEvent{{TemplateID: tplOnce, Status: "accept", PopupScene: "1"}}}
	for range 2 {
		if resp, _ := e.h.HTTP(ctx, e.sealed(t, ev)); resp.Body != "success" {
			t.Fatalf("push: %q", resp.Body)
		}
	}
	if _, err := e.processor().ProcessLate(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if c := e.reachOf(t, rs, p).Consents[tplOnce]; c.Left != 1 {
		t.Fatalf("one acceptance pushed three times: %+v", c)
	}
}

// TestInteractionsAreRecorded: a message opens the 48-hour window, a
// follow and a menu click the one-minute one; a late push never moves
// either back.
func TestInteractionsAreRecorded(t *testing.T) {
	e, rs := reachEnv(t)
	ctx := context.Background()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	followed := e.sb.Clock().Now().Truncate(time.Second)
	e.follow(t, p.ID, "")
	st := e.reachOf(t, rs, p)
	if !st.LastBrief.Equal(followed) || !st.LastInteraction.IsZero() || !st.WindowOpen(followed) {
		t.Fatalf("after the follow: %+v", st)
	}
	e.sb.Clock().Advance(time.Hour)
	wrote := e.sb.Clock().Now().Truncate(time.Second)
	delivered(t)(e.sb.Message(ctx, p.ID, "where is my parcel?"))
	e.sb.Clock().Advance(time.Minute)
	clicked := e.sb.Clock().Now().Truncate(time.Second)
	delivered(t)(e.sb.MenuClick(ctx, p.ID, "orders"))
	st = e.reachOf(t, rs, p)
	if !st.LastInteraction.Equal(wrote) || !st.LastBrief.Equal(clicked) {
		t.Fatalf("after a message and a click: %+v", st)
	}
	if st.WindowClosed(wrote.Add(reach.Window)) || !st.WindowClosed(wrote.Add(reach.Window+time.Second)) {
		t.Error("the window does not close 48 h after the message")
	}
	// Pushes that arrive late (a retry, the retry queue) are older than
	// what is recorded: nothing moves back.
	for _, ev := range []push.Event{
		{ToUserName: "gh", FromUserName: p.OAOpenID, CreateTime: wrote.Unix() - 30, MsgType: "text", MsgID: "6999999999999999999"},
		{ToUserName: "gh", FromUserName: p.OAOpenID, CreateTime: clicked.Unix() - 30, MsgType: "event", Event: "scancode_push", EventKey: "k"},
	} {
		if _, err := e.processor().ProcessLate(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if again := e.reachOf(t, rs, p); !again.LastInteraction.Equal(wrote) || !again.LastBrief.Equal(clicked) {
		t.Fatalf("a late push moved the time back: %+v", again)
	}
	// A menu item that opens a web page (VIEW) is no interaction the
	// platform counts.
	view := push.Event{ToUserName: "gh", FromUserName: p.OAOpenID, CreateTime: clicked.Unix() + 60, MsgType: "event", Event: "VIEW", EventKey: "https://example.com"}
	if res, err := e.processor().Process(ctx, view); err != nil || res.Action != "ignored" {
		t.Fatalf("VIEW: %+v, %v", res, err)
	}
	if again := e.reachOf(t, rs, p); !again.LastBrief.Equal(clicked) {
		t.Fatalf("VIEW recorded as an interaction: %+v", again)
	}
}

// TestSentEventsSettleTheLedger: bizsend's delivery report
// (subscribe_msg_sent_event) turns the SENT entry of its msgid into
// DELIVERED, BLOCKED (and the template refused) or FAILED with the reason.
func TestSentEventsSettleTheLedger(t *testing.T) {
	e, rs := reachEnv(t)
	ctx := context.Background()
	ledger := notify.NewLedger(e.db, e.table)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, p.ID, "")
	delivered(t)(e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: tplOnce}, sandbox.OAPopup{TemplateID: tplLong, LongTerm: true}))
	e.sb.Clock().Advance(time.Second)
	delivered(t)(e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: tplOnce}))
	send := func(jobID, tpl string) {
		t.Helper()
		msgid, err := e.wc.SendOASubscribe(ctx, oaApp, wechat.OASubscribeMessage{ToUser: p.OAOpenID, TemplateID: tpl, Data: map[string]string{"thing1": "parcel"}})
		if err != nil || msgid == "" {
			t.Fatalf("bizsend: %q, %v", msgid, err)
		}
		settleSent(t, ledger, jobID, notify.OASubscribe, msgid)
	}
	status := func(jobID string) notify.Entry {
		t.Helper()
		got, _, err := ledger.Get(ctx, jobID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	send("ok", tplOnce)
	if ds, err := e.sb.PushTemplateReports(ctx); err != nil || len(ds) != 1 || !ds[0].Delivered {
		t.Fatalf("report: %+v, %v", ds, err)
	}
	if got := status("ok"); got.Status != notify.Delivered || got.Report != "success" {
		t.Fatalf("delivered report: %+v", got)
	}
	// The person refuses the account's notifications: BLOCKED, and the
	// template is known refused.
	if err := e.sb.RefuseTemplates(p.ID, true); err != nil {
		t.Fatal(err)
	}
	send("blocked", tplLong)
	if _, err := e.sb.PushTemplateReports(ctx); err != nil {
		t.Fatal(err)
	}
	if got := status("blocked"); got.Status != notify.Blocked {
		t.Fatalf("blocked report: %+v", got)
	}
	if st := e.reachOf(t, rs, p); !st.ConsentGone(tplLong) || st.ConsentGone(tplOnce) {
		t.Fatalf("after a user block of %s: %+v", tplLong, st.Consents)
	}
	// A system failure (which the sandbox does not play): FAILED with the
	// platform's words. Its push handled twice (a retry after a lost
	// answer) changes nothing the second time.
	settleSent(t, ledger, "failed", notify.OASubscribe, "7000000000000000001")
	ev := push.Event{ToUserName: "gh", FromUserName: p.OAOpenID, CreateTime: e.sb.Clock().Now().Unix(), MsgType: "event", Event: push.SubscribeSent,
		Templates: []push.TemplateEvent{{TemplateID: tplOnce, MsgID: "7000000000000000001", ErrorCode: "20001", ErrorStatus: "failed:system failed"}}}
	for range 2 {
		if res, err := e.processor().Process(ctx, ev); err != nil || res.Action != "reported" {
			t.Fatalf("system failure report: %+v, %v", res, err)
		}
	}
	if got := status("failed"); got.Status != notify.Failed || !strings.Contains(got.Reason, "failed:system failed") {
		t.Fatalf("failed report: %+v", got)
	}
	if st := e.reachOf(t, rs, p); st.ConsentGone(tplOnce) {
		t.Fatalf("a system failure withdrew the consent: %+v", st.Consents[tplOnce])
	}
}

// settleSent writes a SENT entry through the ledger's own claim and
// settle, as the send-worker does for channel.
func settleSent(t *testing.T, l *notify.Ledger, jobID string, channel notify.Channel, msgid string) {
	t.Helper()
	ctx := context.Background()
	c, err := l.Claim(ctx, jobID, "u", time.Now().Add(time.Minute))
	if err != nil || c.State != notify.Claimed {
		t.Fatalf("claim: %+v %v", c, err)
	}
	if err := l.SettleSent(ctx, jobID, c, channel, oaApp, msgid); err != nil {
		t.Fatal(err)
	}
}
