package lambdatest

// What configuring more apps costs each request: DynamoDB requests, Secrets
// Manager reads and WeChat calls per mini-program login, mobile-app login,
// push and OAuth callback (official account and website QR login), with
// one app of each kind configured and with five of each. Issue 14's
// promise: at most one more read anywhere.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	followevent "wxbridge/functions/follow-event/handler"
	login "wxbridge/functions/login/handler"
	oauthcallback "wxbridge/functions/oauth-callback/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/wechat/push"
)

// cost is what one request made.
type cost struct {
	reads, writes, secrets, wechat int
	ops                            map[string]int
}

func (c cost) String() string {
	var ops []string
	for op, n := range c.ops {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
	}
	sort.Strings(ops)
	return fmt.Sprintf("%d reads, %d writes, %d secret reads, %d WeChat calls (%s)", c.reads, c.writes, c.secrets, c.wechat, strings.Join(ops, ", "))
}

// wechatCounter counts the platform calls the functions make.
type wechatCounter struct {
	mu sync.Mutex
	n  int
}

func (w *wechatCounter) take() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.n
	w.n = 0
	return n
}

func costOf(aws map[string]int, wechat int) cost {
	c := cost{ops: aws, wechat: wechat}
	for op, n := range aws {
		switch op {
		case "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems":
			c.reads += n
		case "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem":
			c.writes += n
		case "GetSecretValue":
			c.secrets += n
		}
	}
	return c
}

// extraApps are the third to fifth apps of each kind: configured, bound to
// the open platform, never used by the requests measured.
func extraApps(kind sandbox.AppKind, first int) []sandbox.AppSpec {
	var out []sandbox.AppSpec
	for i := first; i < first+3; i++ {
		out = append(out, sandbox.AppSpec{Kind: kind, App: sandbox.App{
			AppID:  fmt.Sprintf("wx5a0dbe0c0de001%02d", i),
			Secret: fmt.Sprintf("5a0dbe0c5ec7e70000000000000b%04d", i),
		}})
	}
	return out
}

func cfgApp(a sandbox.App) config.App { return config.App{AppID: a.AppID, Secret: a.Secret} }

// measureApps runs each entry point once to warm up and once measured,
// with n (1 or 5) apps of each kind configured.
func measureApps(t *testing.T, n int) map[string]cost {
	t.Helper()
	ctx := context.Background()
	// One server per function, as the template's routes of two functions
	// cannot share one ServeMux (/{file} against /me); the OAuth one is
	// the public URL.
	var loginMux, pushMux, mux http.ServeMux
	api := httptest.NewServer(&mux)
	t.Cleanup(api.Close)
	loginSrv, pushSrv := httptest.NewServer(&loginMux), httptest.NewServer(&pushMux)
	t.Cleanup(loginSrv.Close)
	t.Cleanup(pushSrv.Close)
	h5 := "https://h5.example"

	extra := map[sandbox.AppKind][]sandbox.AppSpec{
		sandbox.AppMiniProgram:     extraApps(sandbox.AppMiniProgram, 10),
		sandbox.AppOfficialAccount: extraApps(sandbox.AppOfficialAccount, 20),
		sandbox.AppWebsite:         extraApps(sandbox.AppWebsite, 30),
		sandbox.AppMobile:          extraApps(sandbox.AppMobile, 40),
	}
	te := testenv.New(t,
		testenv.Parameter("H5Origins", h5),
		testenv.Parameter("PublicUrl", api.URL),
		testenv.Sandbox(func(c *sandbox.Config) {
			c.Apps = sandbox.DefaultApps()
			for _, specs := range extra {
				c.Apps = append(c.Apps, specs...)
			}
		}),
		testenv.Configure(func(c *config.Config) {
			c.WebsiteApps = []config.App{cfgApp(sandbox.DevWebsite)}
			c.MobileApps = []config.App{cfgApp(sandbox.DevMobile)}
			if n == 1 {
				return
			}
			c.MiniPrograms = []config.App{cfgApp(sandbox.DevMiniProgram2)}
			c.OfficialAccounts = []config.OfficialAccount{{App: cfgApp(sandbox.DevOfficialAccount2), Token: "secondaccounttoken"}}
			c.WebsiteApps = append(c.WebsiteApps, cfgApp(sandbox.DevWebsite2))
			c.MobileApps = append(c.MobileApps, cfgApp(sandbox.DevMobile2))
			for _, s := range extra[sandbox.AppMiniProgram] {
				c.MiniPrograms = append(c.MiniPrograms, cfgApp(s.App))
			}
			for _, s := range extra[sandbox.AppOfficialAccount] {
				c.OfficialAccounts = append(c.OfficialAccounts, config.OfficialAccount{App: cfgApp(s.App), Token: "othertoken" + s.App.AppID[14:]})
			}
			for _, s := range extra[sandbox.AppWebsite] {
				c.WebsiteApps = append(c.WebsiteApps, cfgApp(s.App))
			}
			for _, s := range extra[sandbox.AppMobile] {
				c.MobileApps = append(c.MobileApps, cfgApp(s.App))
			}
		}))
	if got := len(te.Config.Apps(config.KindMiniProgram)); got != n {
		t.Fatalf("%d mini programs configured, want %d", got, n)
	}

	// The functions' platform calls, counted.
	var calls wechatCounter
	wx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/sandbox/") {
			calls.mu.Lock()
			calls.n++
			calls.mu.Unlock()
		}
		te.Sandbox.ServeHTTP(w, r)
	}))
	t.Cleanup(wx.Close)
	counter := &awstest.Counter{}
	fnEnv := func(id string) awsenv.Env {
		env := te.FunctionEnv(id, "WXB_WECHAT_API_BASE", wx.URL, "WXB_WECHAT_OPEN_BASE", wx.URL)
		env.AWS.HTTPClient = &http.Client{Transport: counter}
		return env
	}
	lh, err := login.FromEnv(ctx, fnEnv("LoginFunction"))
	if err != nil {
		t.Fatal(err)
	}
	fh, err := followevent.FromEnv(ctx, fnEnv("FollowEventFunction"))
	if err != nil {
		t.Fatal(err)
	}
	oh, err := oauthcallback.FromEnv(ctx, fnEnv("OAuthCallbackFunction"))
	if err != nil {
		t.Fatal(err)
	}
	te.Route(&loginMux, "LoginFunction", lh.Handle)
	te.Route(&pushMux, "FollowEventFunction", fh.HTTP)
	te.Route(&mux, "OAuthCallbackFunction", oh.Handle)
	cold := costOf(counter.Counts(), calls.take())
	if err := te.Sandbox.SetPushTarget(sandbox.PushTarget{URL: pushSrv.URL + "/wechat/push", Token: testenv.PushToken, EncodingAESKey: testenv.EncodingAESKey, Mode: push.Safe}); err != nil {
		t.Fatal(err)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post(loginSrv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var e map[string]any
			json.NewDecoder(resp.Body).Decode(&e)
			t.Fatalf("POST %s: %d %v", path, resp.StatusCode, e)
		}
	}
	// signIn starts a sign-in at authorize and returns the callback request
	// the platform sends the browser to once the person has consented.
	signIn := func(authorize, appid, scope, person string) *http.Request {
		t.Helper()
		resp, err := noRedirect.Get(api.URL + authorize + "?" + url.Values{"scope": {scope}, "return_to": {h5 + "/"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("GET %s: %d %v", authorize, resp.StatusCode, err)
		}
		code, err := te.Sandbox.OAuthCode(sandbox.OAuthConsent{AppID: appid, Person: person, Scope: scope})
		if err != nil {
			t.Fatal(err)
		}
		cb, err := url.Parse(loc.Query().Get("redirect_uri"))
		if err != nil {
			t.Fatal(err)
		}
		q := cb.Query()
		q.Set("code", code)
		q.Set("state", loc.Query().Get("state"))
		cb.RawQuery = q.Encode()
		req, _ := http.NewRequest(http.MethodGet, cb.String(), nil)
		for _, c := range resp.Cookies() {
			req.AddCookie(c)
		}
		return req
	}
	finish := func(req *http.Request) {
		t.Helper()
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); !strings.Contains(loc, "session=") {
			t.Fatalf("callback ended at %q (%d)", loc, resp.StatusCode)
		}
	}

	mp, mob, web := sandbox.DevMiniProgram.AppID, sandbox.DevMobile.AppID, sandbox.DevWebsite.AppID
	oa := sandbox.DevOfficialAccount.AppID
	// With five apps, the "by appid" entries go to the second app of each
	// kind through its own route; with one, to the only app's default
	// route: what a request costs when its app is not the default.
	mpN, mobN, webN, oaN := mp, mob, web, oa
	mpPath, mobPath, webPath, oaPath, pushPath := "/mp/login", "/app/login", "/web/authorize", "/oauth/authorize", "/wechat/push"
	if n > 1 {
		mpN, mobN, webN, oaN = sandbox.DevMiniProgram2.AppID, sandbox.DevMobile2.AppID, sandbox.DevWebsite2.AppID, sandbox.DevOfficialAccount2.AppID
		mpPath, mobPath, webPath, oaPath, pushPath = "/mp/"+mpN+"/login", "/app/"+mobN+"/login", "/web/"+webN+"/authorize", "/oauth/"+oaN+"/authorize", "/wechat/push/"+oaN
		if err := te.Sandbox.SetPushTargetApp(oaN, sandbox.PushTarget{URL: pushSrv.URL + pushPath, Token: "secondaccounttoken", Mode: push.Plaintext}); err != nil {
			t.Fatal(err)
		}
	}
	entries := []struct {
		name string
		run  func(p sandbox.Person)
	}{
		{"by appid: mini-program login (new person)", func(p sandbox.Person) {
			code, err := te.Sandbox.WXLoginApp(p.ID, mpN)
			if err != nil {
				t.Fatal(err)
			}
			post(mpPath, `{"code":"`+code+`"}`)
		}},
		{"by appid: mobile-app login (known person)", func(p sandbox.Person) {
			code, err := te.Sandbox.AppLoginCode(p.ID, mobN)
			if err != nil {
				t.Fatal(err)
			}
			post(mobPath, `{"code":"`+code+`"}`)
		}},
		{"by appid: follow push (known person)", func(p sandbox.Person) {
			d, err := te.Sandbox.FollowApp(ctx, p.ID, oaN, "")
			if err != nil || !d.Delivered {
				t.Fatalf("follow: %+v, %v", d, err)
			}
		}},
		{"by appid: OA OAuth callback (known person)", func(p sandbox.Person) {
			finish(signIn(oaPath, oaN, "snsapi_userinfo", p.ID))
		}},
		{"by appid: website QR callback (known person)", func(p sandbox.Person) {
			finish(signIn(webPath, webN, "snsapi_login", p.ID))
		}},
		{"mini-program login (new person)", func(p sandbox.Person) {
			code, err := te.Sandbox.WXLoginApp(p.ID, mp)
			if err != nil {
				t.Fatal(err)
			}
			post("/mp/login", `{"code":"`+code+`"}`)
		}},
		{"mobile-app login (known person)", func(p sandbox.Person) {
			code, err := te.Sandbox.AppLoginCode(p.ID, mob)
			if err != nil {
				t.Fatal(err)
			}
			post("/app/login", `{"code":"`+code+`"}`)
		}},
		{"follow push (known person)", func(p sandbox.Person) {
			d, err := te.Sandbox.FollowApp(ctx, p.ID, oa, "")
			if err != nil || !d.Delivered {
				t.Fatalf("follow: %+v, %v", d, err)
			}
		}},
		{"OA OAuth callback (known person)", func(p sandbox.Person) {
			finish(signIn("/oauth/authorize", oa, "snsapi_userinfo", p.ID))
		}},
		{"website QR callback (known person)", func(p sandbox.Person) {
			finish(signIn("/web/authorize", web, "snsapi_login", p.ID))
		}},
	}
	out := map[string]cost{"cold start (3 functions)": cold}
	for round := 0; round < 2; round++ {
		// Two people: one through the default routes, one through the
		// routes by appid, each first seen at their first entry.
		people := []sandbox.Person{te.Sandbox.CreatePerson(sandbox.PersonSpec{}), te.Sandbox.CreatePerson(sandbox.PersonSpec{})}
		for _, e := range entries {
			p := people[0]
			if strings.HasPrefix(e.name, "by appid") {
				p = people[1]
			}
			counter.Counts()
			calls.take()
			e.run(p)
			if round == 1 {
				out[e.name] = costOf(counter.Counts(), calls.take())
			}
		}
	}
	return out
}

// TestFiveAppsCostAtMostOneMoreRead: with five apps of each kind configured
// rather than one, no entry point makes more than one more DynamoDB read,
// and none makes more writes, secret reads or WeChat calls.
func TestFiveAppsCostAtMostOneMoreRead(t *testing.T) {
	one := measureApps(t, 1)
	five := measureApps(t, 5)
	var names []string
	for name := range one {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a, b := one[name], five[name]
		t.Logf("%s\n\tone app of each kind:  %s\n\tfive apps of each kind: %s", name, a, b)
		if b.reads > a.reads+1 || b.writes > a.writes || b.wechat > a.wechat || b.secrets > a.secrets {
			t.Errorf("%s costs more with five apps: %s against %s", name, b, a)
		}
	}
}
