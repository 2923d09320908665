package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/shared/wechat/push"
)

const (
	testPushToken = "pushtoken"
	testAESKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// receiver is our side of the push, as a test double of the follow-event
// function: it verifies and opens each push with shared/wechat/push and
// answers with what answer() says for that attempt.
type receiver struct {
	mu     sync.Mutex
	events []push.Event
	bodies []string
	answer func(n int) (status int, body string, delay time.Duration)
}

func (r *receiver) serve(t *testing.T, mode push.Mode, now func() time.Time) *httptest.Server {
	var c *push.Cipher
	if mode != push.Plaintext {
		c, _ = push.NewCipher(testAESKey, DevOfficialAccount.AppID)
	}
	open := &push.Receiver{Token: testPushToken, Cipher: c, Now: now}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		q := req.URL.Query()
		e, err := open.Open(push.Query{Signature: q.Get("signature"), Timestamp: q.Get("timestamp"), Nonce: q.Get("nonce"), EncryptType: q.Get("encrypt_type"), MsgSignature: q.Get("msg_signature")}, body)
		if err != nil {
			t.Errorf("push does not open: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		if q.Get("openid") != e.FromUserName {
			t.Errorf("openid query %q, event from %q", q.Get("openid"), e.FromUserName)
		}
		r.mu.Lock()
		r.events = append(r.events, e)
		r.bodies = append(r.bodies, string(body))
		n := len(r.events)
		r.mu.Unlock()
		status, answer, delay := 200, "success", time.Duration(0)
		if r.answer != nil {
			status, answer, delay = r.answer(n)
		}
		time.Sleep(delay)
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func pushing(t *testing.T, mode push.Mode, r *receiver, timeout time.Duration) *harness {
	h := start(t, DefaultConfig())
	srv := r.serve(t, mode, h.sb.Clock().Now)
	key := ""
	if mode != push.Plaintext {
		key = testAESKey
	}
	if err := h.sb.SetPushTarget(PushTarget{URL: srv.URL, Token: testPushToken, EncodingAESKey: key, Mode: mode, Timeout: timeout}); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPushModes(t *testing.T) {
	for _, mode := range []push.Mode{push.Plaintext, push.Compatible, push.Safe} {
		t.Run(string(mode), func(t *testing.T) {
			r := &receiver{}
			h := pushing(t, mode, r, time.Second)
			p := h.sb.CreatePerson(PersonSpec{})
			d, err := h.sb.Follow(context.Background(), p.ID, "")
			if err != nil || !d.Delivered || len(d.Attempts) != 1 {
				t.Fatalf("Follow = %+v, %v", d, err)
			}
			e := r.events[0]
			if e.Event != push.Subscribe || e.FromUserName != p.OAOpenID || e.CreateTime != morning.Unix() || e.EventKey != "" {
				t.Fatalf("event = %+v", e)
			}
			inClear := strings.Contains(r.bodies[0], p.OAOpenID)
			if inClear != (mode != push.Safe) {
				t.Errorf("openid in the clear = %v in %s mode", inClear, mode)
			}
		})
	}
}

func TestPushRetriesLikeWeChat(t *testing.T) {
	t.Run("errors_then_success", func(t *testing.T) {
		r := &receiver{answer: func(n int) (int, string, time.Duration) {
			if n < 3 {
				return 500, "", 0
			}
			return 200, "", 0 // an empty body also means success
		}}
		h := pushing(t, push.Safe, r, time.Second)
		p := h.sb.CreatePerson(PersonSpec{})
		d, _ := h.sb.Follow(context.Background(), p.ID, "")
		if !d.Delivered || len(d.Attempts) != 3 || d.Attempts[0].Status != 500 {
			t.Fatalf("delivery = %+v", d)
		}
		for _, e := range r.events[1:] {
			if !reflect.DeepEqual(e, r.events[0]) {
				t.Fatalf("a retry differs: %+v vs %+v", e, r.events[0])
			}
		}
	})
	t.Run("no_answer_in_time_gives_up_after_three_retries", func(t *testing.T) {
		r := &receiver{answer: func(int) (int, string, time.Duration) { return 200, "success", 300 * time.Millisecond }}
		h := pushing(t, push.Safe, r, 50*time.Millisecond)
		p := h.sb.CreatePerson(PersonSpec{})
		d, _ := h.sb.Follow(context.Background(), p.ID, "")
		if d.Delivered || len(d.Attempts) != 4 || d.Attempts[0].Error == "" {
			t.Fatalf("delivery = %+v", d)
		}
	})
	t.Run("other_answers_are_not_success", func(t *testing.T) {
		r := &receiver{answer: func(int) (int, string, time.Duration) { return 200, "ok", 0 }}
		h := pushing(t, push.Plaintext, r, time.Second)
		p := h.sb.CreatePerson(PersonSpec{})
		if d, _ := h.sb.Follow(context.Background(), p.ID, ""); d.Delivered || len(d.Attempts) != 4 {
			t.Fatalf("delivery = %+v", d)
		}
	})
}

func TestFollowStateAndUserInfo(t *testing.T) {
	r := &receiver{}
	h := pushing(t, push.Safe, r, time.Second)
	oaTok := h.stable(DevOfficialAccount, false).AccessToken
	mpTok := h.stable(DevMiniProgram, false).AccessToken
	p := h.sb.CreatePerson(PersonSpec{})
	info := func(tok, openid string) map[string]any {
		var out map[string]any
		req, _ := http.NewRequest("GET", h.srv.URL+"/cgi-bin/user/info?"+url.Values{"access_token": {tok}, "openid": {openid}}.Encode(), nil)
		_, raw := h.do(req)
		decode(t, raw, &out)
		return out
	}
	if got := info(oaTok, p.OAOpenID); got["subscribe"] != 0.0 || got["unionid"] != nil {
		t.Fatalf("non-follower = %v", got)
	}
	h.sb.Follow(context.Background(), p.ID, "campaign7")
	got := info(oaTok, p.OAOpenID)
	if got["subscribe"] != 1.0 || got["unionid"] != p.UnionID || got["subscribe_scene"] != "ADD_SCENE_QR_CODE" || got["qr_scene_str"] != "campaign7" {
		t.Fatalf("follower = %v", got)
	}
	if r.events[0].EventKey != "qrscene_campaign7" || r.events[0].Ticket == "" {
		t.Fatalf("QR follow event = %+v", r.events[0])
	}
	if got := info(oaTok, "oNOBODY"); got["errcode"] != 40003.0 {
		t.Fatalf("unknown openid = %v", got)
	}
	if got := info(mpTok, p.OAOpenID); got["errcode"] != 48001.0 {
		t.Fatalf("mini-program token = %v", got)
	}
	if got := info("bogus", p.OAOpenID); got["errcode"] != 40001.0 {
		t.Fatalf("bad token = %v", got)
	}
	h.sb.Unfollow(context.Background(), p.ID)
	if got := info(oaTok, p.OAOpenID); got["subscribe"] != 0.0 || got["unionid"] != nil {
		t.Fatalf("after unfollow = %v", got)
	}
	if p2, _ := h.sb.Person(p.ID); p2.Following {
		t.Fatal("Person still following")
	}
}

func TestBatchGet(t *testing.T) {
	h := pushing(t, push.Safe, &receiver{}, time.Second)
	tok := h.stable(DevOfficialAccount, false).AccessToken
	var openids []map[string]string
	for i := range 3 {
		p := h.sb.CreatePerson(PersonSpec{})
		if i < 2 {
			h.sb.Follow(context.Background(), p.ID, "")
		}
		openids = append(openids, map[string]string{"openid": p.OAOpenID, "lang": "zh_CN"})
	}
	batch := func(list []map[string]string) map[string]any {
		var out map[string]any
		req, _ := http.NewRequest("POST", h.srv.URL+"/cgi-bin/user/info/batchget?access_token="+tok, strings.NewReader(mustJSON(map[string]any{"user_list": list})))
		_, raw := h.do(req)
		decode(t, raw, &out)
		return out
	}
	out := batch(openids)
	list, _ := out["user_info_list"].([]any)
	if len(list) != 3 || list[0].(map[string]any)["subscribe"] != 1.0 || list[2].(map[string]any)["subscribe"] != 0.0 {
		t.Fatalf("batch = %v", out)
	}
	var tooMany []map[string]string
	for range 101 {
		tooMany = append(tooMany, openids[0])
	}
	if got := batch(tooMany); got["errcode"] != 47001.0 {
		t.Fatalf("101 openids = %v", got)
	}
}

func TestScanByTicket(t *testing.T) {
	r := &receiver{}
	h := pushing(t, push.Safe, r, time.Second)
	tok := h.stable(DevOfficialAccount, false).AccessToken
	req, _ := http.NewRequest("POST", h.srv.URL+"/cgi-bin/qrcode/create?access_token="+tok, strings.NewReader(`{"expire_seconds":600,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"bind-me"}}}`))
	_, raw := h.do(req)
	var qr struct {
		Ticket        string `json:"ticket"`
		ExpireSeconds int    `json:"expire_seconds"`
	}
	decode(t, raw, &qr)
	if qr.Ticket == "" || qr.ExpireSeconds != 600 {
		t.Fatalf("qrcode = %s", raw)
	}
	p := h.sb.CreatePerson(PersonSpec{})
	if d, err := h.sb.Scan(context.Background(), p.ID, "", qr.Ticket); err != nil || d.Event.Event != push.Subscribe || d.Event.EventKey != "qrscene_bind-me" || d.Event.Ticket != qr.Ticket {
		t.Fatalf("first scan = %+v, %v", d.Event, err)
	}
	if d, err := h.sb.Scan(context.Background(), p.ID, "", qr.Ticket); err != nil || d.Event.Event != push.Scan || d.Event.EventKey != "bind-me" {
		t.Fatalf("follower scan = %+v, %v", d.Event, err)
	}
	if _, err := h.sb.Scan(context.Background(), p.ID, "", "no-such-ticket"); err == nil {
		t.Fatal("unknown ticket accepted")
	}
}

func TestPushControlAPI(t *testing.T) {
	h := start(t, DefaultConfig())
	p := h.sb.CreatePerson(PersonSpec{})
	h.control("POST", "/sandbox/people/"+p.ID+"/follow", nil, http.StatusConflict, nil) // no push target yet
	srv := (&receiver{}).serve(t, push.Safe, h.sb.Clock().Now)
	h.control("POST", "/sandbox/push", map[string]any{"url": srv.URL, "token": testPushToken, "encoding_aes_key": testAESKey, "mode": "safe"}, http.StatusOK, nil)
	h.control("POST", "/sandbox/push", map[string]any{"url": srv.URL, "token": testPushToken, "mode": "loud"}, http.StatusBadRequest, nil)
	var d Delivery
	h.control("POST", "/sandbox/people/"+p.ID+"/follow", map[string]string{"scene": "x"}, http.StatusOK, &d)
	if !d.Delivered || d.Event.EventKey != "qrscene_x" {
		t.Fatalf("delivery = %+v", d)
	}
	h.control("POST", "/sandbox/people/"+p.ID+"/follow", nil, http.StatusConflict, nil) // already follows
	h.control("POST", "/sandbox/people/"+p.ID+"/scan", map[string]string{"scene": "y"}, http.StatusOK, &d)
	h.control("POST", "/sandbox/people/"+p.ID+"/unfollow", nil, http.StatusOK, &d)
	if d.Event.Event != push.Unsubscribe {
		t.Fatalf("unfollow event = %+v", d.Event)
	}
	h.control("POST", "/sandbox/people/nobody/follow", nil, http.StatusNotFound, nil)
	h.control("POST", "/sandbox/people/"+p.ID+"/scan", `not json`, http.StatusBadRequest, nil)
}

func decode(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("not JSON: %s", raw)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
