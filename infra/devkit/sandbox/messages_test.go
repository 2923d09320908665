package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// stableTokens hands out each app's stable token from the sandbox itself: a
// test stand-in for shared/tokens, which needs Secrets Manager.
type stableTokens struct{ api string }

func (s stableTokens) Token(ctx context.Context, appid string) (string, error) {
	secret := sandbox.DevMiniProgram.Secret
	if appid == sandbox.DevOfficialAccount.AppID {
		secret = sandbox.DevOfficialAccount.Secret
	}
	t, err := wechat.New(wechat.Options{APIBase: s.api}).StableToken(ctx, appid, secret, false)
	return t.Token, err
}

func (s stableTokens) Refused(context.Context, string, string) (string, error) {
	return "", errors.New("no fresher token")
}

var (
	oa  = sandbox.DevOfficialAccount.AppID
	mp  = sandbox.DevMiniProgram.AppID
	tpl = "oaTemplate" + strings.Repeat("0", 33)
)

func newMessages(t *testing.T) (*sandbox.Sandbox, *wechat.Client, string) {
	t.Helper()
	sb := sandbox.New(sandbox.DefaultConfig())
	sb.Clock().Set(time.Date(2026, 3, 2, 10, 0, 0, 0, time.FixedZone("CST", 8*3600)))
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return sb, wechat.New(wechat.Options{APIBase: srv.URL, Tokens: stableTokens{srv.URL}}), srv.URL
}

// reports collects the pushes the sandbox sends.
type reports struct {
	mu     sync.Mutex
	events []push.Event
}

func (r *reports) target(t *testing.T, sb *sandbox.Sandbox) {
	recv, _ := push.NewReceiver("pushtoken", "", oa, 0)
	recv.Now = sb.Clock().Now
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		q := req.URL.Query()
		e, err := recv.Open(push.Query{Signature: q.Get("signature"), Timestamp: q.Get("timestamp"), Nonce: q.Get("nonce")}, body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
		io.WriteString(w, "success")
	}))
	t.Cleanup(srv.Close)
	if err := sb.SetPushTarget(sandbox.PushTarget{URL: srv.URL, Token: "pushtoken", Mode: push.Plaintext}); err != nil {
		t.Fatal(err)
	}
}

func code(err error) int {
	var we *wechat.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

func TestTemplateSend(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	var r reports
	r.target(t, sb)
	fan := sb.CreatePerson(sandbox.PersonSpec{})
	stranger := sb.CreatePerson(sandbox.PersonSpec{})
	sb.Follow(ctx, fan.ID, "")
	r.events = nil
	msg := func(to string) wechat.TemplateMessage {
		return wechat.TemplateMessage{ToUser: to, TemplateID: tpl, Data: map[string]string{"thing1": strings.Repeat("长", 25), "time2": "15:01"}}
	}
	msgid, err := wc.SendTemplate(ctx, oa, msg(fan.OAOpenID))
	if err != nil || msgid == "" {
		t.Fatalf("send: %q %v", msgid, err)
	}
	inbox, _ := sb.Inbox(fan.ID)
	if len(inbox) != 1 || inbox[0].Channel != "template" || inbox[0].Data["thing1"] != strings.Repeat("长", 20) {
		t.Fatalf("inbox = %+v (lines are cut at 20 characters)", inbox)
	}
	_, err = wc.SendTemplate(ctx, oa, msg(stranger.OAOpenID))
	var we *wechat.Error
	if !errors.As(err, &we) || we.Code != 43004 || we.Message != "require subscribe" || we.RID == "" || wechat.ClassOf(err) != wechat.ClassUserState {
		t.Fatalf("non-follower: %v", err)
	}
	for name, tc := range map[string]struct {
		appid string
		m     wechat.TemplateMessage
		want  int
	}{
		"unknown_openid":   {oa, wechat.TemplateMessage{ToUser: "oNobody", TemplateID: tpl, Data: map[string]string{"a": "b"}}, 40003},
		"bad_template":     {oa, wechat.TemplateMessage{ToUser: fan.OAOpenID, TemplateID: "nope", Data: map[string]string{"a": "b"}}, 40037},
		"mini_program_tok": {mp, msg(fan.OAOpenID), 48001},
	} {
		if _, err := wc.SendTemplate(ctx, tc.appid, tc.m); code(err) != tc.want {
			t.Errorf("%s: %v, want %d", name, err, tc.want)
		}
	}
	// client_msg_id: the same one within 10 minutes sends nothing new.
	m := msg(fan.OAOpenID)
	m.ClientMsgID = "c1"
	first, _ := wc.SendTemplate(ctx, oa, m)
	again, _ := wc.SendTemplate(ctx, oa, m)
	if first == "" || again != first {
		t.Fatalf("client_msg_id resend: %q then %q", first, again)
	}
	sb.Clock().Advance(11 * time.Minute)
	later, _ := wc.SendTemplate(ctx, oa, m)
	if later == first {
		t.Fatal("client_msg_id dedup outlived its 10 minutes")
	}
	if inbox, _ := sb.Inbox(fan.ID); len(inbox) != 3 {
		t.Fatalf("inbox has %d messages, want 3", len(inbox))
	}
	// Reports wait for PushTemplateReports, one per message sent.
	if n := sb.PendingTemplateReports(); n != 3 {
		t.Fatalf("%d pending reports", n)
	}
	ds, err := sb.PushTemplateReports(ctx)
	if err != nil || len(ds) != 3 || len(r.events) != 3 {
		t.Fatalf("pushed %d (%v), received %d", len(ds), err, len(r.events))
	}
	if e := r.events[0]; e.Event != push.TemplateFinish || e.MsgID != msgid || e.Status != "success" || e.FromUserName != fan.OAOpenID {
		t.Fatalf("report = %+v", e)
	}
	// A person refusing the account's messages: accepted, not delivered.
	sb.RefuseTemplates(fan.ID, true)
	if _, err := wc.SendTemplate(ctx, oa, msg(fan.OAOpenID)); err != nil {
		t.Fatal(err)
	}
	sb.PushTemplateReports(ctx)
	if e := r.events[3]; e.Status != "failed:user block" {
		t.Fatalf("report = %+v", e)
	}
	if inbox, _ := sb.Inbox(fan.ID); len(inbox) != 3 {
		t.Fatal("a refused message reached the inbox")
	}
}

func TestTemplateQuota(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	var r reports
	r.target(t, sb)
	fan := sb.CreatePerson(sandbox.PersonSpec{})
	sb.Follow(ctx, fan.ID, "")
	sb.SetTemplateQuota(2)
	m := wechat.TemplateMessage{ToUser: fan.OAOpenID, TemplateID: tpl, Data: map[string]string{"a": "b"}}
	for i := range 2 {
		if _, err := wc.SendTemplate(ctx, oa, m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if _, err := wc.SendTemplate(ctx, oa, m); code(err) != 45009 || wechat.ClassOf(err) != wechat.ClassQuota {
		t.Fatalf("past the quota: %v", err)
	}
	sb.Clock().Advance(14*time.Hour + time.Minute) // past midnight Beijing time
	if _, err := wc.SendTemplate(ctx, oa, m); err != nil {
		t.Fatalf("the next day: %v", err)
	}
}

func TestSubscribeSend(t *testing.T) {
	sb, wc, base := newMessages(t)
	ctx := context.Background()
	p := sb.CreatePerson(sandbox.PersonSpec{})
	m := wechat.SubscribeMessage{ToUser: p.MPOpenID, TemplateID: tpl, Page: "pages/o?id=1", Data: map[string]string{"thing1": "Blue kettle", "phrase2": "已发货"}}
	if err := wc.SendSubscribe(ctx, mp, m); code(err) != 43101 || wechat.ClassOf(err) != wechat.ClassUserState {
		t.Fatalf("without consent: %v", err)
	}
	// Consent through the control API, as the devstack's phone view does.
	resp, err := http.Post(base+"/sandbox/people/"+p.ID+"/consent", "application/json", strings.NewReader(`{"template_id":"`+tpl+`"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("consent: %v %v", err, resp.Status)
	}
	if err := wc.SendSubscribe(ctx, mp, m); err != nil {
		t.Fatalf("with consent: %v", err)
	}
	if err := wc.SendSubscribe(ctx, mp, m); code(err) != 43101 {
		t.Fatalf("the consent was not used up: %v", err)
	}
	sb.GrantConsent(p.ID, tpl)
	for name, tc := range map[string]struct {
		mutate func(*wechat.SubscribeMessage)
		want   int
		field  string
	}{
		"too_long":     {func(m *wechat.SubscribeMessage) { m.Data = map[string]string{"thing3": strings.Repeat("x", 21)} }, 47003, "data.thing3"},
		"not_a_phrase": {func(m *wechat.SubscribeMessage) { m.Data = map[string]string{"phrase1": "shipped"} }, 47003, "data.phrase1"},
		"empty_value":  {func(m *wechat.SubscribeMessage) { m.Data = map[string]string{"thing1": ""} }, 47003, "data.thing1"},
		"bad_page":     {func(m *wechat.SubscribeMessage) { m.Page = "https://example.com/" }, 41030, ""},
		"bad_template": {func(m *wechat.SubscribeMessage) { m.TemplateID = "x" }, 40037, ""},
		"unknown_user": {func(m *wechat.SubscribeMessage) { m.ToUser = "oNobody" }, 40003, ""},
	} {
		mm := m
		tc.mutate(&mm)
		err := wc.SendSubscribe(ctx, mp, mm)
		var we *wechat.Error
		if !errors.As(err, &we) || we.Code != tc.want || !strings.Contains(we.Message, tc.field) {
			t.Errorf("%s: %v, want %d naming %q", name, err, tc.want, tc.field)
		}
	}
	if n := sb.Consents(p.ID, tpl); n != 1 {
		t.Fatalf("refused sends used the consent: %d left", n)
	}
	if err := wc.SendSubscribe(ctx, oa, m); code(err) != 48001 {
		t.Fatalf("with the OA's token: %v", err)
	}
	// The inbox, oldest first, over the control API.
	sb.Clock().Advance(time.Minute)
	if err := wc.SendSubscribe(ctx, mp, wechat.SubscribeMessage{ToUser: p.MPOpenID, TemplateID: tpl, Data: map[string]string{"thing1": "second"}}); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(base + "/sandbox/people/" + p.ID + "/inbox")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var inbox []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&inbox); err != nil || len(inbox) != 2 {
		t.Fatalf("inbox: %v %v", err, inbox)
	}
	if inbox[0]["channel"] != "subscribe" || inbox[0]["template_id"] != tpl || inbox[0]["data"].(map[string]any)["phrase2"] != "已发货" ||
		inbox[1]["data"].(map[string]any)["thing1"] != "second" || inbox[0]["at"] == nil {
		t.Fatalf("inbox = %v", inbox)
	}
	if resp, _ := http.Get(base + "/sandbox/people/p99/inbox"); resp.StatusCode != 404 {
		t.Fatalf("unknown person: %d", resp.StatusCode)
	}
}
