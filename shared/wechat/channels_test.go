package wechat_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
)

// nilPush takes the sandbox's pushes (consent events, messages) and
// answers success: these tests look at the API calls, not the pushes.
type nilPush struct{}

func (nilPush) ServeHTTP(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "success") }

func channelClient(t *testing.T) (*sandbox.Sandbox, *wechat.Client) {
	t.Helper()
	sb := sandbox.New(sandbox.DefaultConfig())
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	hook := httptest.NewServer(nilPush{})
	t.Cleanup(hook.Close)
	if err := sb.SetPushTarget(sandbox.PushTarget{URL: hook.URL, Token: "t"}); err != nil {
		t.Fatal(err)
	}
	return sb, wechat.New(wechat.Options{APIBase: srv.URL, Tokens: sandboxTokens{srv.URL}})
}

// TestSendOASubscribe: the notification reaches the person as sent, and
// the msgid comes back digit for digit (it is past 2^53, where a float
// would round it).
func TestSendOASubscribe(t *testing.T) {
	sb, wc := channelClient(t)
	ctx := context.Background()
	p := sb.CreatePerson(sandbox.PersonSpec{})
	tpl := "oaTpl" + strings.Repeat("x", 38)
	m := wechat.OASubscribeMessage{ToUser: p.OAOpenID, TemplateID: tpl, Page: "https://shop.example.com/o/1",
		MiniProgram: &wechat.MiniProgram{AppID: sandbox.DevMiniProgram.AppID, PagePath: "pages/o?id=1"},
		Data:        map[string]string{"thing1": "Blue kettle", "amount2": "¥99.50"}}
	if _, err := wc.SendOASubscribe(ctx, sandbox.DevOfficialAccount.AppID, m); !errors.Is(err, wechat.ErrNoConsent) {
		t.Fatalf("without consent: %v", err)
	}
	sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: tpl})
	msgid, err := wc.SendOASubscribe(ctx, sandbox.DevOfficialAccount.AppID, m)
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := sb.Inbox(p.ID)
	if len(inbox) != 1 || inbox[0].MsgID != msgid || len(msgid) < 17 || inbox[0].Data["amount2"] != "¥99.50" {
		t.Fatalf("msgid %q, inbox %+v", msgid, inbox)
	}
	if _, err := wc.SendOASubscribe(ctx, sandbox.DevOfficialAccount.AppID, wechat.OASubscribeMessage{ToUser: p.OAOpenID}); err == nil {
		t.Fatal("a notification without template_id was sent")
	}
	if s := m.String(); strings.Contains(s, "Blue kettle") {
		t.Fatalf("String shows the data: %s", s)
	}
}

// TestSendCustom: text and mini-program card as the platform reads them,
// and the window's answers as sentinels of the user-state class.
func TestSendCustom(t *testing.T) {
	sb, wc := channelClient(t)
	ctx := context.Background()
	oa := sandbox.DevOfficialAccount.AppID
	p := sb.CreatePerson(sandbox.PersonSpec{})
	sb.Follow(ctx, p.ID, "")
	sb.Clock().Advance(sandbox.EventWindow) // only the message's allowance is open
	sb.Message(ctx, p.ID, "你好")
	if err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: p.OAOpenID, Text: "您的订单已发货 ✓"}); err != nil {
		t.Fatal(err)
	}
	card := wechat.MiniProgramPage{Title: "订单 8812", AppID: sandbox.DevMiniProgram.AppID, PagePath: "pages/o?id=8812", ThumbMediaID: "M1"}
	if err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: p.OAOpenID, MiniProgramPage: &card}); err != nil {
		t.Fatal(err)
	}
	inbox, _ := sb.Inbox(p.ID)
	if len(inbox) != 2 || inbox[0].Text != "您的订单已发货 ✓" || inbox[1].Card == nil || inbox[1].Card.Title != "订单 8812" || inbox[1].Card.ThumbMediaID != "M1" {
		t.Fatalf("inbox = %+v", inbox)
	}
	for range sandbox.MessageAllowance - 2 {
		wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: p.OAOpenID, Text: "x"})
	}
	err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: p.OAOpenID, Text: "x"})
	if !errors.Is(err, wechat.ErrResponseLimit) || errors.Is(err, wechat.ErrWindowClosed) || wechat.ClassOf(err) != wechat.ClassUserState || wechat.Retryable(err) {
		t.Fatalf("past the limit: %v", err)
	}
	sb.Clock().Advance(sandbox.MessageWindow)
	if err := wc.SendCustom(ctx, oa, wechat.CustomMessage{ToUser: p.OAOpenID, Text: "x"}); !errors.Is(err, wechat.ErrWindowClosed) || wechat.Retryable(err) {
		t.Fatalf("window closed: %v", err)
	}
	if s := (wechat.CustomMessage{Text: "secret order"}).String(); strings.Contains(s, "secret") {
		t.Fatalf("String shows the text: %s", s)
	}
}
