package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	loginhandler "wxbridge/functions/login/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/identity"
	"wxbridge/shared/oauthstate"
	"wxbridge/shared/observe"
	"wxbridge/shared/profiles"
	"wxbridge/shared/session"
	"wxbridge/shared/wechat"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const sessionKey = "session-signing-key-for-tests-0123456789abcdef"

var platformState = regexp.MustCompile(`^[a-zA-Z0-9]{1,128}$`)

// env is one oauth-callback function served over HTTP, as API Gateway
// would, next to the sandbox (api.weixin.qq.com and open.weixin.qq.com) and
// an H5 site, all on loopback, with its own table and secret. The
// function's AWS calls are held to OAuthCallbackFunction's policy; store,
// profiles and db are the test's, unchecked.
type env struct {
	h        *Handler
	te       *testenv.Env
	fn       testenv.Clients // OAuthCallbackFunction's
	cfg      config.Config
	sb       *sandbox.Sandbox
	sbSrv    *httptest.Server
	bridge   *httptest.Server // the API: /oauth/authorize, /oauth/callback
	h5       *httptest.Server // the business's pages
	wc       *wechat.Client
	store    *identity.Store
	profiles *profiles.Store
	db       *dynamodb.Client
	table    string
	logs     *bytes.Buffer
	wire     *recorder
	// jar is the one browser the test plays: the callback only accepts a
	// sign-in started in the same browser (its cookie).
	jar http.CookieJar
}

// newEnv is the env of testenv's configuration, changed by opts (see
// multiApp).
func newEnv(t testing.TB, opts ...testenv.Option) *env {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	te := testenv.New(t, append([]testenv.Option{testenv.Tokens(), testenv.Configure(func(c *config.Config) {
		c.SigningKey, c.BindKey = sessionKey, ""
		c.OfficialAccount.Token, c.OfficialAccount.EncodingAESKey = "", ""
	})}, opts...)...)
	e := &env{te: te, fn: te.As("OAuthCallbackFunction"), sb: te.Sandbox, sbSrv: te.Server, logs: &bytes.Buffer{}, wire: &recorder{}, jar: jar}
	e.h5 = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "landing")
	}))
	t.Cleanup(e.h5.Close)
	// e.h is set after the servers start (it needs their URLs): look it up
	// per request.
	e.bridge = httptest.NewServer(httpapi.Serve(func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		return e.h.Handle(ctx, req)
	}))
	t.Cleanup(e.bridge.Close)

	// The configuration goes through a real secret, as in Lambda.
	cfg, err := config.Load(context.Background(), e.fn.Secrets, te.ConfigSecret)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	e.table = te.Table
	e.db = te.DB
	e.store = identity.NewStore(e.db, e.table)
	e.profiles = profiles.NewStore(e.db, e.table)
	e.wc = wechat.New(wechat.Options{APIBase: e.sbSrv.URL, OpenBase: e.sbSrv.URL, HTTPClient: &http.Client{
		Transport:     e.wire,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}})
	e.h = e.newHandler(t, Options{Origins: []string{e.h5.URL}, PublicURL: e.bridge.URL})
	return e
}

func (e *env) newHandler(t testing.TB, opts Options) *Handler {
	t.Helper()
	return e.newHandlerOf(t, e.cfg, opts, nil)
}

// newHandlerOf is newHandler for cfg, with the deps changed by change
// (nil: as they are).
func (e *env) newHandlerOf(t testing.TB, cfg config.Config, opts Options, change func(*Deps)) *Handler {
	t.Helper()
	d := Deps{
		WeChat:   e.wc,
		People:   identity.NewStore(e.fn.DB, e.table),
		States:   oauthstate.NewLedger(e.fn.DB, e.table),
		Profiles: profiles.NewStore(e.fn.DB, e.table),
		Log:      observe.Logger(e.logs, "oauth-callback"),
		Metrics:  observe.NewMetrics(e.logs, "oauth-callback"),
	}
	if change != nil {
		change(&d)
	}
	h, err := New(cfg, opts, d)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// recorder keeps every answer the platform sent, to check that none of
// its tokens reach the logs.
type recorder struct {
	mu     sync.Mutex
	bodies []string
}

func (rc *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, string(b))
	rc.mu.Unlock()
	return resp, nil
}

// visit is a browser's trip: every URL it was sent to, and where it ended.
type visit struct {
	hops   []*url.URL
	final  *url.URL
	status int
	body   string
}

// fragment is what the H5 page reads from location.hash.
func (v visit) fragment() url.Values {
	f, _ := url.ParseQuery(v.final.Fragment)
	return f
}

// browse follows redirects from start like a browser. At the platform's
// authorize page (or a website app's QR connect page) it adds the sandbox-only parameters in at: who is at the
// phone and what they do.
func (e *env) browse(t testing.TB, start string, at url.Values) visit {
	t.Helper()
	return e.browseOn(t, e.jar, nil, start, at)
}

// browseOn is browse with its own cookie jar and network (nil: the real
// one).
func (e *env) browseOn(t testing.TB, jar http.CookieJar, network http.RoundTripper, start string, at url.Values) visit {
	t.Helper()
	var v visit
	c := &http.Client{Jar: jar, Transport: network, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > 10 {
			return errors.New("redirect loop")
		}
		if req.URL.Host == strings.TrimPrefix(e.sbSrv.URL, "http://") && (req.URL.Path == "/connect/oauth2/authorize" || req.URL.Path == "/connect/qrconnect") {
			q := req.URL.Query()
			for k, vs := range at {
				q[k] = vs
			}
			req.URL.RawQuery = q.Encode()
		}
		u := *req.URL
		v.hops = append(v.hops, &u)
		return nil
	}}
	resp, err := c.Get(start)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v.final, v.status, v.body = resp.Request.URL, resp.StatusCode, string(b)
	return v
}

func (e *env) authorizeURL(scope, returnTo string) string {
	return e.bridge.URL + "/oauth/authorize?" + url.Values{"scope": {scope}, "return_to": {returnTo}}.Encode()
}

func (e *env) verifySession(t testing.TB, tok string) session.Session {
	t.Helper()
	keys, _ := session.NewKeys(sessionKey, "", 0)
	s, err := keys.Verify(tok)
	if err != nil {
		t.Fatalf("session in the fragment does not verify: %v", err)
	}
	return s
}

// identityItems counts the items that are people or identity markers.
func (e *env) identityItems(t testing.TB) int {
	t.Helper()
	out, err := e.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &e.table})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, it := range out.Items {
		if pk, ok := it["pk"].(*types.AttributeValueMemberS); !ok || !strings.HasPrefix(pk.Value, "OAUTHSTATE#") {
			n++
		}
	}
	return n
}

func TestFullRedirectChain(t *testing.T) {
	for _, scope := range []string{wechat.ScopeBase, wechat.ScopeUserInfo} {
		t.Run(scope, func(t *testing.T) {
			e := newEnv(t)
			p := e.sb.CreatePerson(sandbox.PersonSpec{})
			page := e.h5.URL + "/orders/8812?from=share&x=a%26b"
			v := e.browse(t, e.authorizeURL(scope, page), url.Values{"person": {p.ID}})

			if len(v.hops) != 3 {
				t.Fatalf("hops = %v, want authorize page, callback, H5 page", v.hops)
			}
			auth, cb := v.hops[0], v.hops[1]
			aq := auth.Query()
			if auth.Path != "/connect/oauth2/authorize" || aq.Get("appid") != sandbox.DevOfficialAccount.AppID || aq.Get("scope") != scope ||
				aq.Get("response_type") != "code" || !platformState.MatchString(aq.Get("state")) || auth.Fragment != "wechat_redirect" {
				t.Errorf("authorize hop = %s", auth)
			}
			if !strings.HasPrefix(aq.Get("redirect_uri"), e.bridge.URL+"/oauth/callback?") {
				t.Errorf("redirect_uri = %s", aq.Get("redirect_uri"))
			}
			if cb.Path != "/oauth/callback" || cb.Query().Get("code") == "" || cb.Query().Get("state") != aq.Get("state") {
				t.Errorf("callback hop = %s", cb)
			}
			if v.status != 200 || v.body != "landing" || v.final.Path != "/orders/8812" || v.final.RawQuery != "from=share&x=a%26b" {
				t.Fatalf("ended at %s (%d %q), want the page with its query intact", v.final, v.status, v.body)
			}
			if strings.Contains(v.final.RawQuery, "session") {
				t.Fatal("session in the query")
			}
			f := v.fragment()
			s := e.verifySession(t, f.Get("session"))
			if s.AppID != sandbox.DevOfficialAccount.AppID || s.OpenID != p.OAOpenID {
				t.Errorf("session = %+v, want the OA identity", s)
			}
			if exp := f.Get("expires_at"); exp != "" && exp != jsonNum(s.Expires.Unix()) {
				t.Errorf("expires_at = %s, session expires %d", exp, s.Expires.Unix())
			}
			person, err := e.store.Lookup(context.Background(), identity.OAKey(sandbox.DevOfficialAccount.AppID, p.OAOpenID))
			if err != nil || person.UID != s.UID {
				t.Fatalf("person = %+v, %v; session uid %s", person, err, s.UID)
			}
			prof, perr := e.profiles.Get(context.Background(), sandbox.DevOfficialAccount.AppID, p.OAOpenID)
			switch scope {
			case wechat.ScopeBase:
				if person.UnionID != "" || e.sb.Calls("/sns/userinfo") != 0 || !errors.Is(perr, profiles.ErrNotFound) {
					t.Errorf("snsapi_base: unionid %q, %d userinfo calls, profile %v", person.UnionID, e.sb.Calls("/sns/userinfo"), perr)
				}
			case wechat.ScopeUserInfo:
				if person.UnionID != p.UnionID || e.sb.Calls("/sns/userinfo") != 1 || perr != nil || prof.Nickname != p.Nickname || prof.HeadImgURL == "" {
					t.Errorf("snsapi_userinfo: unionid %q, %d userinfo calls, profile err %v", person.UnionID, e.sb.Calls("/sns/userinfo"), perr)
				}
			}
		})
	}
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestConsentPage drives the sandbox's consent page like a person would:
// open it, pick someone, press Allow or Refuse.
func TestConsentPage(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/welcome"
	for _, button := range []string{"allow", "refuse"} {
		t.Run(button, func(t *testing.T) {
			before := e.identityItems(t)
			v := e.browse(t, e.authorizeURL(wechat.ScopeUserInfo, page), nil)
			if v.status != 200 || !strings.Contains(v.body, "<form") {
				t.Fatalf("consent page = %d %s", v.status, v.body)
			}
			form := url.Values{}
			for _, m := range regexp.MustCompile(`<input type="hidden" name="(\w+)" value="([^"]*)">`).FindAllStringSubmatch(v.body, -1) {
				form.Set(m[1], html.UnescapeString(m[2]))
			}
			form.Set("person", p.ID)
			if button == "refuse" {
				form.Set("refuse", "1")
			}
			v = e.browse(t, e.sbSrv.URL+"/connect/oauth2/authorize?"+form.Encode(), nil)
			f := v.fragment()
			switch button {
			case "allow":
				if s := e.verifySession(t, f.Get("session")); s.OpenID != p.OAOpenID {
					t.Errorf("session for %s, want %s", s.OpenID, p.OAOpenID)
				}
			case "refuse":
				if f.Get("error") != "access_denied" || f.Has("session") || e.identityItems(t) != before {
					t.Errorf("refusal: fragment %v, identity items %d then %d", f, before, e.identityItems(t))
				}
			}
			if v.final.Path != "/welcome" {
				t.Errorf("ended at %s", v.final)
			}
		})
	}
}

// TestOnePersonAcrossOAuthAndLogin: the H5 visitor and the mini-program
// user are one person, whichever comes first.
func TestOnePersonAcrossOAuthAndLogin(t *testing.T) {
	for _, order := range []string{"oauth_then_login", "login_then_oauth"} {
		t.Run(order, func(t *testing.T) {
			e := newEnv(t)
			login, err := loginhandler.New(e.cfg, e.wc, identity.NewStore(e.te.As("LoginFunction").DB, e.table), observe.Logger(e.logs, "login"), nil)
			if err != nil {
				t.Fatal(err)
			}
			p := e.sb.CreatePerson(sandbox.PersonSpec{})
			var mpUID, oaUID, oaSession string
			mp := func() {
				code, _ := e.sb.WXLogin(p.ID)
				req := events.APIGatewayV2HTTPRequest{RouteKey: "POST /mp/login", Body: `{"code":"` + code + `"}`}
				resp, _ := login.Handle(context.Background(), req)
				var out loginhandler.LoginResponse
				if resp.StatusCode != 200 || json.Unmarshal([]byte(resp.Body), &out) != nil {
					t.Fatalf("login = %d %s", resp.StatusCode, resp.Body)
				}
				mpUID = out.Person.UID
			}
			oauth := func() {
				v := e.browse(t, e.authorizeURL(wechat.ScopeUserInfo, e.h5.URL+"/"), url.Values{"person": {p.ID}})
				oaSession = v.fragment().Get("session")
				oaUID = e.verifySession(t, oaSession).UID
			}
			if order == "oauth_then_login" {
				oauth()
				mp()
			} else {
				mp()
				oauth()
			}
			if mpUID == "" || mpUID != oaUID {
				t.Fatalf("mini program uid %s, OAuth uid %s: want one person", mpUID, oaUID)
			}
			person, err := e.store.Lookup(context.Background(), identity.MPKey(sandbox.DevMiniProgram.AppID, p.MPOpenID))
			if err != nil || !person.Linked() || person.OA[sandbox.DevOfficialAccount.AppID].OpenID != p.OAOpenID {
				t.Fatalf("person = %+v, %v: want both identities", person, err)
			}

			// The H5 session works as a bearer token on GET /me, and only there.
			call := func(route string) (int, map[string]any) {
				method, path, _ := strings.Cut(route, " ")
				req := events.APIGatewayV2HTTPRequest{RouteKey: route, RawPath: path, Body: `{"encrypted_data":"x","iv":"y"}`,
					Headers: map[string]string{"authorization": "Bearer " + oaSession}}
				req.RequestContext.HTTP.Method = method
				resp, _ := login.Handle(context.Background(), req)
				var out map[string]any
				json.Unmarshal([]byte(resp.Body), &out)
				return resp.StatusCode, out
			}
			status, me := call("GET /me")
			oa, _ := me["official_account"].(map[string]any)
			mpID, _ := me["mini_program"].(map[string]any)
			if status != 200 || me["uid"] != mpUID || me["linked"] != true || oa["openid"] != p.OAOpenID || mpID["openid"] != p.MPOpenID {
				t.Errorf("GET /me with the H5 session = %d %v", status, me)
			}
			if status, out := call("POST /mp/profile"); status != 401 || out["error"] != "invalid_session" {
				t.Errorf("POST /mp/profile with the H5 session = %d %v, want 401", status, out)
			}
		})
	}
}

// start asks the handler for an authorize redirect and returns the
// callback URL the platform would send the browser to (without code and
// state) and the state.
func (e *env) start(t testing.TB, h *Handler, scope, returnTo string) (callback, state string) {
	t.Helper()
	return e.startAt(t, h, AuthorizePath, scope, returnTo)
}

// startAt is start at the authorize route path ("/web/authorize", …).
func (e *env) startAt(t testing.TB, h *Handler, path, scope, returnTo string) (callback, state string) {
	t.Helper()
	resp := e.get(t, h, path+"?"+url.Values{"scope": {scope}, "return_to": {returnTo}}.Encode())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize = %d %s", resp.StatusCode, resp.Body)
	}
	u, _ := url.Parse(resp.Headers["Location"])
	return u.Query().Get("redirect_uri"), u.Query().Get("state")
}

// finish calls the callback as the platform's redirect would.
func (e *env) finish(t testing.TB, h *Handler, callback, code, state string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	return e.finishAt(t, h, CallbackPath, callback, code, state)
}

// finishAt is finish at the callback route path, whatever callback (the
// redirect_uri the sign-in began with) names.
func (e *env) finishAt(t testing.TB, h *Handler, path, callback, code, state string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	u, _ := url.Parse(callback)
	q := u.Query()
	if code != "" {
		q.Set("code", code)
	}
	q.Set("state", state)
	return e.get(t, h, path+"?"+q.Encode())
}

func (e *env) get(t testing.TB, h *Handler, pathQuery string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	r := httptest.NewRequest("GET", e.bridge.URL+pathQuery, nil)
	for _, c := range e.jar.Cookies(r.URL) {
		r.AddCookie(c)
	}
	req, err := httpapi.Request(r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.Handle(context.Background(), req)
	for _, sc := range resp.Cookies {
		if c, perr := http.ParseSetCookie(sc); perr == nil {
			e.jar.SetCookies(r.URL, []*http.Cookie{c})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// backTo checks that resp sends the browser to returnTo and returns the
// fragment.
func backTo(t testing.TB, resp events.APIGatewayV2HTTPResponse, returnTo string) url.Values {
	t.Helper()
	loc := resp.Headers["Location"]
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, returnTo+"#") {
		t.Fatalf("got %d Location %q, want a redirect to %s#…", resp.StatusCode, loc, returnTo)
	}
	f, _ := url.ParseQuery(strings.TrimPrefix(loc, returnTo+"#"))
	return f
}

func consent(e *env, p sandbox.Person, scope string, snapshot bool) string {
	code, err := e.sb.OAuthCode(sandbox.OAuthConsent{Person: p.ID, Scope: scope, Snapshot: snapshot})
	if err != nil {
		panic(err)
	}
	return code
}

func freshCode(e *env, p sandbox.Person) string { return consent(e, p, wechat.ScopeBase, false) }

// refusedPage checks a 400 page that sends the browser nowhere.
func refusedPage(t testing.TB, resp events.APIGatewayV2HTTPResponse, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || resp.Headers["Location"] != "" {
		t.Fatalf("got %d Location %q, want a %d page", resp.StatusCode, resp.Headers["Location"], status)
	}
	if !strings.HasPrefix(resp.Headers["Content-Type"], "text/html") || !strings.Contains(resp.Body, "error: "+code) {
		t.Fatalf("page = %s %s, want error %s", resp.Headers["Content-Type"], resp.Body, code)
	}
}

// TestCallbackOutcomesInTheFragment: what the flow decides (shared/signin,
// TestFinishOutcomes) reaches the page as a redirect with the outcome in
// the fragment.
func TestCallbackOutcomesInTheFragment(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/done"
	callback, state := e.start(t, e.h, wechat.ScopeUserInfo, page)
	if f := backTo(t, e.finish(t, e.h, callback, "", state), page); len(f) != 1 || f.Get("error") != "access_denied" {
		t.Errorf("refused consent: fragment %v", f)
	}
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/sns/oauth2/access_token", ErrCode: -1, Count: 1}); err != nil {
		t.Fatal(err)
	}
	callback, state = e.start(t, e.h, wechat.ScopeBase, page)
	if f := backTo(t, e.finish(t, e.h, callback, freshCode(e, p), state), page); f.Get("error") != "temporarily_unavailable" {
		t.Errorf("WeChat down: fragment %v", f)
	}
	if n := e.identityItems(t); n != 0 {
		t.Errorf("%d items stored", n)
	}
}

// TestBadStateGetsAPageNotARedirect: a refusal of the flow (shared/signin,
// TestFinishRefuses) is a 400 page that sends the browser nowhere.
func TestBadStateGetsAPageNotARedirect(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/done"

	t.Run("forged", func(t *testing.T) {
		callback, state := e.start(t, e.h, wechat.ScopeBase, page)
		b := []byte(state)
		if b[len(b)-1] == '0' {
			b[len(b)-1] = '1'
		} else {
			b[len(b)-1] = '0'
		}
		refusedPage(t, e.finish(t, e.h, callback, freshCode(e, p), string(b)), 400, "invalid_state")
	})

	t.Run("expired", func(t *testing.T) {
		callback, state := e.start(t, e.h, wechat.ScopeBase, page)
		e.h.SetClock(func() time.Time { return time.Now().Add(oauthstate.TTL + time.Second) })
		defer e.h.SetClock(time.Now)
		refusedPage(t, e.finish(t, e.h, callback, freshCode(e, p), state), 400, "expired_state")
	})

	t.Run("replayed", func(t *testing.T) {
		callback, state := e.start(t, e.h, wechat.ScopeBase, page)
		code := freshCode(e, p)
		if f := backTo(t, e.finish(t, e.h, callback, code, state), page); f.Get("session") == "" {
			t.Fatalf("first use: %v", f)
		}
		refusedPage(t, e.finish(t, e.h, callback, code, state), 400, "used_state")
	})
}

func TestAuthorizeRejects(t *testing.T) {
	e := newEnv(t)
	// Every return_to rule: shared/signin, TestOriginsCheck.
	for name, rt := range map[string]string{"missing": "", "other_origin": "https://evil.example/"} {
		t.Run(name, func(t *testing.T) {
			resp := e.get(t, e.h, "/oauth/authorize?"+url.Values{"scope": {"snsapi_base"}, "return_to": {rt}}.Encode())
			refusedPage(t, resp, 400, "invalid_return_to")
		})
	}
	t.Run("unknown_scope", func(t *testing.T) {
		resp := e.get(t, e.h, "/oauth/authorize?"+url.Values{"scope": {"snsapi_login"}, "return_to": {e.h5.URL}}.Encode())
		refusedPage(t, resp, 400, "invalid_request")
	})
	t.Run("repeated_return_to", func(t *testing.T) {
		resp := e.get(t, e.h, "/oauth/authorize?return_to="+url.QueryEscape(e.h5.URL)+"&return_to="+url.QueryEscape("https://evil.example/"))
		refusedPage(t, resp, 400, "invalid_request")
	})
	t.Run("unknown_route", func(t *testing.T) {
		refusedPage(t, e.get(t, e.h, "/oauth/nope"), 404, "not_found")
	})
	t.Run("scope_defaults_to_snsapi_base", func(t *testing.T) {
		resp := e.get(t, e.h, "/oauth/authorize?"+url.Values{"return_to": {e.h5.URL}}.Encode())
		if u, _ := url.Parse(resp.Headers["Location"]); resp.StatusCode != http.StatusFound || u.Query().Get("scope") != wechat.ScopeBase {
			t.Errorf("%d %s", resp.StatusCode, resp.Headers["Location"])
		}
	})
	if n := e.identityItems(t); n != 0 {
		t.Errorf("authorize wrote %d items", n)
	}
}

func TestCallbackURL(t *testing.T) {
	e := newEnv(t)
	req := func(domain string) events.APIGatewayV2HTTPRequest {
		r := events.APIGatewayV2HTTPRequest{RouteKey: "GET /oauth/authorize", RawQueryString: url.Values{"return_to": {e.h5.URL + "/"}}.Encode()}
		r.RequestContext.DomainName = domain
		return r
	}
	for name, c := range map[string]struct{ publicURL, domain, want string }{
		"derived_from_the_request": {"", "abc123.execute-api.us-east-1.amazonaws.com", "https://abc123.execute-api.us-east-1.amazonaws.com/oauth/callback?return_to="},
		"configured":               {"https://api.example.com/wx/", "api.example.com", "https://api.example.com/wx/oauth/callback?return_to="},
	} {
		t.Run(name, func(t *testing.T) {
			h := e.newHandler(t, Options{Origins: []string{e.h5.URL}, PublicURL: c.publicURL})
			resp, _ := h.Handle(context.Background(), req(c.domain))
			u, _ := url.Parse(resp.Headers["Location"])
			if got := u.Query().Get("redirect_uri"); !strings.HasPrefix(got, c.want) {
				t.Errorf("redirect_uri = %s, want %s…", got, c.want)
			}
		})
	}
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	e := newEnv(t)
	noOA := e.cfg
	noOA.OfficialAccount = config.OfficialAccount{}
	for name, c := range map[string]struct {
		cfg  config.Config
		opts Options
	}{
		"no_origins":        {e.cfg, Options{}},
		"origin_not_url":    {e.cfg, Options{Origins: []string{"h5.example.com"}}},
		"origin_with_path":  {e.cfg, Options{Origins: []string{"https://h5.example.com/app"}}},
		"public_url_query":  {e.cfg, Options{Origins: []string{"https://h5.example.com"}, PublicURL: "https://api.example.com/?x=1"}},
		"no_official_acct":  {noOA, Options{Origins: []string{"https://h5.example.com"}}},
		"public_url_scheme": {e.cfg, Options{Origins: []string{"https://h5.example.com"}, PublicURL: "ftp://api.example.com"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(c.cfg, c.opts, Deps{}); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestLogsKeepSecrets runs both scopes and the error paths, then checks
// that no code, web token, session, nickname, avatar or app secret reached
// the logs.
func TestLogsKeepSecrets(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	v := e.browse(t, e.authorizeURL(wechat.ScopeUserInfo, e.h5.URL+"/"), url.Values{"person": {p.ID}})
	code := v.hops[1].Query().Get("code")
	sess := v.fragment().Get("session")
	e.browse(t, e.authorizeURL(wechat.ScopeBase, e.h5.URL+"/"), url.Values{"person": {p.ID}})
	e.finish(t, e.h, v.hops[1].String(), code, v.hops[1].Query().Get("state")) // replay: an error path
	callback, state := e.start(t, e.h, wechat.ScopeBase, e.h5.URL+"/")
	e.finish(t, e.h, callback, code, state) // used code: another error path

	secrets := map[string]string{"code": code, "session": sess, "nickname": p.Nickname, "app secret": sandbox.DevOfficialAccount.Secret}
	var answer struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		HeadImgURL   string `json:"headimgurl"`
	}
	for _, b := range e.wire.bodies {
		json.Unmarshal([]byte(b), &answer)
		for name, v := range map[string]string{"web access token": answer.AccessToken, "refresh token": answer.RefreshToken, "avatar": answer.HeadImgURL} {
			if v != "" {
				secrets[name+" "+v[:8]] = v
			}
		}
	}
	if len(secrets) < 7 {
		t.Fatalf("expected tokens and the avatar on the wire, have %d secrets", len(secrets))
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"route":"GET /oauth/callback"`) || !strings.Contains(logs, `"outcome":"used_state"`) {
		t.Fatalf("expected request logs, got %s", logs)
	}
	for name, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
}

// TestSignInFromAnotherBrowserIsRefused is the login-CSRF attack: someone
// starts a sign-in, consents in their own WeChat, and sends the callback
// link to a victim. The victim's browser does not hold the cookie of that
// sign-in, so the callback shows the 400 page: no session, nothing written,
// and the state is not spent.
func TestSignInFromAnotherBrowserIsRefused(t *testing.T) {
	e := newEnv(t)
	attacker := e.sb.CreatePerson(sandbox.PersonSpec{})
	callback, state := e.start(t, e.h, wechat.ScopeUserInfo, e.h5.URL+"/welcome")
	code, err := e.sb.OAuthCode(sandbox.OAuthConsent{Person: attacker.ID, Scope: wechat.ScopeUserInfo})
	if err != nil {
		t.Fatal(err)
	}
	attackerJar := e.jar
	victimJar, _ := cookiejar.New(nil)
	e.jar = victimJar
	before := e.identityItems(t)
	resp := e.finish(t, e.h, callback, code, state)
	if resp.StatusCode != http.StatusBadRequest || resp.Headers["Location"] != "" || strings.Contains(resp.Body, "session") {
		t.Fatalf("callback in another browser = %d, Location %q", resp.StatusCode, resp.Headers["Location"])
	}
	if e.identityItems(t) != before {
		t.Fatal("a refused callback wrote")
	}
	// The browser that started it still finishes it.
	e.jar = attackerJar
	if resp := e.finish(t, e.h, callback, code, state); resp.StatusCode != http.StatusFound || !strings.Contains(resp.Headers["Location"], "session=") {
		t.Fatalf("callback in the starting browser = %d, Location %q", resp.StatusCode, resp.Headers["Location"])
	}
}
