package handler

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/notify"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/reach"
	"wxbridge/shared/wechat/push"
)

// Attacks on the consent and delivery-report pushes (subscribe_msg_popup_event,
// subscribe_msg_change_event, subscribe_msg_sent_event) through the
// function's HTTP entry: pushed twice, out of order, with XML the platform
// does not document, and a report that arrives before the send is settled.

// plainReachEnv is reachEnv in plaintext mode, where a test can sign any
// body it writes by hand.
func plainReachEnv(t *testing.T) (*env, *reach.Store) {
	t.Helper()
	e := newEnv(t, push.Plaintext)
	p := e.processor().(*pushevent.Processor)
	p.Reach = reach.New(e.fn.DB, e.table)
	p.LongTerm = reach.ParseLongTerm(tplLong)
	p.Reports = notify.NewLedger(e.fn.DB, e.table)
	return e, reach.New(e.db, e.table)
}

// rawPush signs body as a plaintext push of now.
func (e *env) rawPush(body string) events.APIGatewayV2HTTPRequest {
	ts := strconv.FormatInt(e.sb.Clock().Now().Unix(), 10)
	return pushRequest(push.Query{Signature: push.Signature(pushToken, ts, "nonce"), Timestamp: ts, Nonce: "nonce"}, body)
}

// answered requires the push to be taken (answered "success"), at once
// or through the retry queue, which is drained.
func (e *env) answered(t *testing.T, req events.APIGatewayV2HTTPRequest) {
	t.Helper()
	resp, _ := e.h.HTTP(context.Background(), req)
	if resp.StatusCode != 200 || resp.Body != "success" {
		t.Fatalf("push answered %d %q", resp.StatusCode, resp.Body)
	}
	if _, failed := e.drain(t); failed != 0 {
		t.Fatalf("%d queued events failed", failed)
	}
}

// consentEvent is a popup or change event of p at sec seconds from base.
func consentEvent(p sandbox.Person, base time.Time, sec int, event string, items ...push.TemplateEvent) push.Event {
	return push.Event{ToUserName: "gh_test", FromUserName: p.OAOpenID, CreateTime: base.Unix() + int64(sec), MsgType: "event", Event: event, Templates: items}
}

// TestAttackConsentPushesReversedAndRepeated: the person accepts (t) and
// turns the template off in the settings (t+1); WeChat delivers the
// change before the popup, and each twice, once as a retry the dedup
// catches and once handled again from the retry queue. The template ends
// refused; a later acceptance counts once, however often it is pushed.
func TestAttackConsentPushesReversedAndRepeated(t *testing.T) {
	e, rs := reachEnv(t)
	ctx := context.Background()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	base := e.sb.Clock().Now().Add(-10 * time.Second)
	accept := consentEvent(p, base, 0, push.SubscribePopup, push.TemplateEvent{TemplateID: tplOnce, Status: "accept", PopupScene: "2"})
	change := consentEvent(p, base, 1, push.SubscribeChange, push.TemplateEvent{TemplateID: tplOnce, Status: "reject"})
	for _, ev := range []push.Event{change, accept, accept, change} {
		e.answered(t, e.sealed(t, ev))
		if _, err := e.processor().ProcessLate(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if st := e.reachOf(t, rs, p); !st.ConsentGone(tplOnce) || st.Consents[tplOnce].Left != 0 {
		t.Fatalf("after the reversed pushes: %+v", st.Consents)
	}
	again := consentEvent(p, base, 5, push.SubscribePopup, push.TemplateEvent{TemplateID: tplOnce, Status: "accept", PopupScene: "1"})
	for _, ev := range []push.Event{again, accept, again, change} {
		e.answered(t, e.sealed(t, ev))
		if _, err := e.processor().ProcessLate(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if c := e.reachOf(t, rs, p).Consents[tplOnce]; c.Left != 1 || c.Rejected {
		t.Fatalf("after a newer acceptance and replays: %+v", c)
	}
}

// TestAttackHostileConsentXML: consent events the platform does not
// document are acknowledged (WeChat must not retry them) and record
// nothing they do not say: unknown status strings, a missing TemplateId,
// a list under another event's element; XML that does not parse is
// refused; a huge list records each template once, pushed twice.
func TestAttackHostileConsentXML(t *testing.T) {
	e, rs := plainReachEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	head := func(event string) string {
		return fmt.Sprintf("<xml><ToUserName>gh_test</ToUserName><FromUserName>%s</FromUserName><CreateTime>%d</CreateTime><MsgType>event</MsgType><Event>%s</Event>",
			p.OAOpenID, e.sb.Clock().Now().Unix(), event)
	}
	item := func(tpl, status string) string {
		return "<List><TemplateId>" + tpl + "</TemplateId><SubscribeStatusString>" + status + "</SubscribeStatusString></List>"
	}
	for _, tc := range []struct {
		name, body string
	}{
		{"unknown_statuses", head(push.SubscribePopup) + "<SubscribeMsgPopupEvent>" + item("TplA", "ACCEPT") + item("TplB", "maybe") + item("TplC", "") + item("TplD", "accept ") + "</SubscribeMsgPopupEvent></xml>"},
		{"no_template_id", head(push.SubscribePopup) + "<SubscribeMsgPopupEvent><List><SubscribeStatusString>accept</SubscribeStatusString></List>" + item("", "accept") + "</SubscribeMsgPopupEvent></xml>"},
		{"empty_list", head(push.SubscribeChange) + "<SubscribeMsgChangeEvent></SubscribeMsgChangeEvent></xml>"},
		{"a_sent_event_with_no_msgid", head(push.SubscribeSent) + "<SubscribeMsgSentEvent><List><TemplateId>TplE</TemplateId><ErrorCode>0</ErrorCode><ErrorStatus>success</ErrorStatus></List></SubscribeMsgSentEvent></xml>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.answered(t, e.rawPush(tc.body))
			if cs := e.reachOf(t, rs, p).Consents; len(cs) != 0 {
				t.Fatalf("recorded %+v", cs)
			}
		})
	}

	t.Run("xml_that_does_not_parse", func(t *testing.T) {
		for _, body := range []string{
			`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>` + head(push.SubscribePopup) + "<SubscribeMsgPopupEvent>" + item("&b;", "accept") + "</SubscribeMsgPopupEvent></xml>",
			head(push.SubscribePopup) + "<SubscribeMsgPopupEvent>" + item("TplF", "accept"),
		} {
			if resp, _ := e.h.HTTP(context.Background(), e.rawPush(body)); resp.StatusCode != 400 {
				t.Errorf("answered %d %q", resp.StatusCode, resp.Body)
			}
		}
		if cs := e.reachOf(t, rs, p).Consents; len(cs) != 0 {
			t.Fatalf("recorded %+v", cs)
		}
	})

	t.Run("a_huge_list", func(t *testing.T) {
		q := e.sb.CreatePerson(sandbox.PersonSpec{})
		var b strings.Builder
		b.WriteString(strings.Replace(head(push.SubscribePopup), p.OAOpenID, q.OAOpenID, 1) + "<SubscribeMsgPopupEvent>")
		const n = 50 // a dedup key of the list would pass DynamoDB's 2048 bytes
		for i := range n {
			b.WriteString(item(fmt.Sprintf("Huge%039d", i), "accept"))
		}
		b.WriteString("</SubscribeMsgPopupEvent></xml>")
		if b.Len() > push.MaxBody {
			t.Fatalf("body of %d bytes", b.Len())
		}
		req := e.rawPush(b.String())
		e.answered(t, req)
		e.counter.Counts()
		e.answered(t, req) // WeChat's retry: a duplicate
		if n := e.counter.Counts()["UpdateItem"]; n > 1 {
			t.Fatalf("the retry was handled again (%d updates)", n)
		}
		if strings.Contains(e.logs.String(), "dedup_unavailable") {
			t.Fatal("the event's dedup key was refused")
		}
		cs := e.reachOf(t, rs, q).Consents
		if len(cs) != n {
			t.Fatalf("%d templates recorded, want %d", len(cs), n)
		}
		for id, c := range cs {
			if c.Left != 1 {
				t.Fatalf("%s: %+v", id, c)
			}
		}
	})
}

// TestAttackSentEventBeforeTheLedgerSaysSent: the delivery report of a
// notification comes while the send's entry is still in flight (the
// worker has not settled it SENT): it waits in the retry queue and
// settles the entry once it is SENT. Reported again, or contradicted,
// the entry keeps its first report. A report nobody's send matches is
// dropped once it is old, not retried for ever.
func TestAttackSentEventBeforeTheLedgerSaysSent(t *testing.T) {
	e, _ := plainReachEnv(t)
	ctx := context.Background()
	ledger := notify.NewLedger(e.db, e.table)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	const msgid = "7000000000000000042"
	c, err := ledger.Claim(ctx, "atk-early", "u", time.Now().Add(time.Minute))
	if err != nil || c.State != notify.Claimed {
		t.Fatalf("claim: %+v %v", c, err)
	}
	report := func(status string, age time.Duration) push.Event {
		return push.Event{ToUserName: "gh_test", FromUserName: p.OAOpenID, CreateTime: e.sb.Clock().Now().Add(-age).Unix(), MsgType: "event", Event: push.SubscribeSent,
			Templates: []push.TemplateEvent{{TemplateID: tplOnce, MsgID: msgid, ErrorCode: "0", ErrorStatus: status}}}
	}
	early := report("success", 0)
	resp, _ := e.h.HTTP(ctx, e.sealed(t, early))
	if resp.StatusCode != 200 || resp.Body != "success" || e.queued(t) != 1 {
		t.Fatalf("early report: %d %q, %d queued", resp.StatusCode, resp.Body, e.queued(t))
	}
	if _, failed := e.drain(t); failed != 1 {
		t.Fatalf("the early report did not wait (failed %d)", failed)
	}
	if err := ledger.SettleSent(ctx, "atk-early", c, notify.OASubscribe, oaApp, msgid); err != nil {
		t.Fatal(err)
	}
	if handled, failed := e.drain(t); handled != 1 || failed != 0 {
		t.Fatalf("drain after SENT: handled %d failed %d", handled, failed)
	}
	entry := func() notify.Entry {
		got, _, err := ledger.Get(ctx, "atk-early")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := entry(); got.Status != notify.Delivered {
		t.Fatalf("after the report: %+v", got)
	}
	for _, ev := range []push.Event{early, report("failed:system failed", 0)} {
		if _, err := e.processor().ProcessLate(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := entry(); got.Status != notify.Delivered || got.Report != "success" {
		t.Fatalf("after a repeated and a contradicting report: %+v", got)
	}
	// Nobody's msgid, three minutes old: dropped.
	stray := report("success", 3*time.Minute)
	stray.Templates[0].MsgID = "7000000000000000999"
	if res, err := e.processor().Process(ctx, stray); err != nil || res.Action != "ignored" {
		t.Fatalf("stray report: %+v %v", res, err)
	}
}
