package wechat

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestAuthorizeURL(t *testing.T) {
	c := New(Options{OpenBase: "https://open.example/"})

	t.Run("parameters_in_the_platform_order_with_wechat_redirect", func(t *testing.T) {
		got, err := c.AuthorizeURL("wxoa", "https://api.example/oauth/callback?return_to=https%3A%2F%2Fh5.example%2Fa%3Fb%3D1", ScopeUserInfo, "abc123")
		if err != nil {
			t.Fatal(err)
		}
		want := "https://open.example/connect/oauth2/authorize?appid=wxoa" +
			"&redirect_uri=https%3A%2F%2Fapi.example%2Foauth%2Fcallback%3Freturn_to%3Dhttps%253A%252F%252Fh5.example%252Fa%253Fb%253D1" +
			"&response_type=code&scope=snsapi_userinfo&state=abc123#wechat_redirect"
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		// The redirect_uri survives the round trip through the query.
		u, _ := url.Parse(got)
		if r := u.Query().Get("redirect_uri"); r != "https://api.example/oauth/callback?return_to=https%3A%2F%2Fh5.example%2Fa%3Fb%3D1" {
			t.Errorf("redirect_uri decodes to %q", r)
		}
	})

	t.Run("a_website_app_logs_in_on_the_qr_connect_page", func(t *testing.T) {
		got, err := c.AuthorizeURL("wxweb", "https://api.example/web/callback", ScopeLogin, "abc123")
		if err != nil {
			t.Fatal(err)
		}
		want := "https://open.example/connect/qrconnect?appid=wxweb" +
			"&redirect_uri=https%3A%2F%2Fapi.example%2Fweb%2Fcallback" +
			"&response_type=code&scope=snsapi_login&state=abc123#wechat_redirect"
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})

	state128 := strings.Repeat("aZ9", 42) + "xy"
	if _, err := c.AuthorizeURL("wxoa", "https://api.example/cb", ScopeBase, state128); err != nil {
		t.Errorf("a 128-character state is allowed: %v", err)
	}
	for name, args := range map[string][4]string{
		"unknown_scope":       {"wxoa", "https://api.example/cb", "snsapi_privateinfo", "s"},
		"state_too_long":      {"wxoa", "https://api.example/cb", ScopeBase, state128 + "a"},
		"state_not_alnum":     {"wxoa", "https://api.example/cb", ScopeBase, "a-b"},
		"relative_redirect":   {"wxoa", "/oauth/callback", ScopeBase, "s"},
		"javascript_redirect": {"wxoa", "javascript:alert(1)", ScopeBase, "s"},
		"no_appid":            {"", "https://api.example/cb", ScopeBase, "s"},
	} {
		t.Run("refuses_"+name, func(t *testing.T) {
			if u, err := c.AuthorizeURL(args[0], args[1], args[2], args[3]); err == nil {
				t.Errorf("got %s, want an error", u)
			}
		})
	}
}

func TestOAuthToken(t *testing.T) {
	ctx := context.Background()

	t.Run("sends_credentials_and_code_and_types_the_answer", func(t *testing.T) {
		p := newPlatform(t, `{"access_token":"AT-1","expires_in":7200,"refresh_token":"RT-1","openid":"o-oa","scope":"snsapi_userinfo","unionid":"u-1"}`)
		tok, err := p.client().OAuthToken(ctx, "wxoa", "oa-secret", "the-code")
		if err != nil {
			t.Fatal(err)
		}
		want := url.Values{"appid": {"wxoa"}, "secret": {"oa-secret"}, "code": {"the-code"}, "grant_type": {"authorization_code"}}
		if p.method != http.MethodGet || p.path != "/sns/oauth2/access_token" || p.query.Encode() != want.Encode() {
			t.Errorf("request = %s %s ? %v", p.method, p.path, p.query)
		}
		if tok != (WebToken{AccessToken: "AT-1", ExpiresIn: 2 * time.Hour, RefreshToken: "RT-1", OpenID: "o-oa", Scope: ScopeUserInfo, UnionID: "u-1"}) {
			t.Errorf("token = %#v", tok)
		}
		if !tok.HasScope(ScopeUserInfo) || tok.HasScope(ScopeBase) {
			t.Error("HasScope disagrees with the scope")
		}
	})

	t.Run("snapshot_user", func(t *testing.T) {
		p := newPlatform(t, `{"access_token":"AT","expires_in":7200,"refresh_token":"RT","openid":"o-virtual","scope":"snsapi_userinfo","is_snapshotuser":1}`)
		tok, err := p.client().OAuthToken(ctx, "wxoa", "s", "c")
		if err != nil || !tok.Snapshot {
			t.Fatalf("got %v, %v; want a snapshot user", tok, err)
		}
	})

	t.Run("several_scopes", func(t *testing.T) {
		tok := WebToken{Scope: "snsapi_base, snsapi_userinfo"}
		if !tok.HasScope(ScopeUserInfo) || !tok.HasScope(ScopeBase) {
			t.Error("a comma-separated scope lists both")
		}
	})

	for _, c := range []struct {
		answer string
		class  Class
	}{
		{`{"errcode":40029,"errmsg":"invalid code, rid: 1-2-3"}`, ClassCode},
		{`{"errcode":40163,"errmsg":"code been used, rid: 1-2-3"}`, ClassCode},
		{`{"errcode":42003,"errmsg":"code expired, rid: 1-2-3"}`, ClassCode},
		{`{"errcode":-1,"errmsg":"system error, rid: 1-2-3"}`, ClassTransient},
		{`{"errcode":40125,"errmsg":"invalid appsecret, rid: 1-2-3"}`, ClassConfig},
		{`{"expires_in":7200,"openid":"o"}`, ClassTransient}, // no token: unusable answer
	} {
		t.Run("answer_"+c.answer, func(t *testing.T) {
			p := newPlatform(t, c.answer)
			_, err := p.client().OAuthToken(ctx, "wxoa", "oa-secret", "the-code")
			if got := ClassOf(err); got != c.class {
				t.Errorf("class = %s (%v), want %s", got, err, c.class)
			}
		})
	}

	t.Run("bad_inputs_fail_without_a_request", func(t *testing.T) {
		p := newPlatform(t, `{}`)
		for _, args := range [][3]string{{"", "s", "c"}, {"a", "", "c"}, {"a", "s", ""}, {"a", "s", strings.Repeat("c", maxCodeLen+1)}} {
			if _, err := p.client().OAuthToken(ctx, args[0], args[1], args[2]); err == nil {
				t.Errorf("OAuthToken%q succeeded", args)
			}
		}
		if p.hits.Load() != 0 {
			t.Errorf("%d requests sent", p.hits.Load())
		}
	})
}

func TestRefreshOAuthToken(t *testing.T) {
	ctx := context.Background()
	p := newPlatform(t, `{"access_token":"AT-2","expires_in":7200,"refresh_token":"RT-1","openid":"o-oa","scope":"snsapi_base"}`)
	tok, err := p.client().RefreshOAuthToken(ctx, "wxoa", "RT-1")
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"appid": {"wxoa"}, "grant_type": {"refresh_token"}, "refresh_token": {"RT-1"}}
	if p.path != "/sns/oauth2/refresh_token" || p.query.Encode() != want.Encode() {
		t.Errorf("request = %s ? %v (the refresh takes no secret)", p.path, p.query)
	}
	if tok.AccessToken != "AT-2" || tok.OpenID != "o-oa" || tok.ExpiresIn != 2*time.Hour {
		t.Errorf("token = %#v", tok)
	}
	for _, code := range []int{40030, 42002} {
		p := newPlatform(t, fmt.Sprintf(`{"errcode":%d,"errmsg":"invalid refresh_token, rid: 1-2-3"}`, code))
		if _, err := p.client().RefreshOAuthToken(ctx, "wxoa", "RT"); ClassOf(err) != ClassCode {
			t.Errorf("errcode %d: class %s, want code (consent again)", code, ClassOf(err))
		}
	}
	if _, err := p.client().RefreshOAuthToken(ctx, "wxoa", ""); err == nil {
		t.Error("an empty refresh token was sent")
	}
}

func TestUserInfo(t *testing.T) {
	ctx := context.Background()
	p := newPlatform(t, `{"openid":"o-oa","nickname":"小雨","sex":0,"province":"","city":"","country":"","headimgurl":"https://thirdwx.qlogo.cn/x/132","privilege":[],"unionid":"u-1"}`)
	info, err := p.client().UserInfo(ctx, "AT-1", "o-oa", "")
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"access_token": {"AT-1"}, "openid": {"o-oa"}, "lang": {"zh_CN"}}
	if p.path != "/sns/userinfo" || p.query.Encode() != want.Encode() {
		t.Errorf("request = %s ? %v", p.path, p.query)
	}
	if info.OpenID != "o-oa" || info.Nickname != "小雨" || info.UnionID != "u-1" || info.HeadImgURL == "" {
		t.Errorf("info = %+v", info.Nickname)
	}
	p = newPlatform(t, `{"errcode":48001,"errmsg":"api unauthorized, rid: 1-2-3"}`)
	if _, err := p.client().UserInfo(ctx, "AT-base", "o-oa", "en"); err == nil || p.query.Get("lang") != "en" {
		t.Errorf("a snsapi_base grant read a profile: %v", err)
	}
}

// TestWebTokensStayOutOfLogs: the web access and refresh tokens and the
// nickname never reach logs or error texts, also when the call fails in
// transport (the request URL carries the code and the tokens).
func TestWebTokensStayOutOfLogs(t *testing.T) {
	tok := WebToken{AccessToken: "WEBTOKEN-hidden", RefreshToken: "REFRESH-hidden", OpenID: "o-visible", ExpiresIn: time.Hour}
	info := UserInfo{OpenID: "o-visible", Nickname: "NICK-hidden", HeadImgURL: "https://avatar-hidden"}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("oauth", "token", tok, "info", info)
	for how, out := range map[string]string{
		"slog": logged.String(),
		"%v":   fmt.Sprintf("%v %v", tok, info),
		"%+v":  fmt.Sprintf("%+v %+v", tok, info),
		"%#v":  fmt.Sprintf("%#v %#v", tok, info),
	} {
		if strings.Contains(out, "hidden") {
			t.Errorf("%s prints a secret: %s", how, out)
		}
		if !strings.Contains(out, "o-visible") {
			t.Errorf("%s lost the openid: %s", how, out)
		}
	}

	// A server that hangs up: the transport error must not quote the URL.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	}))
	defer srv.Close()
	c := New(Options{APIBase: srv.URL})
	ctx := context.Background()
	_, err1 := c.OAuthToken(ctx, "wxoa", "SECRET-hidden", "CODE-hidden")
	_, err2 := c.RefreshOAuthToken(ctx, "wxoa", "REFRESH-hidden")
	_, err3 := c.UserInfo(ctx, "WEBTOKEN-hidden", "o-1", "")
	for i, err := range []error{err1, err2, err3} {
		if err == nil || ClassOf(err) != ClassTransient {
			t.Errorf("call %d: %v, want a transient error", i, err)
		}
		if err != nil && strings.Contains(err.Error(), "hidden") {
			t.Errorf("call %d error leaks: %v", i, err)
		}
	}
}
