package handler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"wxbridge/shared/notify"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/wechat/push"
)

// TestDeliveryReportsReachTheLedger: TEMPLATESENDJOBFINISH pushes turn the
// SENT ledger entry with that msgid into DELIVERED or BLOCKED, including
// two reports for one person in the same second; a msgid wxbridge did not
// send is acknowledged and changes nothing.
func TestDeliveryReportsReachTheLedger(t *testing.T) {
	e := newEnv(t, push.Safe)
	ctx := context.Background()
	// The function reads and moves the entries; the test records them as
	// the send-worker does.
	e.processor().(*pushevent.Processor).Reports = notify.NewLedger(e.fn.DB, e.table)
	ledger := notify.NewLedger(e.db, e.table)
	// Two template messages the send-worker sent, recorded as it does.
	msgids := []string{"3557254367693750277", "3557254367693750278"}
	for i, msgid := range msgids {
		sendAndRecord(t, ledger, fmt.Sprint("job-", i), msgid)
	}
	now := e.sb.Clock().Now().Unix()
	for i, status := range []string{"success", "failed:user block"} {
		ev := push.Event{ToUserName: "gh", FromUserName: "o1", CreateTime: now, MsgType: "event", Event: push.TemplateFinish, MsgID: msgids[i], Status: status}
		resp, _ := e.h.HTTP(ctx, e.sealed(t, ev))
		if resp.StatusCode != 200 || resp.Body != "success" {
			t.Fatalf("report %d: %d %q", i, resp.StatusCode, resp.Body)
		}
	}
	for i, want := range []notify.Status{notify.Delivered, notify.Blocked} {
		got, _, err := ledger.Get(ctx, fmt.Sprint("job-", i))
		if err != nil || got.Status != want {
			t.Fatalf("job-%d: %+v %v, want %s", i, got, err, want)
		}
	}
	before := e.items(t)
	ev := push.Event{ToUserName: "gh", FromUserName: "o2", CreateTime: now, MsgType: "event", Event: push.TemplateFinish, MsgID: "1", Status: "success"}
	if resp, _ := e.h.HTTP(ctx, e.sealed(t, ev)); resp.Body != "success" {
		t.Fatalf("foreign report: %q", resp.Body)
	}
	if e.items(t) != before+1 { // its dedup record only
		t.Fatal("a foreign report changed the ledger")
	}

	// A report can arrive before its send is recorded (the ledger's index
	// is eventually consistent): it waits in the retry queue, and reaches
	// the ledger from there.
	early := push.Event{ToUserName: "gh", FromUserName: "o3", CreateTime: now, MsgType: "event", Event: push.TemplateFinish, MsgID: "3557254367693750299", Status: "success"}
	if resp, _ := e.h.HTTP(ctx, e.sealed(t, early)); resp.Body != "success" {
		t.Fatalf("early report: %q", resp.Body)
	}
	sendAndRecord(t, ledger, "job-early", early.MsgID)
	e.drain(t)
	if got, _, _ := ledger.Get(ctx, "job-early"); got.Status != notify.Delivered {
		t.Fatalf("early report: job = %+v", got)
	}
	// An old report that matches nothing is someone else's: ignored.
	old := push.Event{ToUserName: "gh", FromUserName: "o4", CreateTime: now - 600, MsgType: "event", Event: push.TemplateFinish, MsgID: "2", Status: "success"}
	queued := e.queued(t)
	if resp, _ := e.h.HTTP(ctx, e.sealed(t, old)); resp.Body != "success" || e.queued(t) != queued {
		t.Fatalf("old foreign report: %q, queued %d -> %d", resp.Body, queued, e.queued(t))
	}
}

// sendAndRecord writes a SENT entry for a template message through the
// ledger's own claim and settle, as the send-worker does.
func sendAndRecord(t *testing.T, l *notify.Ledger, jobID, msgid string) {
	t.Helper()
	ctx := context.Background()
	c, err := l.Claim(ctx, jobID, "u", time.Now().Add(time.Minute))
	if err != nil || c.State != notify.Claimed {
		t.Fatalf("claim: %+v %v", c, err)
	}
	if err := l.SettleSent(ctx, jobID, c, notify.Template, oaApp, msgid); err != nil {
		t.Fatal(err)
	}
}
