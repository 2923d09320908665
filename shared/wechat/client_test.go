package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// platform is an httptest server that answers one API like WeChat does: HTTP
// 200 and JSON, errors as {errcode, errmsg}. It records what it was sent.
type platform struct {
	*httptest.Server
	hits   atomic.Int32
	method string
	path   string
	query  url.Values
	header http.Header
	body   []byte
}

func newPlatform(t *testing.T, answer string) *platform {
	t.Helper()
	p := &platform{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		p.method, p.path, p.query, p.header = r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone()
		p.body, _ = io.ReadAll(r.Body)
		// jscode2session really answers text/plain; the client must not care.
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, answer)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *platform) client() *Client { return New(Options{APIBase: p.URL}) }

func TestCode2Session(t *testing.T) {
	ctx := context.Background()

	t.Run("sends_credentials_and_code_and_types_the_answer", func(t *testing.T) {
		p := newPlatform(t, `{"openid":"o-123","session_key":"c2Vzc2lvbmtleTEyMzQ1Ng==","unionid":"u-456"}`)
		s, err := p.client().Code2Session(ctx, "wxapp", "the-secret", "the+code")
		if err != nil {
			t.Fatal(err)
		}
		if p.method != http.MethodGet || p.path != "/sns/jscode2session" {
			t.Errorf("request = %s %s", p.method, p.path)
		}
		want := url.Values{"appid": {"wxapp"}, "secret": {"the-secret"}, "js_code": {"the+code"}, "grant_type": {"authorization_code"}}
		if p.query.Encode() != want.Encode() {
			t.Errorf("query = %v, want %v", p.query, want)
		}
		if s != (Session{OpenID: "o-123", SessionKey: "c2Vzc2lvbmtleTEyMzQ1Ng==", UnionID: "u-456"}) {
			t.Errorf("session = %#v", s)
		}
	})

	t.Run("unionid_is_optional", func(t *testing.T) {
		p := newPlatform(t, `{"session_key":"k","openid":"o-1"}`)
		s, err := p.client().Code2Session(ctx, "wxapp", "sec", "code")
		if err != nil || s.OpenID != "o-1" || s.UnionID != "" {
			t.Fatalf("got %v, %v", s, err)
		}
	})

	t.Run("errcode_zero_with_ok_is_success", func(t *testing.T) {
		p := newPlatform(t, `{"errcode":0,"errmsg":"ok","session_key":"k","openid":"o-1"}`)
		if _, err := p.client().Code2Session(ctx, "wxapp", "sec", "code"); err != nil {
			t.Fatal(err)
		}
	})

	errorCases := []struct {
		name   string
		answer string
		code   int
		class  Class
		rid    string
	}{
		{"invalid_code", `{"errcode":40029,"errmsg":"invalid code, rid: 6569d9a4-1d2e0b2c-0f7e6a40"}`, 40029, ClassCode, "6569d9a4-1d2e0b2c-0f7e6a40"},
		{"used_code", `{"errcode":40163,"errmsg":"code been used, rid: 680a9de1-5392a330-75f1ca8d"}`, 40163, ClassCode, "680a9de1-5392a330-75f1ca8d"},
		{"per_user_rate_limit", `{"errcode":45011,"errmsg":"api minute-quota reach limit  mustslower  retry next minute rid: 1-2-3"}`, 45011, ClassTransient, "1-2-3"},
		{"risky_user", `{"errcode":40226,"errmsg":"code blocked, hints: [ req_id: qEjdmsNre-EYNDhA ]"}`, 40226, ClassUserState, "qEjdmsNre-EYNDhA"},
		{"busy", `{"errcode":-1,"errmsg":"system error"}`, -1, ClassTransient, ""},
		{"bad_secret", `{"errcode":40125,"errmsg":"invalid appsecret, rid: 4-5-6"}`, 40125, ClassConfig, "4-5-6"},
	}
	for _, c := range errorCases {
		t.Run("answer_"+c.name, func(t *testing.T) {
			p := newPlatform(t, c.answer)
			_, err := p.client().Code2Session(ctx, "wxapp", "sec", "code")
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if we.API != "/sns/jscode2session" || we.Code != c.code || we.RID != c.rid {
				t.Errorf("error = %+v", *we)
			}
			if strings.Contains(we.Message, "rid") || strings.Contains(we.Message, "req_id") {
				t.Errorf("message kept the rid: %q", we.Message)
			}
			if got := ClassOf(err); got != c.class {
				t.Errorf("ClassOf = %v, want %v", got, c.class)
			}
		})
	}

	t.Run("answer_without_openid_is_an_error", func(t *testing.T) {
		for _, answer := range []string{`{"session_key":"k"}`, `{"openid":"o-1"}`, `{}`, `null`} {
			p := newPlatform(t, answer)
			s, err := p.client().Code2Session(ctx, "wxapp", "sec", "code")
			if err == nil {
				t.Errorf("answer %s: got %v, want an error", answer, s)
				continue
			}
			if ClassOf(err) != ClassTransient {
				t.Errorf("answer %s: class %v, want transient", answer, ClassOf(err))
			}
		}
	})

	t.Run("bad_inputs_fail_without_a_request", func(t *testing.T) {
		p := newPlatform(t, `{"openid":"o","session_key":"k"}`)
		cases := [][3]string{
			{"wxapp", "sec", ""},
			{"", "sec", "code"},
			{"wxapp", "", "code"},
			{"wxapp", "sec", strings.Repeat("c", maxCodeLen+1)},
		}
		for _, c := range cases {
			if _, err := p.client().Code2Session(ctx, c[0], c[1], c[2]); err == nil {
				t.Errorf("Code2Session(%q, %q, %.10q...) succeeded", c[0], c[1], c[2])
			}
		}
		if n := p.hits.Load(); n != 0 {
			t.Errorf("%d requests sent for invalid input", n)
		}
	})
}

func TestStableToken(t *testing.T) {
	ctx := context.Background()

	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprintf("posts_json_force_%v", force), func(t *testing.T) {
			p := newPlatform(t, `{"access_token":"ACCESS-TOKEN","expires_in":7200}`)
			tok, err := p.client().StableToken(ctx, "wxapp", "the-secret", force)
			if err != nil {
				t.Fatal(err)
			}
			if p.method != http.MethodPost || p.path != "/cgi-bin/stable_token" {
				t.Errorf("request = %s %s", p.method, p.path)
			}
			if len(p.query) != 0 {
				t.Errorf("query = %v, want none: the secret belongs in the body", p.query)
			}
			if ct := p.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var sent map[string]any
			if err := json.Unmarshal(p.body, &sent); err != nil {
				t.Fatalf("body %q: %v", p.body, err)
			}
			want := map[string]any{"grant_type": "client_credential", "appid": "wxapp", "secret": "the-secret", "force_refresh": force}
			if fmt.Sprint(sent) != fmt.Sprint(want) {
				t.Errorf("body = %v, want %v", sent, want)
			}
			if tok.Token != "ACCESS-TOKEN" || tok.ExpiresIn != 2*time.Hour {
				t.Errorf("token = %#v (%q)", tok, tok.Token)
			}
		})
	}

	errorCases := []struct {
		name, answer string
		class        Class
	}{
		{"bad_secret_40001", `{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest, rid: 1-2-3"}`, ClassConfig},
		{"ip_not_whitelisted", `{"errcode":40164,"errmsg":"invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: 611740a4-27f9a8ba-065da01b"}`, ClassConfig},
		{"ip_risk", `{"errcode":89503,"errmsg":"could not get access token, ip risk, rid: 1-2-3"}`, ClassConfig},
		{"daily_quota", `{"errcode":45009,"errmsg":"reach max api daily quota limit rid: 64eed8de-4cdaca9b-1be8f193"}`, ClassQuota},
		{"busy", `{"errcode":-1,"errmsg":"system error"}`, ClassTransient},
		{"unknown_code", `{"errcode":40002,"errmsg":"invalid grant_type"}`, ClassUnknown},
	}
	for _, c := range errorCases {
		t.Run("answer_"+c.name, func(t *testing.T) {
			p := newPlatform(t, c.answer)
			_, err := p.client().StableToken(ctx, "wxapp", "sec", false)
			var we *Error
			if !errors.As(err, &we) || we.API != "/cgi-bin/stable_token" {
				t.Fatalf("err = %v, want *Error for /cgi-bin/stable_token", err)
			}
			if got := ClassOf(err); got != c.class {
				t.Errorf("ClassOf = %v, want %v", got, c.class)
			}
		})
	}

	t.Run("answer_without_token_is_an_error", func(t *testing.T) {
		for _, answer := range []string{`{"expires_in":7200}`, `{"access_token":"T"}`, `{"access_token":"T","expires_in":0}`} {
			p := newPlatform(t, answer)
			if tok, err := p.client().StableToken(ctx, "wxapp", "sec", false); err == nil {
				t.Errorf("answer %s: got %v, want an error", answer, tok)
			}
		}
	})
}

func TestToken(t *testing.T) {
	ctx := context.Background()
	p := newPlatform(t, `{"access_token":"CLASSIC","expires_in":7200}`)
	tok, err := p.client().Token(ctx, "wxapp", "the-secret")
	if err != nil {
		t.Fatal(err)
	}
	if p.method != http.MethodGet || p.path != "/cgi-bin/token" {
		t.Errorf("request = %s %s", p.method, p.path)
	}
	want := url.Values{"grant_type": {"client_credential"}, "appid": {"wxapp"}, "secret": {"the-secret"}}
	if p.query.Encode() != want.Encode() {
		t.Errorf("query = %v, want %v", p.query, want)
	}
	if tok.Token != "CLASSIC" || tok.ExpiresIn != 7200*time.Second {
		t.Errorf("token = %q %v", tok.Token, tok.ExpiresIn)
	}

	p = newPlatform(t, `{"errcode":40013,"errmsg":"invalid appid rid: 1-2-3"}`)
	_, err = p.client().Token(ctx, "wxnope", "sec")
	if ClassOf(err) != ClassConfig || RID(err) != "1-2-3" {
		t.Errorf("err = %v, class %v, rid %q", err, ClassOf(err), RID(err))
	}

	if _, err := p.client().Token(ctx, "", "sec"); err == nil {
		t.Error("empty appid accepted")
	}
}

func TestClient_slow_platform_trips_the_timeout_as_transient(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	t.Run("client_timeout", func(t *testing.T) {
		c := New(Options{APIBase: slow.URL, HTTPClient: &http.Client{Timeout: 150 * time.Millisecond}})
		start := time.Now()
		_, err := c.StableToken(context.Background(), "wxapp", "the-secret", false)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("call took %v despite a 150ms timeout", took)
		}
		if ClassOf(err) != ClassTransient {
			t.Fatalf("err = %v, class %v, want transient", err, ClassOf(err))
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("timeout not detectable through %v", err)
		}
		if strings.Contains(err.Error(), "the-secret") {
			t.Errorf("error text leaks the secret: %v", err)
		}
	})

	t.Run("context_deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		_, err := New(Options{APIBase: slow.URL}).Token(ctx, "wxapp", "the-secret")
		if ClassOf(err) != ClassTransient || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, class %v; want transient wrapping DeadlineExceeded", err, ClassOf(err))
		}
		if strings.Contains(err.Error(), "the-secret") {
			t.Errorf("error text leaks the secret: %v", err)
		}
	})

	t.Run("context_canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := New(Options{APIBase: slow.URL}).Code2Session(ctx, "wxapp", "the-secret", "code")
		if ClassOf(err) != ClassTransient || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, class %v; want transient wrapping Canceled", err, ClassOf(err))
		}
	})
}

func TestClient_refuses_oversized_answers(t *testing.T) {
	big := `{"openid":"o","session_key":"k","pad":"` + strings.Repeat("x", maxBody) + `"}`
	p := newPlatform(t, big)
	_, err := p.client().Code2Session(context.Background(), "wxapp", "sec", "code")
	if err == nil || ClassOf(err) != ClassTransient || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a transient size error", err)
	}
}

func TestClient_default_does_not_follow_redirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		io.WriteString(w, `{"access_token":"T","expires_in":7200}`)
	}))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	_, err := New(Options{APIBase: redirector.URL}).StableToken(context.Background(), "wxapp", "the-secret", false)
	if ClassOf(err) != ClassTransient {
		t.Errorf("err = %v, want a transient error", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("secret-carrying POST was replayed to the redirect target %d times", n)
	}
}

func TestNew_defaults(t *testing.T) {
	c := New(Options{})
	if c.APIBase() != "https://api.weixin.qq.com" || c.OpenBase() != "https://open.weixin.qq.com" {
		t.Errorf("bases = %q, %q", c.APIBase(), c.OpenBase())
	}
	if c.hc == nil || c.hc.Timeout != 5*time.Second {
		t.Errorf("default HTTP client = %+v, want a 5s timeout", c.hc)
	}

	own := &http.Client{Timeout: time.Second}
	c = New(Options{APIBase: "http://sandbox:8080/", OpenBase: "http://sandbox:8080/open/", HTTPClient: own})
	if c.APIBase() != "http://sandbox:8080" || c.OpenBase() != "http://sandbox:8080/open" {
		t.Errorf("bases = %q, %q; want trailing slash trimmed", c.APIBase(), c.OpenBase())
	}
	if c.hc != own {
		t.Error("caller's HTTP client replaced")
	}
}

func TestSecretsStayOutOfLogs(t *testing.T) {
	s := Session{OpenID: "o-visible", SessionKey: "SESSIONKEY-hidden", UnionID: "u-visible"}
	tok := AccessToken{Token: "TOKEN-hidden", ExpiresIn: time.Hour}

	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	log.Info("login", "session", s, "token", tok)
	log.Info("login", slog.Any("session", &s))

	outputs := map[string]string{
		"slog": logged.String(),
		"%v":   fmt.Sprintf("%v %v", s, tok),
		"%+v":  fmt.Sprintf("%+v %+v", s, tok),
		"%#v":  fmt.Sprintf("%#v %#v", s, tok),
		"%s":   fmt.Sprintf("%s %s", s, tok),
		"ptr":  fmt.Sprintf("%v %v", &s, &tok),
	}
	for how, out := range outputs {
		if strings.Contains(out, "hidden") {
			t.Errorf("%s prints a secret: %s", how, out)
		}
		if !strings.Contains(out, "o-visible") {
			t.Errorf("%s lost the openid: %s", how, out)
		}
	}
	if !strings.Contains(logged.String(), `"session_key":"[redacted]"`) {
		t.Errorf("slog output does not mark the redaction: %s", logged.String())
	}
}

func TestErrorLogValue(t *testing.T) {
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("send failed", "err", newError("/cgi-bin/message/subscribe/send", 43101, "user refuse to accept the msg rid: 1-2-3"))
	for _, want := range []string{`"errcode":43101`, `"rid":"1-2-3"`, `"class":"user_state"`, `"api":"/cgi-bin/message/subscribe/send"`} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log %s lacks %s", logged.String(), want)
		}
	}
}

// counter records Count calls as "name api errcode".
type counter struct{ got []string }

func (c *counter) Count(name string, dims ...string) {
	c.got = append(c.got, name+" "+strings.Join(dims, " "))
}

func TestClient_counts_errcode_answers_by_api_and_code(t *testing.T) {
	var c counter
	bad := newPlatform(t, `{"errcode":40029,"errmsg":"invalid code, rid: 0000"}`)
	good := newPlatform(t, `{"openid":"o","session_key":"k"}`)
	ctx := context.Background()
	New(Options{APIBase: bad.URL, Metrics: &c}).Code2Session(ctx, "wxapp", "sec", "code")
	New(Options{APIBase: good.URL, Metrics: &c}).Code2Session(ctx, "wxapp", "sec", "code")
	want := []string{"WeChatErrors api /sns/jscode2session errcode 40029"}
	if fmt.Sprint(c.got) != fmt.Sprint(want) {
		t.Fatalf("counted %q, want %q (errors only)", c.got, want)
	}
}
