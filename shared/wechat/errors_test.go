package wechat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestErrorClass(t *testing.T) {
	cases := []struct {
		code int
		want Class
	}{
		{-1, ClassTransient},
		{45011, ClassTransient},
		{45009, ClassQuota},
		{40001, ClassToken},
		{40014, ClassToken},
		{42001, ClassToken},
		{40029, ClassCode},
		{40163, ClassCode},
		{43004, ClassUserState},
		{43101, ClassUserState},
		{40003, ClassUserState},
		{43019, ClassUserState},
		{40226, ClassUserState},
		{45047, ClassUserState},
		{45015, ClassUserState},
		{40037, ClassSender},
		{47003, ClassSender},
		{41030, ClassSender},
		{47001, ClassSender},
		{45002, ClassSender},
		{40164, ClassConfig},
		{89501, ClassConfig},
		{89503, ClassConfig},
		{89506, ClassConfig},
		{89507, ClassConfig},
		{40013, ClassConfig},
		{40125, ClassConfig},
		{40243, ClassConfig},
		{48001, ClassConfig},
		{61024, ClassConfig},
		{0, ClassUnknown},
		{12345, ClassUnknown},
		{40002, ClassUnknown},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			e := &Error{API: "/cgi-bin/message/subscribe/send", Code: c.code}
			if got := e.Class(); got != c.want {
				t.Errorf("class = %v, want %v", got, c.want)
			}
			if got := ClassOf(fmt.Errorf("sending: %w", e)); got != c.want {
				t.Errorf("ClassOf(wrapped) = %v, want %v", got, c.want)
			}
		})
	}
}

func TestErrorClass_40001_on_token_endpoints_is_a_bad_secret(t *testing.T) {
	// On the token endpoints 40001 means "AppSecret wrong or not of this
	// app": refreshing the token, what ClassToken asks for, cannot help.
	for _, api := range []string{"/cgi-bin/token", "/cgi-bin/stable_token"} {
		if got := (&Error{API: api, Code: 40001}).Class(); got != ClassConfig {
			t.Errorf("%s 40001: class = %v, want config", api, got)
		}
	}
	if got := (&Error{API: "/cgi-bin/user/info", Code: 40001}).Class(); got != ClassToken {
		t.Errorf("user/info 40001: class = %v, want token", got)
	}
}

func TestClassStringAndRetryable(t *testing.T) {
	cases := []struct {
		c         Class
		name      string
		retryable bool
	}{
		{ClassNone, "none", false},
		{ClassUnknown, "unknown", true},
		{ClassInfra, "infra", true},
		{ClassTransient, "transient", true},
		{ClassQuota, "quota", true},
		{ClassToken, "token", true},
		{ClassCode, "code", false},
		{ClassUserState, "user_state", false},
		{ClassSender, "sender", false},
		{ClassConfig, "config", true},
		{Class(99), "unknown", false},
		{Class(-3), "unknown", false},
	}
	for _, c := range cases {
		if got := c.c.String(); got != c.name {
			t.Errorf("Class(%d).String() = %q, want %q", int(c.c), got, c.name)
		}
		if got := c.c.Retryable(); got != c.retryable {
			t.Errorf("%s.Retryable() = %v, want %v", c.name, got, c.retryable)
		}
	}
}

func TestSplitRID(t *testing.T) {
	cases := []struct {
		name, errmsg, msg, rid string
	}{
		{"comma", "invalid code, rid: 6569d9a4-1d2e0b2c-0f7e6a40", "invalid code", "6569d9a4-1d2e0b2c-0f7e6a40"},
		{"no_comma", "reach max api daily quota limit rid: 66a30b97-7f228fed-49c8beb1", "reach max api daily quota limit", "66a30b97-7f228fed-49c8beb1"},
		{"no_space", "code been used,rid:680a9de1-5392a330-75f1ca8d", "code been used", "680a9de1-5392a330-75f1ca8d"},
		{"ip_in_message", "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: 611740a4-27f9a8ba-065da01b", "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist", "611740a4-27f9a8ba-065da01b"},
		{"url_in_message", "invalid credential, access_token is invalid or not latest, more details at https://mmbizurl.cn/s/JtxxFh33r rid: 655d9278-7c157f97-69055077", "invalid credential, access_token is invalid or not latest, more details at https://mmbizurl.cn/s/JtxxFh33r", "655d9278-7c157f97-69055077"},
		{"rid_words_before", "rid not found, please check rid: 66c6a466-23edf354-2012b929", "rid not found, please check", "66c6a466-23edf354-2012b929"},
		{"legacy_hint", "invalid ip 1.2.3.4, not in whitelist hint: [i50PvA0089sha6]", "invalid ip 1.2.3.4, not in whitelist", "i50PvA0089sha6"},
		{"legacy_hints_req_id", "code blocked, hints: [ req_id: qEjdmsNre-EYNDhA ]", "code blocked", "qEjdmsNre-EYNDhA"},
		{"uppercase", "system error, RID: ABCDEF01-2", "system error", "ABCDEF01-2"},
		{"none", "invalid template_id", "invalid template_id", ""},
		{"empty", "", "", ""},
		{"only_rid", "rid: 1-2-3", "", "1-2-3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg, rid := splitRID(c.errmsg)
			if msg != c.msg || rid != c.rid {
				t.Errorf("splitRID(%q) = %q, %q; want %q, %q", c.errmsg, msg, rid, c.msg, c.rid)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	cases := []struct {
		name string
		err  *Error
		want string
	}{
		{
			"from_answer",
			newError("/sns/jscode2session", 40029, "invalid code, rid: 6569d9a4-1d2e0b2c-0f7e6a40"),
			"wechat /sns/jscode2session: errcode 40029: invalid code (rid 6569d9a4-1d2e0b2c-0f7e6a40)",
		},
		{
			"no_rid",
			newError("/cgi-bin/message/subscribe/send", 43101, "user refuse to accept the msg"),
			"wechat /cgi-bin/message/subscribe/send: errcode 43101: user refuse to accept the msg",
		},
		{
			"no_message",
			&Error{API: "/cgi-bin/token", Code: -1},
			"wechat /cgi-bin/token: errcode -1",
		},
		{
			"built_by_hand_with_rid_in_message",
			&Error{API: "/cgi-bin/token", Code: 40164, Message: "invalid ip, not in whitelist, rid: 1-2-3"},
			"wechat /cgi-bin/token: errcode 40164: invalid ip, not in whitelist (rid 1-2-3)",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.err.Error(); got != c.want {
				t.Errorf("Error() = %q\nwant      %q", got, c.want)
			}
		})
	}

	e := newError("/sns/jscode2session", 40029, "invalid code, rid: 6569d9a4-1d2e0b2c-0f7e6a40")
	if e.Message != "invalid code" || e.RID != "6569d9a4-1d2e0b2c-0f7e6a40" {
		t.Errorf("fields = %q, %q", e.Message, e.RID)
	}
	if got := RID(fmt.Errorf("login: %w", e)); got != "6569d9a4-1d2e0b2c-0f7e6a40" {
		t.Errorf("RID(wrapped) = %q", got)
	}
	if got := RID(&Error{Message: "x, rid: 7-8-9"}); got != "7-8-9" {
		t.Errorf("RID(hand-built) = %q", got)
	}
	if got := RID(errors.New("rid: 1-2-3")); got != "" {
		t.Errorf("RID(non-WeChat error) = %q, want empty", got)
	}
	if got := RID(nil); got != "" {
		t.Errorf("RID(nil) = %q", got)
	}
}

func TestClassOf_non_transport(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassNone},
		{"plain", errors.New("boom"), ClassInfra},
		{"canceled", context.Canceled, ClassTransient},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ClassTransient},
		{"net_error", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, ClassTransient},
		{"open_data", ErrOpenData, ClassCode},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ClassOf(c.err); got != c.want {
				t.Errorf("ClassOf = %v, want %v", got, c.want)
			}
		})
	}
}

// The request URL of jscode2session carries the secret and the code. Every
// way the call can fail without an answer must keep them out of the error.
func TestClassOf_transport_failures_are_transient_and_keep_credentials_out(t *testing.T) {
	const (
		secret = "s3cr3t-VALUE-do-not-log"
		code   = "0a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P"
	)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := "http://" + closed.Addr().String()
	closed.Close()

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	answer := func(status int, body string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(s.Close)
		return s.URL
	}

	cases := []struct {
		name    string
		base    string
		timeout time.Duration
		check   func(t *testing.T, err error)
	}{
		{"connection_refused", closedAddr, time.Second, func(t *testing.T, err error) {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("cause not kept: errors.Is(err, ECONNREFUSED) is false for %v", err)
			}
		}},
		{"timeout", slow.URL, 100 * time.Millisecond, func(t *testing.T, err error) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("cause not kept: no net.Error with Timeout() in %v", err)
			}
		}},
		{"http_502", answer(http.StatusBadGateway, "<html>bad gateway</html>"), time.Second, nil},
		{"html_body", answer(http.StatusOK, "<html>busy</html>"), time.Second, nil},
		{"empty_body", answer(http.StatusOK, ""), time.Second, nil},
		{"truncated_json", answer(http.StatusOK, `{"openid":"o`), time.Second, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := New(Options{APIBase: c.base, HTTPClient: &http.Client{Timeout: c.timeout}})
			_, err := cl.Code2Session(context.Background(), "wxapp", secret, code)
			if err == nil {
				t.Fatal("no error")
			}
			if got := ClassOf(err); got != ClassTransient {
				t.Errorf("ClassOf = %v, want transient (%v)", got, err)
			}
			text := err.Error()
			for _, leak := range []string{"secret=", secret, code, "js_code", "?"} {
				if strings.Contains(text, leak) {
					t.Errorf("error text %q contains %q", text, leak)
				}
			}
			if !strings.HasPrefix(text, "wechat /sns/jscode2session: ") {
				t.Errorf("error text %q does not name the API", text)
			}
			var we *Error
			if errors.As(err, &we) {
				t.Errorf("transport failure typed as a platform answer: %v", we)
			}
			if c.check != nil {
				c.check(t, err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	q := map[string][]string{"secret": {"a b/c"}, "js_code": {"xyz"}, "appid": {"wxapp"}}
	got := redact(`Get "https://h/p?appid=wxapp&js_code=xyz&secret=a+b%2Fc": boom a b/c`, q)
	for _, leak := range []string{"xyz", "a+b%2Fc", "a b/c"} {
		if strings.Contains(got, leak) {
			t.Errorf("redact left %q in %q", leak, got)
		}
	}
	if !strings.Contains(got, "wxapp") {
		t.Errorf("redact removed the non-secret appid: %q", got)
	}
}
