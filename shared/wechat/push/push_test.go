package push

import (
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The official sample of WeChat's message encryption, published with the
// WXBizMsgCrypt samples (Tencent's "加解密方案说明", reproduced on
// developer.work.weixin.qq.com/document/path/90968). The official account
// uses the same scheme.
const (
	vecToken  = "QDG6eK"
	vecAESKey = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	vecAppID  = "wx5823bf96d3bd56c7"
	vecSig    = "477715d11cdb4164915debcba66cb864d751f3e6"
	vecTS     = "1409659813"
	vecNonce  = "1372623149"
	vecBody   = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt></xml>"
	// The URL-check sample: echostr encrypted, decrypting to a number.
	vecEchoSig   = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
	vecEchoTS    = "1409659589"
	vecEchoNonce = "263014780"
	vecEchoStr   = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
)

func vecReceiver(t *testing.T, ts string) *Receiver {
	t.Helper()
	c, err := NewCipher(vecAESKey, vecAppID)
	if err != nil {
		t.Fatal(err)
	}
	secs, _ := strconv.ParseInt(ts, 10, 64)
	return &Receiver{Token: vecToken, Cipher: c, Now: func() time.Time { return time.Unix(secs, 0) }}
}

func TestOfficialVector(t *testing.T) {
	r := vecReceiver(t, vecTS)
	e, err := r.Open(Query{Timestamp: vecTS, Nonce: vecNonce, EncryptType: "aes", MsgSignature: vecSig}, []byte(vecBody))
	if err != nil {
		t.Fatal(err)
	}
	if e.ToUserName != vecAppID || e.MsgType != "text" || e.FromUserName == "" || e.MsgID == "" {
		t.Fatalf("event = %+v", e)
	}
	// The URL-check vector: signature over token, timestamp, nonce and the
	// encrypted echostr, which decrypts to the published number.
	if !verify(vecEchoSig, vecToken, vecEchoTS, vecEchoNonce, vecEchoStr) {
		t.Fatal("echostr signature does not verify")
	}
	msg, err := r.Cipher.Decrypt(vecEchoStr)
	if err != nil || string(msg) != "1616140317555161061" {
		t.Fatalf("echostr = %q, %v", msg, err)
	}
}

const (
	token  = "wxbridgetoken"
	aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	appid  = "wx5a0dbe0c0de00002"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func subscribeEvent() Event {
	return Event{ToUserName: "gh_0123456789ab", FromUserName: "oOA000000000000000000000001", CreateTime: now.Unix(), MsgType: "event", Event: Subscribe, EventKey: "qrscene_8812.abc.def", Ticket: "TICKET"}
}

func receiver(t testing.TB, mode Mode) *Receiver {
	t.Helper()
	r := &Receiver{Token: token, Now: func() time.Time { return now }}
	if mode != Plaintext {
		c, err := NewCipher(aesKey, appid)
		if err != nil {
			t.Fatal(err)
		}
		r.Cipher = c
	}
	return r
}

func TestRoundTripEveryMode(t *testing.T) {
	for _, mode := range []Mode{Plaintext, Compatible, Safe} {
		t.Run(string(mode), func(t *testing.T) {
			r := receiver(t, mode)
			want := subscribeEvent()
			q, body, err := Seal(mode, token, r.Cipher, want, strconv.FormatInt(now.Unix(), 10), "nonce1")
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Open(q, body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
			if mode == Safe && bytes.Contains(body, []byte(want.FromUserName)) {
				t.Error("safe mode leaks the openid in plaintext")
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	ts := strconv.FormatInt(now.Unix(), 10)
	e := subscribeEvent()
	other, _ := NewCipher(aesKey, "wxsomeoneelse00000")
	otherKey, _ := NewCipher("ZZZdefghijklmnopqrstuvwxyz0123456789ABCDEFG", appid)
	safe := func(mut func(q *Query, body []byte) []byte) func(t *testing.T, r *Receiver) (Query, []byte) {
		return func(t *testing.T, r *Receiver) (Query, []byte) {
			q, body, err := Seal(Safe, token, r.Cipher, e, ts, "n")
			if err != nil {
				t.Fatal(err)
			}
			return q, mut(&q, body)
		}
	}
	reseal := func(c *Cipher, msg []byte) func(t *testing.T, r *Receiver) (Query, []byte) {
		return func(t *testing.T, r *Receiver) (Query, []byte) {
			enc := c.Encrypt(msg)
			body := []byte("<xml><ToUserName>gh</ToUserName><Encrypt>" + enc + "</Encrypt></xml>")
			return Query{Timestamp: ts, Nonce: "n", EncryptType: "aes", MsgSignature: Signature(token, ts, "n", enc)}, body
		}
	}
	cases := []struct {
		name string
		mode Mode
		req  func(t *testing.T, r *Receiver) (Query, []byte)
		want error
	}{
		{"forged_signature", Plaintext, func(t *testing.T, r *Receiver) (Query, []byte) {
			q, body, _ := Seal(Plaintext, "not-the-token", nil, e, ts, "n")
			return q, body
		}, ErrSignature},
		{"wrong_msg_signature", Safe, safe(func(q *Query, b []byte) []byte { q.MsgSignature = Signature("x"); return b }), ErrSignature},
		{"stale_timestamp", Safe, func(t *testing.T, r *Receiver) (Query, []byte) {
			old := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
			q, body, _ := Seal(Safe, token, r.Cipher, e, old, "n")
			return q, body
		}, ErrStale},
		{"future_timestamp", Safe, func(t *testing.T, r *Receiver) (Query, []byte) {
			q, body, _ := Seal(Safe, token, r.Cipher, e, strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10), "n")
			return q, body
		}, ErrStale},
		{"non_numeric_timestamp", Safe, safe(func(q *Query, b []byte) []byte { q.Timestamp = "soon"; return b }), ErrStale},
		{"truncated_encrypt", Safe, func(t *testing.T, r *Receiver) (Query, []byte) {
			enc := r.Cipher.Encrypt(Marshal(e))
			enc = enc[:len(enc)-8]
			return Query{Timestamp: ts, Nonce: "n", EncryptType: "aes", MsgSignature: Signature(token, ts, "n", enc)}, []byte("<xml><Encrypt>" + enc + "</Encrypt></xml>")
		}, ErrDecrypt},
		{"non_base64_encrypt", Safe, func(t *testing.T, r *Receiver) (Query, []byte) {
			enc := "!!!not base64!!!"
			return Query{Timestamp: ts, Nonce: "n", EncryptType: "aes", MsgSignature: Signature(token, ts, "n", enc)}, []byte("<xml><Encrypt>" + enc + "</Encrypt></xml>")
		}, ErrDecrypt},
		{"another_appid_inside", Safe, reseal(other, Marshal(e)), ErrAppID},
		{"another_key", Safe, reseal(otherKey, Marshal(e)), ErrDecrypt},
		{"malformed_inner_xml", Safe, nil, ErrMalformed},
		{"inner_missing_fields", Safe, nil, ErrMalformed},
		{"malformed_outer_xml", Plaintext, func(t *testing.T, r *Receiver) (Query, []byte) {
			return Query{Timestamp: ts, Nonce: "n", Signature: Signature(token, ts, "n")}, []byte("<xml><FromUserName>")
		}, ErrMalformed},
		{"no_encrypt_element", Safe, func(t *testing.T, r *Receiver) (Query, []byte) {
			return Query{Timestamp: ts, Nonce: "n", EncryptType: "aes", MsgSignature: Signature(token, ts, "n", "")}, Marshal(e)
		}, ErrMalformed},
		{"plaintext_when_aes_configured", Safe, func(t *testing.T, r *Receiver) (Query, []byte) {
			q, body, _ := Seal(Plaintext, token, nil, e, ts, "n")
			return q, body
		}, ErrPlaintext},
		{"one_mebibyte_body", Safe, func(t *testing.T, r *Receiver) (Query, []byte) {
			return Query{Timestamp: ts}, bytes.Repeat([]byte("x"), 1<<20)
		}, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := receiver(t, tc.mode)
			if tc.req == nil { // sealed with this receiver's own cipher
				tc.req = reseal(r.Cipher, []byte(map[string]string{
					"malformed_inner_xml":  "<xml><ToUserName>",
					"inner_missing_fields": "<xml><MsgType>event</MsgType></xml>",
				}[tc.name]))
			}
			q, body := tc.req(t, r)
			if _, err := r.Open(q, body); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEcho(t *testing.T) {
	r := receiver(t, Plaintext)
	ts := strconv.FormatInt(now.Unix(), 10)
	q := Query{Timestamp: ts, Nonce: "n", EchoStr: "12345", Signature: Signature(token, ts, "n")}
	if got, err := r.Echo(q); err != nil || got != "12345" {
		t.Fatalf("Echo = %q, %v", got, err)
	}
	forged := q
	forged.Signature = Signature("other", ts, "n")
	if _, err := r.Echo(forged); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged Echo err = %v", err)
	}
	// Every push carries a valid (signature, timestamp, nonce) in its
	// query: an old one must not make us echo an echostr of someone's
	// choosing, just as an old push is not accepted.
	for name, at := range map[string]time.Time{"old": now.Add(-DefaultWindow - time.Second), "future": now.Add(DefaultWindow + time.Second), "epoch": time.Unix(1, 0)} {
		ts := strconv.FormatInt(at.Unix(), 10)
		replay := Query{Timestamp: ts, Nonce: "n", EchoStr: "attacker", Signature: Signature(token, ts, "n")}
		if got, err := r.Echo(replay); !errors.Is(err, ErrStale) || got != "" {
			t.Errorf("%s timestamp: Echo = %q, %v; want ErrStale", name, got, err)
		}
	}
}

func TestDedupKey(t *testing.T) {
	e := subscribeEvent()
	retry := e
	if e.DedupKey() != retry.DedupKey() {
		t.Fatal("a retry must have the same key")
	}
	later := e
	later.CreateTime++
	if e.DedupKey() == later.DedupKey() {
		t.Fatal("a later event must have another key")
	}
	// A follow, an unfollow and a follow again in one second share the key
	// of that second's follow state; each asks for its own state.
	unfollow := e
	unfollow.Event, unfollow.EventKey, unfollow.Ticket = Unsubscribe, "", ""
	if unfollow.DedupKey() != e.DedupKey() || e.FollowState() != Subscribe || unfollow.FollowState() != Unsubscribe {
		t.Fatalf("follow-state keys: %s (%s), %s (%s)", e.DedupKey(), e.FollowState(), unfollow.DedupKey(), unfollow.FollowState())
	}
	scan := e
	scan.Event = Scan
	if scan.DedupKey() == e.DedupKey() || scan.FollowState() != "" {
		t.Fatalf("a SCAN shares the follow key: %s", scan.DedupKey())
	}
	msg := Event{MsgType: "text", MsgID: "1234567890123456", FromUserName: "o", CreateTime: 1}
	if !strings.HasPrefix(msg.DedupKey(), "msg#") {
		t.Fatalf("message key = %s", msg.DedupKey())
	}
}

func TestNewCipherRejectsBadKeys(t *testing.T) {
	for _, k := range []string{"", "short", aesKey + "x", strings.Repeat("!", 43)} {
		if _, err := NewCipher(k, appid); err == nil {
			t.Errorf("NewCipher(%q) succeeded", k)
		}
	}
}

func FuzzOpen(f *testing.F) {
	r := receiver(f, Safe)
	ts := strconv.FormatInt(now.Unix(), 10)
	_, body, _ := Seal(Safe, token, r.Cipher, subscribeEvent(), ts, "n")
	f.Add(body)
	f.Add([]byte(vecBody))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Sign whatever Encrypt the body carries so that fuzzing reaches
		// the decryption and parsing behind the signature check.
		env, _ := parse(body)
		q := Query{Timestamp: ts, Nonce: "n", EncryptType: "aes", MsgSignature: Signature(token, ts, "n", env.Encrypt)}
		r.Open(q, body)
		if env.Encrypt != "" {
			if raw, err := base64.StdEncoding.DecodeString(env.Encrypt); err == nil && len(raw) > 0 {
				r.Cipher.Decrypt(env.Encrypt)
			}
		}
	})
}

// BenchmarkOpenSafeSubscribe is verify + decrypt + parse of one safe-mode
// subscribe event, beside the plaintext path for comparison.
func BenchmarkOpen(b *testing.B) {
	for _, mode := range []Mode{Plaintext, Safe} {
		b.Run(string(mode)+"_subscribe", func(b *testing.B) {
			r := receiver(b, mode)
			ts := strconv.FormatInt(now.Unix(), 10)
			q, body, _ := Seal(mode, token, r.Cipher, subscribeEvent(), ts, "nonce1")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Open(q, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSubscribeNotificationEvents parses the official account's three
// subscribe-notification events as the platform documents them (the popup
// example of developers.weixin.qq.com/doc/service/guide/product/
// subscription_messages/push, whose change-event example wraps its list
// in SubscribeMsgPopupEvent), and renders them back.
func TestSubscribeNotificationEvents(t *testing.T) {
	head := func(event string) string {
		return `<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName><FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>` +
			`<CreateTime>1610969440</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[` + event + `]]></Event>`
	}
	tests := []struct {
		name, body string
		want       []TemplateEvent
	}{
		{"popup", head(SubscribePopup) + `<SubscribeMsgPopupEvent>` +
			`<List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>` +
			`<List><TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List>` +
			`</SubscribeMsgPopupEvent></xml>`,
			[]TemplateEvent{{TemplateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", Status: "accept", PopupScene: "2"}, {TemplateID: "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI", Status: "reject", PopupScene: "2"}}},
		{"change", head(SubscribeChange) + `<SubscribeMsgChangeEvent><List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString></List></SubscribeMsgChangeEvent></xml>`,
			[]TemplateEvent{{TemplateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", Status: "reject"}}},
		{"change_as_documented", head(SubscribeChange) + `<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString></List></SubscribeMsgPopupEvent></xml>`,
			[]TemplateEvent{{TemplateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", Status: "reject"}}},
		{"sent", head(SubscribeSent) + `<SubscribeMsgSentEvent><List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId><MsgID>1700827132819554304</MsgID><ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent></xml>`,
			[]TemplateEvent{{TemplateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", MsgID: "1700827132819554304", ErrorCode: "0", ErrorStatus: "success"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, err := parse([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if e := env.Event; !reflect.DeepEqual(e.Templates, tc.want) || e.MsgID != "" || validate(e) != nil {
				t.Fatalf("parsed %+v (%v)\nwant templates %+v", e, validate(e), tc.want)
			}
			again, err := parse(Marshal(env.Event))
			if err != nil || !reflect.DeepEqual(again.Event, env.Event) {
				t.Fatalf("round trip: %+v, %v", again.Event, err)
			}
		})
	}
	// Two reports of one second differ only in their list.
	a := Event{FromUserName: "o", CreateTime: 1, MsgType: "event", Event: SubscribeSent, Templates: []TemplateEvent{{TemplateID: "T", MsgID: "1"}}}
	b := a
	b.Templates = []TemplateEvent{{TemplateID: "T", MsgID: "2"}}
	if a.DedupKey() == b.DedupKey() {
		t.Error("two delivery reports of one second share a dedup key")
	}
}
