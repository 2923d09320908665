package handler

// Sign-in through any configured official account and any website app
// (issue 14): each entry point through the sandbox's pages, a state good
// only at the callback of the app that issued it, the failures of the QR
// login, states of the deploy before, and a deployment without an
// official account.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/oauthstate"
	"wxbridge/shared/wechat"
)

var (
	oa1, oa2   = sandbox.DevOfficialAccount.AppID, sandbox.DevOfficialAccount2.AppID
	web1, web2 = sandbox.DevWebsite.AppID, sandbox.DevWebsite2.AppID
)

func appOf(a sandbox.App) config.App { return config.App{AppID: a.AppID, Secret: a.Secret} }

// multiApp adds a second official account and two website apps to the
// configuration, all bound to the sandbox's one open platform account.
func multiApp() []testenv.Option {
	return []testenv.Option{
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			c.OfficialAccounts = []config.OfficialAccount{{App: appOf(sandbox.DevOfficialAccount2)}}
			c.WebsiteApps = []config.App{appOf(sandbox.DevWebsite), appOf(sandbox.DevWebsite2)}
		}),
	}
}

// TestEveryEntryPoint signs one person in at each route, in a browser
// through the platform's pages: each app's own page and callback, a
// session of that app, and one person in the end, joined by the unionid
// that every app of the open platform account sees.
func TestEveryEntryPoint(t *testing.T) {
	e := newEnv(t, multiApp()...)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	const qr, authorize = "/connect/qrconnect", "/connect/oauth2/authorize"
	var uid string
	for _, c := range []struct {
		name, start, page, appid, callback, scope string
	}{
		{"default_website_app", "/web/authorize", qr, web1, "/web/callback", ""},
		{"official_account_by_appid", "/oauth/" + oa2 + "/authorize", authorize, oa2, "/oauth/" + oa2 + "/callback", wechat.ScopeUserInfo},
		{"default_official_account", "/oauth/authorize", authorize, oa1, "/oauth/callback", wechat.ScopeUserInfo},
		{"default_official_account_by_appid", "/oauth/" + oa1 + "/authorize", authorize, oa1, "/oauth/" + oa1 + "/callback", wechat.ScopeBase},
		{"website_app_by_appid", "/web/" + web2 + "/authorize", qr, web2, "/web/" + web2 + "/callback", wechat.ScopeLogin},
	} {
		t.Run(c.name, func(t *testing.T) {
			page := e.h5.URL + "/account?tab=" + c.name
			v := e.browse(t, e.bridge.URL+c.start+"?"+url.Values{"scope": {c.scope}, "return_to": {page}}.Encode(), url.Values{"person": {p.ID}})
			if len(v.hops) != 3 {
				t.Fatalf("hops = %v, want the platform's page, the callback, the H5 page", v.hops)
			}
			auth, cb := v.hops[0], v.hops[1]
			if auth.Path != c.page || auth.Query().Get("appid") != c.appid || !strings.HasPrefix(auth.Query().Get("redirect_uri"), e.bridge.URL+c.callback+"?") {
				t.Errorf("platform hop = %s", auth)
			}
			if cb.Path != c.callback || v.final.String() != page+"#"+v.final.Fragment {
				t.Fatalf("callback %s, ended at %s", cb, v.final)
			}
			s := e.verifySession(t, v.fragment().Get("session"))
			openid, _ := e.sb.OpenID(p.ID, c.appid)
			if s.AppID != c.appid || s.OpenID != openid {
				t.Errorf("session = %+v, want appid %s, openid %s", s, c.appid, openid)
			}
			if uid == "" {
				uid = s.UID
			}
			if s.UID != uid {
				t.Errorf("signed in as %s, before as %s: want one person", s.UID, uid)
			}
		})
	}
	person, err := e.store.ByUID(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	for _, appid := range []string{oa1, oa2, web1, web2} {
		if _, openid, ok := person.OpenID(appid); !ok || openid == "" {
			t.Errorf("person %+v has no identity in %s", person, appid)
		}
	}
	if person.UnionID != p.UnionID {
		t.Errorf("unionid %q, want %q", person.UnionID, p.UnionID)
	}
	if web, err := e.store.Lookup(context.Background(), identity.WebKey(web1, person.Web[web1].OpenID)); err != nil || web.UID != uid {
		t.Errorf("website identity resolves to %s, %v", web.UID, err)
	}
}

// TestStateOfAnotherAppIsRefused: a state issued by one app's authorize
// route, brought by the same browser to another app's callback, is
// invalid_state there (nothing linked, the state not spent), and still
// finishes at its own.
func TestStateOfAnotherAppIsRefused(t *testing.T) {
	e := newEnv(t, multiApp()...)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/done"
	for _, from := range []struct{ authorize, callback, appid, scope string }{
		{"/oauth/" + oa2 + "/authorize", "/oauth/" + oa2 + "/callback", oa2, wechat.ScopeBase},
		{"/web/authorize", "/web/callback", web1, wechat.ScopeLogin},
	} {
		t.Run(from.appid, func(t *testing.T) {
			before := e.identityItems(t)
			callback, state := e.startAt(t, e.h, from.authorize, from.scope, page)
			code, err := e.sb.OAuthCode(sandbox.OAuthConsent{AppID: from.appid, Person: p.ID, Scope: from.scope})
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []string{CallbackPath, "/oauth/" + oa1 + "/callback", "/oauth/" + oa2 + "/callback", WebCallbackPath, "/web/" + web2 + "/callback"} {
				if at == from.callback {
					continue
				}
				refusedPage(t, e.finishAt(t, e.h, at, callback, code, state), http.StatusBadRequest, "invalid_state")
			}
			if n := e.identityItems(t); n != before {
				t.Fatalf("refused states wrote %d items", n-before)
			}
			if f := backTo(t, e.finishAt(t, e.h, from.callback, callback, code, state), page); f.Get("session") == "" {
				t.Fatalf("at its own callback: %v", f)
			}
		})
	}
}

// TestUnknownApp: an appid that is not configured as the route's kind,
// or a kind with no app configured, is a 404 page.
func TestUnknownApp(t *testing.T) {
	e := newEnv(t, multiApp()...)
	oaOnly := e.cfg
	oaOnly.WebsiteApps = nil
	single := e.newHandlerOf(t, oaOnly, Options{Origins: []string{e.h5.URL}}, nil)
	for name, c := range map[string]struct {
		h      *Handler
		path   string
		status int
		code   string
	}{
		"website_app_at_oauth":           {e.h, "/oauth/" + web1 + "/authorize", 404, "unknown_app"},
		"official_account_at_web":        {e.h, "/web/" + oa1 + "/authorize", 404, "unknown_app"},
		"mini_program":                   {e.h, "/oauth/" + sandbox.DevMiniProgram.AppID + "/callback", 404, "unknown_app"},
		"not_configured":                 {e.h, "/web/wx00000000000000ff/callback", 404, "unknown_app"},
		"no_website_app_configured":      {single, WebAuthorizePath, 404, "unknown_app"},
		"no_website_app_at_its_callback": {single, WebCallbackPath, 404, "unknown_app"},
		"another_step":                   {e.h, "/oauth/" + oa2 + "/token", 404, "not_found"},
	} {
		t.Run(name, func(t *testing.T) {
			refusedPage(t, e.get(t, c.h, c.path+"?"+url.Values{"return_to": {e.h5.URL + "/"}}.Encode()), c.status, c.code)
		})
	}
}

// TestWebsiteFailures: the QR login's refusals and failures come back to
// the page in the fragment, nothing linked, as the official account's do.
func TestWebsiteFailures(t *testing.T) {
	e := newEnv(t, multiApp()...)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/done"
	code := func(t *testing.T) string {
		c, err := e.sb.OAuthCode(sandbox.OAuthConsent{AppID: web1, Person: p.ID, Scope: wechat.ScopeLogin})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// DynamoDB throttles every call of the people store, past the SDK's
	// retries (kept short): the state was used, the link fails.
	faults := awsfault.ForTest(t, e.te.IAM().URL())
	cfg := faults.Config(e.te.FunctionAWS("OAuthCallbackFunction"))
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 5 * time.Millisecond })
	}
	throttled := e.newHandlerOf(t, e.cfg, Options{Origins: []string{e.h5.URL}, PublicURL: e.bridge.URL}, func(d *Deps) {
		d.People = identity.NewStore(dynamodb.NewFromConfig(cfg), e.table)
	})

	// The person cancels on the phone: the QR page sends the browser back
	// without a code.
	v := e.browse(t, e.bridge.URL+WebAuthorizePath+"?"+url.Values{"return_to": {page}}.Encode(), url.Values{"refuse": {"1"}})
	if f := v.fragment(); v.final.Path != "/done" || len(f) != 1 || f.Get("error") != "access_denied" {
		t.Errorf("cancelled: at %s, fragment %v", v.final, f)
	}

	for _, c := range []struct {
		name     string
		h        *Handler
		code     func(t *testing.T) string
		setup    func(t *testing.T)
		fragment string
	}{
		{name: "used_code", code: func(t *testing.T) string {
			c := code(t)
			if _, err := e.wc.OAuthToken(context.Background(), web1, sandbox.DevWebsite.Secret, c); err != nil {
				t.Fatal(err)
			}
			return c
		}, fragment: "invalid_code"},
		{name: "wechat_busy", code: code, setup: func(t *testing.T) {
			if err := e.sb.InjectFault(sandbox.Fault{Path: "/sns/oauth2/access_token", ErrCode: -1, Count: 1}); err != nil {
				t.Fatal(err)
			}
		}, fragment: "temporarily_unavailable"},
		{name: "dynamodb_throttled", h: throttled, code: code, setup: func(t *testing.T) {
			if _, err := faults.Add(awsfault.Rule{Service: awsfault.DynamoDB, Error: awsfault.ThrottlingException}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(faults.Clear)
		}, fragment: "temporarily_unavailable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := c.h
			if h == nil {
				h = e.h
			}
			callback, state := e.startAt(t, h, WebAuthorizePath, "", page)
			code := c.code(t)
			if c.setup != nil {
				c.setup(t)
			}
			f := backTo(t, e.finishAt(t, h, WebCallbackPath, callback, code, state), page)
			if len(f) != 1 || f.Get("error") != c.fragment {
				t.Errorf("fragment %v, want error=%s only", f, c.fragment)
			}
			if n := e.identityItems(t); n != 0 {
				t.Errorf("%d items stored", n)
			}
		})
	}
	// The page starts again once DynamoDB is back: a new sign-in works.
	v = e.browse(t, e.bridge.URL+WebAuthorizePath+"?"+url.Values{"return_to": {page}}.Encode(), url.Values{"person": {p.ID}})
	if v.fragment().Get("session") == "" {
		t.Fatalf("after the failures: %v", v.fragment())
	}
}

// TestStatesOfTheDeployBefore: a sign-in in flight across the deploy that
// made states name their app holds a state of the version before, issued
// by /oauth/authorize, the only sign-in there was. It finishes at the
// default official account's callback, where it was sent, and is
// invalid_state at any other app's.
func TestStatesOfTheDeployBefore(t *testing.T) {
	e := newEnv(t, multiApp()...)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/done"
	callback := e.bridge.URL + CallbackPath + "?" + url.Values{"return_to": {page}}.Encode()
	for _, at := range []string{"/oauth/" + oa2 + "/callback", WebCallbackPath, "/web/" + web2 + "/callback"} {
		state := e.legacySignIn(t, page)
		refusedPage(t, e.finishAt(t, e.h, at, callback, freshCode(e, p), state), http.StatusBadRequest, "invalid_state")
	}
	state := e.legacySignIn(t, page)
	if f := backTo(t, e.finish(t, e.h, callback, freshCode(e, p), state), page); f.Get("session") == "" {
		t.Fatalf("legacy state at /oauth/callback: %v", f)
	}
}

// legacySignIn plays /oauth/authorize of the version before for the
// browser: the state as it issued them (version 1: no app under the MAC)
// and its binding cookie in the browser's jar.
func (e *env) legacySignIn(t *testing.T, returnTo string) string {
	t.Helper()
	hmacOf := func(key []byte, parts ...string) []byte {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write([]byte(p))
		}
		return m.Sum(nil)
	}
	body := make([]byte, 18)
	body[0], body[1] = 1, 'b'
	binary.BigEndian.PutUint32(body[2:6], uint32(time.Now().Add(oauthstate.TTL).Unix()))
	rand.Read(body[6:])
	nonce := hex.EncodeToString(body[6:])
	sum := hmacOf(hmacOf([]byte(sessionKey), "wxbridge oauth state v1"), "wxbridge-oauth-state-v1\n", string(body), "\n", returnTo)[:16]
	binding := hmacOf(hmacOf([]byte(sessionKey), "wxbridge oauth binding v1"), "wxbridge-oauth-binding-v1\n", nonce)[:16]
	u, _ := url.Parse(e.bridge.URL + "/")
	e.jar.SetCookies(u, []*http.Cookie{{Name: "wxb_oauth_" + nonce, Value: base64.RawURLEncoding.EncodeToString(binding), Path: "/"}})
	return hex.EncodeToString(append(body, sum...))
}

// TestWebsiteAppsOnly: a deployment with website apps and no official
// account serves QR login; the official account's routes are unknown_app.
func TestWebsiteAppsOnly(t *testing.T) {
	e := newEnv(t, multiApp()...)
	cfg := e.cfg
	cfg.OfficialAccount, cfg.OfficialAccounts = config.OfficialAccount{}, nil
	h := e.newHandlerOf(t, cfg, Options{Origins: []string{e.h5.URL}, PublicURL: e.bridge.URL}, nil)
	e.h = h
	refusedPage(t, e.get(t, h, AuthorizePath+"?"+url.Values{"return_to": {e.h5.URL + "/"}}.Encode()), 404, "unknown_app")
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	v := e.browse(t, e.bridge.URL+"/web/"+web2+"/authorize?"+url.Values{"return_to": {e.h5.URL + "/"}}.Encode(), url.Values{"person": {p.ID}})
	if s := e.verifySession(t, v.fragment().Get("session")); s.AppID != web2 {
		t.Fatalf("session %+v, want the website app's", s)
	}

	noSecret := cfg
	noSecret.WebsiteApps = []config.App{{AppID: web1}}
	if _, err := New(noSecret, Options{Origins: []string{e.h5.URL}}, Deps{}); err == nil {
		t.Error("a website app without its secret accepted")
	}
}
