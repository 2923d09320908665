package sandbox_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
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

// pushed is a push as the platform's XML spells it, read with encoding/xml
// on its own: the sandbox's rendering is checked against the documented
// element names, not against wxbridge's parser.
type pushed struct {
	FromUserName string
	CreateTime   int64
	MsgType      string
	Event        string
	EventKey     string
	Content      string
	MsgId        string
	Popup        []listItem `xml:"SubscribeMsgPopupEvent>List"`
	Change       []listItem `xml:"SubscribeMsgChangeEvent>List"`
	Sent         []listItem `xml:"SubscribeMsgSentEvent>List"`
}

type listItem struct {
	TemplateId            string
	SubscribeStatusString string
	PopupScene            string
	MsgID                 string
	ErrorCode             int
	ErrorStatus           string
}

// xmlPushes receives the sandbox's pushes in mode, checks each signature
// (and decrypts) with shared/wechat/push, and keeps the XML inside.
type xmlPushes struct {
	mu  sync.Mutex
	got []pushed
}

const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

func (x *xmlPushes) target(t *testing.T, sb *sandbox.Sandbox, mode push.Mode) {
	t.Helper()
	key := ""
	var c *push.Cipher
	if mode != push.Plaintext {
		key = aesKey
		c, _ = push.NewCipher(aesKey, oa)
	}
	recv, err := push.NewReceiver("pushtoken", key, oa, 0)
	if err != nil {
		t.Fatal(err)
	}
	recv.Now = sb.Clock().Now
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		q := req.URL.Query()
		if _, err := recv.Open(push.Query{Signature: q.Get("signature"), Timestamp: q.Get("timestamp"), Nonce: q.Get("nonce"),
			EncryptType: q.Get("encrypt_type"), MsgSignature: q.Get("msg_signature")}, body); err != nil {
			t.Errorf("push does not open: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		msg := body
		if c != nil {
			var env struct{ Encrypt string }
			xml.Unmarshal(body, &env)
			if msg, err = c.Decrypt(env.Encrypt); err != nil {
				t.Errorf("decrypt: %v", err)
			}
		}
		var p pushed
		if err := xml.Unmarshal(msg, &p); err != nil {
			t.Errorf("push is not XML: %v: %s", err, msg)
		}
		if q.Get("openid") != p.FromUserName {
			t.Errorf("openid query %q, push from %q", q.Get("openid"), p.FromUserName)
		}
		x.mu.Lock()
		x.got = append(x.got, p)
		x.mu.Unlock()
		io.WriteString(w, "success")
	}))
	t.Cleanup(srv.Close)
	if err := sb.SetPushTarget(sandbox.PushTarget{URL: srv.URL, Token: "pushtoken", EncodingAESKey: key, Mode: mode}); err != nil {
		t.Fatal(err)
	}
}

// last returns the latest push.
func (x *xmlPushes) last(t *testing.T) pushed {
	t.Helper()
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.got) == 0 {
		t.Fatal("nothing was pushed")
	}
	return x.got[len(x.got)-1]
}

var oaTpl = "oaSubscribe" + strings.Repeat("0", 32)

func oaMessage(to string) wechat.OASubscribeMessage {
	return wechat.OASubscribeMessage{ToUser: to, TemplateID: oaTpl, Page: "https://shop.example.com/o/1",
		Data: map[string]string{"thing1": "Blue kettle", "phrase2": "已发货"}}
}

// TestOASubscribeConsents: one-time consents are used up one send each, a
// long-term one is not, a revoked template answers 43101 again; the popup
// and the settings change are pushed as the platform's XML, in every mode.
func TestOASubscribeConsents(t *testing.T) {
	for _, mode := range []push.Mode{push.Plaintext, push.Compatible, push.Safe} {
		t.Run(string(mode), func(t *testing.T) {
			sb, wc, _ := newMessages(t)
			ctx := context.Background()
			var x xmlPushes
			x.target(t, sb, mode)
			p := sb.CreatePerson(sandbox.PersonSpec{}) // subscribe notifications need consent, not a follow

			_, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID))
			if !errors.Is(err, wechat.ErrNoConsent) || wechat.ClassOf(err) != wechat.ClassUserState || wechat.RID(err) == "" {
				t.Fatalf("without consent: %v", err)
			}

			// Two one-time acceptances and a rejection of another template in one popup.
			other := "oaOther" + strings.Repeat("1", 36)
			d, err := sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaTpl}, sandbox.OAPopup{TemplateID: other, Reject: true})
			if err != nil || !d.Delivered {
				t.Fatalf("popup: %+v %v", d, err)
			}
			e := x.last(t)
			if e.MsgType != "event" || e.Event != "subscribe_msg_popup_event" || e.FromUserName != p.OAOpenID || len(e.Popup) != 2 ||
				e.Popup[0] != (listItem{TemplateId: oaTpl, SubscribeStatusString: "accept", PopupScene: "1"}) ||
				e.Popup[1].TemplateId != other || e.Popup[1].SubscribeStatusString != "reject" {
				t.Fatalf("popup event = %+v", e)
			}
			sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaTpl})
			if left, long := sb.OAConsents(p.ID, oaTpl); left != 2 || long {
				t.Fatalf("after two acceptances: %d left, long-term %v", left, long)
			}
			for i := range 2 {
				if msgid, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID)); err != nil || msgid == "" {
					t.Fatalf("send %d: %q %v", i, msgid, err)
				}
			}
			if _, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID)); !errors.Is(err, wechat.ErrNoConsent) {
				t.Fatalf("one-time consents not used up: %v", err)
			}
			if _, err := wc.SendOASubscribe(ctx, oa, wechat.OASubscribeMessage{ToUser: p.OAOpenID, TemplateID: other, Data: map[string]string{"thing1": "x"}}); !errors.Is(err, wechat.ErrNoConsent) {
				t.Fatalf("a rejected template: %v", err)
			}

			// Long-term: sends do not use it up, until the person turns it off.
			sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaTpl, LongTerm: true})
			for i := range 3 {
				if _, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID)); err != nil {
					t.Fatalf("long-term send %d: %v", i, err)
				}
			}
			if _, long := sb.OAConsents(p.ID, oaTpl); !long {
				t.Fatal("the long-term consent was used up")
			}
			if _, err := sb.OARevoke(ctx, p.ID, oaTpl); err != nil {
				t.Fatal(err)
			}
			if e := x.last(t); e.Event != "subscribe_msg_change_event" || len(e.Change) != 1 || e.Change[0].TemplateId != oaTpl || e.Change[0].SubscribeStatusString != "reject" {
				t.Fatalf("change event = %+v", e)
			}
			if _, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID)); !errors.Is(err, wechat.ErrNoConsent) {
				t.Fatalf("after revoking: %v", err)
			}
			inbox, _ := sb.Inbox(p.ID)
			if len(inbox) != 5 || inbox[0].Channel != sandbox.ChannelOASubscribe || inbox[0].TemplateID != oaTpl || inbox[0].Data["phrase2"] != "已发货" || inbox[0].MsgID == "" {
				t.Fatalf("inbox = %+v", inbox)
			}
		})
	}
}

// TestOASubscribeSentEvents: every accepted bizsend is reported by a
// subscribe_msg_sent_event carrying the answer's msgid; a person who
// refuses the account's messages gets nothing and the report says so.
func TestOASubscribeSentEvents(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	var x xmlPushes
	x.target(t, sb, push.Plaintext)
	p := sb.CreatePerson(sandbox.PersonSpec{})
	sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaTpl, LongTerm: true})
	msgid, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID))
	if err != nil || msgid == "" {
		t.Fatalf("send: %q %v", msgid, err)
	}
	if n := sb.PendingTemplateReports(); n != 1 {
		t.Fatalf("%d reports wait, want 1", n)
	}
	ds, err := sb.PushTemplateReports(ctx)
	if err != nil || len(ds) != 1 || ds[0].List[0].MsgID != msgid {
		t.Fatalf("pushed %+v, %v", ds, err)
	}
	e := x.last(t)
	if e.Event != "subscribe_msg_sent_event" || len(e.Sent) != 1 ||
		e.Sent[0] != (listItem{TemplateId: oaTpl, MsgID: msgid, ErrorCode: 0, ErrorStatus: "success"}) {
		t.Fatalf("sent event = %+v", e)
	}

	sb.RefuseTemplates(p.ID, true)
	blocked, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID))
	if err != nil {
		t.Fatalf("the platform accepts the send of a refusing person: %v", err)
	}
	sb.PushTemplateReports(ctx)
	if e := x.last(t); len(e.Sent) != 1 || e.Sent[0].MsgID != blocked || e.Sent[0].ErrorCode != sandbox.SentUserBlockCode || e.Sent[0].ErrorStatus != "failed:user block" {
		t.Fatalf("sent event = %+v", e)
	}
	if inbox, _ := sb.Inbox(p.ID); len(inbox) != 1 {
		t.Fatalf("a refused notification reached the inbox: %+v", inbox)
	}

	// As documented, the answer may carry no msgid at all.
	sb.SetBizsendMsgID(false)
	sb.RefuseTemplates(p.ID, false)
	if msgid, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID)); err != nil || msgid != "" {
		t.Fatalf("without msgid: %q %v", msgid, err)
	}
	sb.PushTemplateReports(ctx)
	if e := x.last(t); len(e.Sent) != 1 || e.Sent[0].MsgID == "" {
		t.Fatalf("the sent event still names the msgid: %+v", e)
	}
}

// TestOASubscribeRefusals: what bizsend refuses, and that a refusal uses
// no consent.
func TestOASubscribeRefusals(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	var x xmlPushes
	x.target(t, sb, push.Plaintext)
	p := sb.CreatePerson(sandbox.PersonSpec{})
	sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaTpl})
	for name, tc := range map[string]struct {
		appid  string
		mutate func(*wechat.OASubscribeMessage)
		want   int
		class  wechat.Class
	}{
		"thing_too_long":  {oa, func(m *wechat.OASubscribeMessage) { m.Data = map[string]string{"thing1": strings.Repeat("x", 21)} }, 47003, wechat.ClassSender},
		"page_not_a_url":  {oa, func(m *wechat.OASubscribeMessage) { m.Page = "pages/o?id=1" }, 47003, wechat.ClassSender},
		"bad_template":    {oa, func(m *wechat.OASubscribeMessage) { m.TemplateID = "nope" }, 40037, wechat.ClassSender},
		"unknown_openid":  {oa, func(m *wechat.OASubscribeMessage) { m.ToUser = "oNobody" }, 40003, wechat.ClassUserState},
		"mp_openid":       {oa, func(m *wechat.OASubscribeMessage) { m.ToUser = p.MPOpenID }, 40003, wechat.ClassUserState},
		"mini_program_ok": {mp, func(*wechat.OASubscribeMessage) {}, 48001, wechat.ClassConfig},
	} {
		m := oaMessage(p.OAOpenID)
		tc.mutate(&m)
		_, err := wc.SendOASubscribe(ctx, tc.appid, m)
		if code(err) != tc.want || wechat.ClassOf(err) != tc.class {
			t.Errorf("%s: %v, want %d (%s)", name, err, tc.want, tc.class)
		}
	}
	if left, _ := sb.OAConsents(p.ID, oaTpl); left != 1 {
		t.Fatalf("refused sends used the consent: %d left", left)
	}
	// A lost answer: the send took effect (the consent is gone, the inbox
	// has it) though the client saw no answer.
	sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/subscribe/bizsend", LostAnswer: true, Count: 1})
	_, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID))
	if err == nil || errors.Is(err, wechat.ErrNotSent) || wechat.ClassOf(err) != wechat.ClassTransient {
		t.Fatalf("lost answer: %v", err)
	}
	if left, _ := sb.OAConsents(p.ID, oaTpl); left != 0 {
		t.Fatal("a lost answer's send did not use the consent")
	}
	if inbox, _ := sb.Inbox(p.ID); len(inbox) != 1 {
		t.Fatalf("inbox = %+v", inbox)
	}
}

// TestCustomerServiceWindow: the person's message opens 5 messages for 48
// hours on the sandbox clock; a follow, a scan or a menu click 3 for a
// minute; 45015 outside, 45047 past the allowance.
func TestCustomerServiceWindow(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	var x xmlPushes
	x.target(t, sb, push.Plaintext)
	fan := sb.CreatePerson(sandbox.PersonSpec{})
	text := func(to, s string) wechat.CustomMessage { return wechat.CustomMessage{ToUser: to, Text: s} }

	if _, err := sb.Message(ctx, fan.ID, "hello"); !errors.Is(err, sandbox.ErrNotFollowing) {
		t.Fatalf("a non-follower wrote: %v", err)
	}
	if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "hi")); code(err) != 43004 || wechat.ClassOf(err) != wechat.ClassUserState {
		t.Fatalf("to a non-follower: %v", err)
	}
	sb.Follow(ctx, fan.ID, "")
	sb.Clock().Advance(sandbox.EventWindow) // the follow's allowance is over
	err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "hi"))
	if !errors.Is(err, wechat.ErrWindowClosed) || wechat.ClassOf(err) != wechat.ClassUserState || wechat.RID(err) == "" {
		t.Fatalf("no interaction: %v", err)
	}

	if _, err := sb.Message(ctx, fan.ID, "Is my order <8812> shipped?"); err != nil {
		t.Fatal(err)
	}
	e := x.last(t)
	if e.MsgType != "text" || e.Content != "Is my order <8812> shipped?" || e.MsgId == "" || e.Event != "" || e.FromUserName != fan.OAOpenID {
		t.Fatalf("text message = %+v", e)
	}
	sb.Clock().Advance(sandbox.MessageWindow - time.Minute)
	for i := range sandbox.MessageAllowance {
		if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "reply")); err != nil {
			t.Fatalf("reply %d inside the window: %v", i, err)
		}
	}
	if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "one more")); !errors.Is(err, wechat.ErrResponseLimit) || wechat.ClassOf(err) != wechat.ClassUserState {
		t.Fatalf("past the allowance: %v", err)
	}
	sb.Message(ctx, fan.ID, "thanks")
	if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "you're welcome")); err != nil {
		t.Fatalf("a new message opens a new allowance: %v", err)
	}
	sb.Clock().Advance(sandbox.MessageWindow)
	if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "late")); !errors.Is(err, wechat.ErrWindowClosed) {
		t.Fatalf("48 hours later: %v", err)
	}

	// A menu click: 3 for a minute.
	if _, err := sb.MenuClick(ctx, fan.ID, "ORDERS"); err != nil {
		t.Fatal(err)
	}
	if e := x.last(t); e.Event != "CLICK" || e.EventKey != "ORDERS" {
		t.Fatalf("click = %+v", e)
	}
	for i := range sandbox.EventAllowance {
		if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "menu")); err != nil {
			t.Fatalf("reply %d to a click: %v", i, err)
		}
	}
	if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "menu")); !errors.Is(err, wechat.ErrResponseLimit) {
		t.Fatalf("past a click's allowance: %v", err)
	}
	inbox, _ := sb.Inbox(fan.ID)
	if len(inbox) != sandbox.MessageAllowance+1+sandbox.EventAllowance || inbox[0].Channel != sandbox.ChannelCustomerService || inbox[0].Text != "reply" {
		t.Fatalf("inbox = %+v", inbox)
	}
	// Unfollowing closes everything.
	sb.MenuClick(ctx, fan.ID, "ORDERS")
	sb.Unfollow(ctx, fan.ID)
	sb.Follow(ctx, fan.ID, "")
	sb.Clock().Advance(sandbox.EventWindow)
	if err := wc.SendCustom(ctx, oa, text(fan.OAOpenID, "x")); !errors.Is(err, wechat.ErrWindowClosed) {
		t.Fatalf("after unfollowing and following a minute ago: %v", err)
	}
}

// TestCustomerServiceMessages: a mini-program card, what custom/send
// refuses, and the client's own checks, which make no call.
func TestCustomerServiceMessages(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	var x xmlPushes
	x.target(t, sb, push.Plaintext)
	fan := sb.CreatePerson(sandbox.PersonSpec{})
	sb.Follow(ctx, fan.ID, "")
	sb.Message(ctx, fan.ID, "hi")
	card := &wechat.MiniProgramPage{Title: "Order 8812", AppID: mp, PagePath: "pages/o?id=8812", ThumbMediaID: "MEDIA1"}
	if err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: fan.OAOpenID, MiniProgramPage: card}); err != nil {
		t.Fatal(err)
	}
	inbox, _ := sb.Inbox(fan.ID)
	if len(inbox) != 1 || inbox[0].Card == nil || *inbox[0].Card != (sandbox.MiniProgramCard{Title: "Order 8812", AppID: mp, PagePath: "pages/o?id=8812", ThumbMediaID: "MEDIA1"}) {
		t.Fatalf("inbox = %+v", inbox)
	}
	if err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: fan.OAOpenID, Text: strings.Repeat("字", 683)}); code(err) != 45002 || wechat.ClassOf(err) != wechat.ClassSender {
		t.Fatalf("2049 bytes: %v", err)
	}
	if err := wc.SendCustom(ctx, mp, wechat.CustomMessage{ToUser: fan.OAOpenID, Text: "x"}); code(err) != 48001 {
		t.Fatalf("with the mini program's token: %v", err)
	}
	if err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: "oNobody", Text: "x"}); code(err) != 40003 {
		t.Fatalf("unknown openid: %v", err)
	}
	before := sb.Calls("/cgi-bin/message/custom/send")
	for name, m := range map[string]wechat.CustomMessage{
		"neither": {ToUser: fan.OAOpenID},
		"both":    {ToUser: fan.OAOpenID, Text: "x", MiniProgramPage: card},
		"no_user": {Text: "x"},
	} {
		if err := wc.SendCustom(ctx, oa, m); err == nil || code(err) != 0 {
			t.Errorf("%s: %v, want the client's own error", name, err)
		}
	}
	if sb.Calls("/cgi-bin/message/custom/send") != before {
		t.Error("an invalid message was sent")
	}
	if inbox, _ := sb.Inbox(fan.ID); len(inbox) != 1 {
		t.Fatalf("refused messages reached the inbox: %+v", inbox)
	}
}

// TestChannelControlAPI: the person's side over HTTP, as the devstack's
// phone view uses it.
func TestChannelControlAPI(t *testing.T) {
	sb, wc, base := newMessages(t)
	ctx := context.Background()
	var x xmlPushes
	x.target(t, sb, push.Plaintext)
	fan := sb.CreatePerson(sandbox.PersonSpec{})
	post := func(path, body string, want int) map[string]any {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d %v, want %d", path, resp.StatusCode, out, want)
		}
		return out
	}
	d := post("/sandbox/people/"+fan.ID+"/oa-consent", `{"template_id":"`+oaTpl+`","long_term":true}`, 200)
	if d["delivered"] != true || d["list"].([]any)[0].(map[string]any)["status"] != "accept" {
		t.Fatalf("oa-consent = %v", d)
	}
	post("/sandbox/people/"+fan.ID+"/message", `{"content":"hi"}`, 409) // not following
	sb.Follow(ctx, fan.ID, "")
	if d := post("/sandbox/people/"+fan.ID+"/message", `{"content":"hi"}`, 200); d["content"] != "hi" {
		t.Fatalf("message = %v", d)
	}
	post("/sandbox/people/"+fan.ID+"/menu-click", `{"key":"K"}`, 200)
	post("/sandbox/people/"+fan.ID+"/message", `{}`, 400)
	post("/sandbox/people/"+fan.ID+"/oa-consent", `{}`, 400)
	post("/sandbox/people/p99/oa-consent", `{"template_id":"`+oaTpl+`"}`, 404)
	if err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: fan.OAOpenID, Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/sandbox/people/" + fan.ID + "/channels")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st sandbox.ChannelState
	json.NewDecoder(resp.Body).Decode(&st)
	if st.OAConsents[oaTpl] != (sandbox.OAConsentState{LongTerm: true}) || st.CustomerService != sandbox.MessageAllowance+sandbox.EventAllowance-1 ||
		st.CustomerServiceUntil == nil || st.CustomerServiceUntil.Sub(sb.Clock().Now()) > sandbox.MessageWindow || st.CustomerServiceUntil.Sub(sb.Clock().Now()) < sandbox.MessageWindow-5*time.Second {
		t.Fatalf("channels = %+v", st)
	}
	post("/sandbox/people/"+fan.ID+"/oa-revoke", `{"template_id":"`+oaTpl+`"}`, 200)
	if _, long := sb.OAConsents(fan.ID, oaTpl); long {
		t.Fatal("oa-revoke kept the consent")
	}
	resp, _ = http.Get(base + "/sandbox/people/" + fan.ID + "/inbox")
	var inbox []map[string]any
	json.NewDecoder(resp.Body).Decode(&inbox)
	resp.Body.Close()
	if len(inbox) != 1 || inbox[0]["channel"] != "customer_service" || inbox[0]["text"] != "hello" {
		t.Fatalf("inbox = %v", inbox)
	}
}

// TestChannelsUnderConcurrency: concurrent sends use each one-time consent
// and each customer-service message of an allowance exactly once.
func TestChannelsUnderConcurrency(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	var x xmlPushes
	x.target(t, sb, push.Plaintext)
	p := sb.CreatePerson(sandbox.PersonSpec{})
	sb.Follow(ctx, p.ID, "")
	sb.Clock().Advance(sandbox.EventWindow)
	sb.Message(ctx, p.ID, "hi")
	const consents = 3
	for range consents {
		sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaTpl})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	okOA, okCS := 0, 0
	for range 16 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := wc.SendOASubscribe(ctx, oa, oaMessage(p.OAOpenID))
			if err != nil && !errors.Is(err, wechat.ErrNoConsent) {
				t.Errorf("bizsend: %v", err)
			}
			mu.Lock()
			okOA += map[bool]int{true: 1}[err == nil]
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: p.OAOpenID, Text: "x"})
			if err != nil && !errors.Is(err, wechat.ErrResponseLimit) {
				t.Errorf("custom/send: %v", err)
			}
			mu.Lock()
			okCS += map[bool]int{true: 1}[err == nil]
			mu.Unlock()
		}()
	}
	wg.Wait()
	if okOA != consents || okCS != sandbox.MessageAllowance {
		t.Fatalf("%d notifications for %d consents, %d customer-service messages for an allowance of %d", okOA, consents, okCS, sandbox.MessageAllowance)
	}
}
