package sandbox_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
)

const templatePath = "/cgi-bin/message/template/send"

// TestLostAnswer checks that a lost answer is a call the platform performed
// and never answered: the message reaches the phone while the client sees
// its connection drop.
func TestLostAnswer(t *testing.T) {
	ctx := context.Background()
	// fan follows the OA and has a message ready for them.
	var base string // the sandbox's URL, set by setup
	setup := func(t *testing.T) (*sandbox.Sandbox, *wechat.Client, sandbox.Person, wechat.TemplateMessage) {
		sb, wc, url := newMessages(t)
		base = url
		var r reports
		r.target(t, sb)
		fan := sb.CreatePerson(sandbox.PersonSpec{})
		if _, err := sb.Follow(ctx, fan.ID, ""); err != nil {
			t.Fatal(err)
		}
		return sb, wc, fan, wechat.TemplateMessage{ToUser: fan.OAOpenID, TemplateID: tpl, Data: map[string]string{"thing1": "Blue kettle"}}
	}
	inboxLen := func(t *testing.T, sb *sandbox.Sandbox, id string) int {
		t.Helper()
		inbox, err := sb.Inbox(id)
		if err != nil {
			t.Fatal(err)
		}
		return len(inbox)
	}

	t.Run("template_send_delivers_while_the_client_gets_an_error", func(t *testing.T) {
		sb, wc, fan, m := setup(t)
		if err := sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, LostAnswer: true}); err != nil {
			t.Fatal(err)
		}
		msgid, err := wc.SendTemplate(ctx, oa, m)
		var we *wechat.Error
		if err == nil || errors.As(err, &we) || wechat.ClassOf(err) != wechat.ClassTransient {
			t.Fatalf("send with a lost answer: msgid %q, error %v; want a transient transport error", msgid, err)
		}
		if n := inboxLen(t, sb, fan.ID); n != 1 {
			t.Fatalf("inbox has %d messages, want 1: the platform performs the call", n)
		}
		if n := sb.PendingTemplateReports(); n != 1 {
			t.Fatalf("%d delivery reports pending, want 1", n)
		}
	})

	t.Run("subscribe_send_uses_the_consent_and_delivers", func(t *testing.T) {
		sb, wc, _ := newMessages(t)
		p := sb.CreatePerson(sandbox.PersonSpec{})
		sb.GrantConsent(p.ID, tpl)
		sb.GrantConsent(p.ID, tpl)
		sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/subscribe/send", Count: 1, LostAnswer: true})
		m := wechat.SubscribeMessage{ToUser: p.MPOpenID, TemplateID: tpl, Data: map[string]string{"thing1": "Blue kettle"}}
		if err := wc.SendSubscribe(ctx, mp, m); err == nil || wechat.ClassOf(err) != wechat.ClassTransient {
			t.Fatalf("send with a lost answer: %v, want a transient transport error", err)
		}
		if n := inboxLen(t, sb, p.ID); n != 1 {
			t.Fatalf("inbox has %d messages, want 1", n)
		}
		if n := sb.Consents(p.ID, tpl); n != 1 {
			t.Fatalf("%d consents left, want 1: the lost send used one", n)
		}
	})

	t.Run("count_loses_that_many_answers_then_answers_again", func(t *testing.T) {
		sb, wc, fan, m := setup(t)
		sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 2, LostAnswer: true})
		for i := range 2 {
			if _, err := wc.SendTemplate(ctx, oa, m); err == nil {
				t.Fatalf("send %d answered; want its answer lost", i+1)
			}
		}
		if msgid, err := wc.SendTemplate(ctx, oa, m); err != nil || msgid == "" {
			t.Fatalf("third send: %q %v, want an answer", msgid, err)
		}
		if n := inboxLen(t, sb, fan.ID); n != 3 {
			t.Fatalf("inbox has %d messages, want 3", n)
		}
		if n := sb.Calls(templatePath); n != 3 {
			t.Fatalf("Calls = %d, want 3", n)
		}
	})

	t.Run("latency_holds_the_connection_before_it_closes", func(t *testing.T) {
		const hold = 300 * time.Millisecond
		sb, wc, fan, m := setup(t)
		sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, Latency: hold, LostAnswer: true})
		began := time.Now()
		_, err := wc.SendTemplate(ctx, oa, m)
		if took := time.Since(began); err == nil || took < hold {
			t.Fatalf("send failed after %v with %v; want an error after at least %v", took, err, hold)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%v: want a dropped connection, not a timeout", err)
		}
		if n := inboxLen(t, sb, fan.ID); n != 1 {
			t.Fatalf("inbox has %d messages, want 1", n)
		}
	})

	t.Run("a_client_timeout_shorter_than_the_latency_times_out", func(t *testing.T) {
		sb, _, fan, m := setup(t)
		sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, Latency: 5 * time.Second, LostAnswer: true})
		impatient := wechat.New(wechat.Options{APIBase: base, Tokens: stableTokens{base}, HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}})
		began := time.Now()
		_, err := impatient.SendTemplate(ctx, oa, m)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("send: %v, want the client's timeout", err)
		}
		if took := time.Since(began); took > 2*time.Second {
			t.Fatalf("the timeout came after %v", took)
		}
		if n := inboxLen(t, sb, fan.ID); n != 1 {
			t.Fatalf("inbox has %d messages, want 1: the call was performed before the client gave up", n)
		}
	})

	t.Run("control_api_arms_a_lost_answer", func(t *testing.T) {
		sb, wc, fan, m := setup(t)
		resp, err := http.Post(base+"/sandbox/faults", "application/json",
			strings.NewReader(`{"path":"`+templatePath+`","lost_answer":true,"count":1,"latency_ms":10}`))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST /sandbox/faults: %v %v", resp.Status, err)
		}
		resp.Body.Close()
		if _, err := wc.SendTemplate(ctx, oa, m); err == nil {
			t.Fatal("send answered; want its answer lost")
		}
		if n := inboxLen(t, sb, fan.ID); n != 1 {
			t.Fatalf("inbox has %d messages, want 1", n)
		}
		resp, _ = http.Post(base+"/sandbox/faults", "application/json",
			strings.NewReader(`{"path":"`+templatePath+`","lost_answer":true,"errcode":-1}`))
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("a lost answer with an errcode: %s, want 400", resp.Status)
		}
		resp.Body.Close()
	})

	t.Run("a_lost_answer_takes_no_errcode", func(t *testing.T) {
		sb := sandbox.New(sandbox.DefaultConfig())
		if err := sb.InjectFault(sandbox.Fault{Path: templatePath, LostAnswer: true}); err != nil {
			t.Fatalf("a lost answer alone: %v", err)
		}
		err := sb.InjectFault(sandbox.Fault{Path: templatePath, LostAnswer: true, ErrCode: -1})
		if !errors.Is(err, sandbox.ErrLostAnswerErrCode) {
			t.Fatalf("a lost answer with an errcode: %v, want ErrLostAnswerErrCode", err)
		}
	})
}
