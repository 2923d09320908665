package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/reach"
	"wxbridge/shared/session"
)

// The apps of the multi-app tests: two mini programs (the default first),
// two official accounts, two website apps and two mobile apps, all bound
// to one open platform account.
var (
	mpA, mpB   = sandbox.DevMiniProgram, sandbox.DevMiniProgram2
	oaA, oaB   = sandbox.DevOfficialAccount, sandbox.DevOfficialAccount2
	webA       = sandbox.DevWebsite
	appA, appB = sandbox.DevMobile, sandbox.DevMobile2
)

// newMultiEnv is the login function of a deployment with every kind of
// app, two of each, wired as newEnv wires it (its AWS calls held to
// LoginFunction's policy), with subscribe consents recorded.
func newMultiEnv(t testing.TB) *env {
	t.Helper()
	te := testenv.New(t,
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			app := func(a sandbox.App) config.App { return config.App{AppID: a.AppID, Secret: a.Secret} }
			c.SigningKey, c.BindKey = sessionKey, bindKey
			c.MiniPrograms = []config.App{app(mpB)}
			c.OfficialAccounts = []config.OfficialAccount{{App: app(oaB), Token: "secondoatoken", EncodingAESKey: strings.Repeat("b", 43)}}
			c.WebsiteApps = []config.App{app(webA), app(sandbox.DevWebsite2)}
			c.MobileApps = []config.App{app(appA), app(appB)}
		}))
	fn := te.As("LoginFunction")
	cfg, err := config.Load(context.Background(), fn.Secrets, te.ConfigSecret)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	h, err := New(cfg, fn.WeChat, identity.NewStore(fn.DB, te.Table), observe.Logger(logs, "login"), observe.NewMetrics(logs, "login"),
		WithTokenUses(binding.NewUses(fn.DB, te.Table)), WithConsents(reach.New(fn.DB, te.Table), nil))
	if err != nil {
		t.Fatal(err)
	}
	h.now = te.Now
	return &env{h: h, te: te, sb: te.Sandbox, store: identity.NewStore(te.DB, te.Table), db: te.DB, table: te.Table, logs: logs, counter: te.Counter}
}

// mpRoute is the route of action ("login", "phone", …) for mini program
// appid: the default routes for the default one, else by appid.
func mpRoute(appid, action string) string {
	if appid == mpA.AppID {
		return "POST /mp/" + action
	}
	return "POST /mp/{appid}/" + action
}

// loginIn logs person id in to mini program appid, and returns the answer.
func (e *env) loginIn(t testing.TB, id, appid string) map[string]any {
	t.Helper()
	code, err := e.sb.WXLoginApp(id, appid)
	if err != nil {
		t.Fatal(err)
	}
	status, out, _ := e.callIn(t, mpRoute(appid, "login"), appid, `{"code":"`+code+`"}`, "")
	if status != 200 {
		t.Fatalf("login in %s: %d %v", appid, status, out)
	}
	return out
}

// appLogin logs person id in to mobile app appid by its SDK's code.
func (e *env) appLogin(t testing.TB, id, appid string) (int, map[string]any) {
	t.Helper()
	code, err := e.sb.AppLoginCode(id, appid)
	if err != nil {
		t.Fatal(err)
	}
	route := "POST /app/{appid}/login"
	if appid == appA.AppID {
		route = "POST /app/login"
	}
	status, out, _ := e.callIn(t, route, appid, `{"code":"`+code+`"}`, "")
	return status, out
}

// sessionOf reads the appid and openid a bearer session names.
func sessionOf(t testing.TB, bearer string) session.Session {
	t.Helper()
	keys, _ := session.NewKeys(sessionKey, "", 0)
	s, err := keys.Verify(bearer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEveryMiniProgram: each mini program serves login, profile, phone and
// consents for its own users, under its own routes (the default one also
// under the routes without an appid), with its own credentials and
// sessions.
func TestEveryMiniProgram(t *testing.T) {
	e := newMultiEnv(t)
	e.sb.SetRevealUnionID(false) // so that profile has a unionid to reveal
	for _, mp := range []sandbox.App{mpA, mpB} {
		t.Run(mp.AppID, func(t *testing.T) {
			p := e.sb.CreatePerson(sandbox.PersonSpec{})
			openid, _ := e.sb.OpenID(p.ID, mp.AppID)
			out := e.loginIn(t, p.ID, mp.AppID)
			bearer := out["session"].(string)
			if s := sessionOf(t, bearer); s.AppID != mp.AppID || s.OpenID != openid {
				t.Fatalf("session names %s/%s, want %s/%s", s.AppID, s.OpenID, mp.AppID, openid)
			}
			if _, err := e.store.Session(context.Background(), mp.AppID, openid); err != nil {
				t.Fatalf("the login's session key is not stored under its app: %v", err)
			}

			data, iv, err := e.sb.OpenDataApp(p.ID, mp.AppID)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(map[string]string{"encrypted_data": data, "iv": iv})
			if status, out, _ := e.callIn(t, mpRoute(mp.AppID, "profile"), mp.AppID, string(body), bearer); status != 200 || out["unionid_known"] != true {
				t.Fatalf("profile = %d %v", status, out)
			}

			if err := e.sb.SetPhone(p.ID, phoneOf(mp)); err != nil {
				t.Fatal(err)
			}
			code, _ := e.sb.PhoneCode(p.ID, mp.AppID)
			status, out, _ := e.callIn(t, mpRoute(mp.AppID, "phone"), mp.AppID, `{"code":"`+code+`"}`, bearer)
			if status != 200 || out["phone"].(map[string]any)["masked"] != "+****"+phoneOf(mp)[len(phoneOf(mp))-4:] {
				t.Fatalf("phone = %d %v", status, out)
			}

			if status, out, _ := e.callIn(t, mpRoute(mp.AppID, "subscribe-consents"), mp.AppID, `{"`+mpOnce+`":"accept"}`, bearer); status != 200 || out["recorded"] != float64(1) {
				t.Fatalf("consents = %d %v", status, out)
			}
			got, err := reach.New(e.db, e.table).Get(context.Background(), reach.Key{AppID: mp.AppID, OpenID: openid})
			if err != nil || got[reach.Key{AppID: mp.AppID, OpenID: openid}].Consents[mpOnce].Left != 1 {
				t.Fatalf("consent not recorded for %s: %v %v", mp.AppID, got, err)
			}
		})
	}
	// The default mini program is served by appid too.
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	code, _ := e.sb.WXLoginApp(p.ID, mpA.AppID)
	if status, out, _ := e.callIn(t, "POST /mp/{appid}/login", mpA.AppID, `{"code":"`+code+`"}`, ""); status != 200 {
		t.Fatalf("the default mini program by appid = %d %v", status, out)
	}
}

func phoneOf(mp sandbox.App) string {
	if mp == mpA {
		return "+8613900000001"
	}
	return "+8613900000002"
}

// TestEveryMobileApp: each mobile app logs its users in with the SDK's
// code (sns/oauth2/access_token with that app's secret), links them by
// unionid, and answers as /mp/login does, without WeChat's tokens.
func TestEveryMobileApp(t *testing.T) {
	e := newMultiEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	var uid string
	for i, app := range []sandbox.App{appA, appB} {
		status, out := e.appLogin(t, p.ID, app.AppID)
		if status != 200 || out["unionid_known"] != true || out["expires_at"] == nil {
			t.Fatalf("%s: app login = %d %v", app.AppID, status, out)
		}
		if strings.Contains(strings.ToLower(mustJSON(out)), "access_token") || strings.Contains(mustJSON(out), "refresh") {
			t.Errorf("the answer carries WeChat's tokens: %v", out)
		}
		openid, _ := e.sb.OpenID(p.ID, app.AppID)
		if s := sessionOf(t, out["session"].(string)); s.AppID != app.AppID || s.OpenID != openid {
			t.Fatalf("session names %s/%s, want %s/%s", s.AppID, s.OpenID, app.AppID, openid)
		}
		if i == 0 {
			uid = uidOf(out)
		} else if uidOf(out) != uid {
			t.Fatalf("the second app's login made person %s, want %s (same unionid)", uidOf(out), uid)
		}
		got, err := e.store.Lookup(context.Background(), identity.MobileKey(app.AppID, openid))
		if err != nil || got.UID != uid {
			t.Fatalf("%s's openid resolves to %+v, %v", app.AppID, got, err)
		}
	}
	// A used code, and WeChat failing, as for mini programs.
	code, _ := e.sb.AppLoginCode(p.ID, appB.AppID)
	for _, want := range []struct {
		fault  int
		status int
		code   string
	}{{-1, 503, "wechat_unavailable"}, {0, 200, ""}, {0, 400, "invalid_code"}} {
		if want.fault != 0 {
			if err := e.sb.InjectFault(sandbox.Fault{Path: "/sns/oauth2/access_token", ErrCode: want.fault, Count: 1}); err != nil {
				t.Fatal(err)
			}
		}
		status, out, _ := e.callIn(t, "POST /app/{appid}/login", appB.AppID, `{"code":"`+code+`"}`, "")
		if status != want.status || (want.code != "" && out["error"] != want.code) {
			t.Fatalf("app login (fault %d) = %d %v, want %d %s", want.fault, status, out, want.status, want.code)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestUnknownApp: an appid in the path that is not configured as that
// kind is 404 unknown_app, before WeChat or DynamoDB is asked anything.
func TestUnknownApp(t *testing.T) {
	e := newMultiEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	bearer := e.loginIn(t, p.ID, mpA.AppID)["session"].(string)
	cases := []struct{ name, route, appid string }{
		{"unconfigured_mini_program", "POST /mp/{appid}/login", "wx0000000000000000"},
		{"official_account_as_mini_program", "POST /mp/{appid}/login", oaA.AppID},
		{"mobile_app_as_mini_program", "POST /mp/{appid}/phone", appA.AppID},
		{"unconfigured_profile", "POST /mp/{appid}/profile", "wx0000000000000000"},
		{"unconfigured_consents", "POST /mp/{appid}/subscribe-consents", sandbox.DevUnboundMiniProgram.AppID},
		{"mini_program_as_mobile_app", "POST /app/{appid}/login", mpB.AppID},
		{"website_as_mobile_app", "POST /app/{appid}/login", webA.AppID},
		{"empty", "POST /app/{appid}/login", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.counter.Counts()
			calls := wechatCalls(e.sb)
			status, out, _ := e.callIn(t, tc.route, tc.appid, `{"code":"0123456789abcdef0123456789abcdef"}`, bearer)
			if status != 404 || out["error"] != "unknown_app" {
				t.Fatalf("got %d %v, want 404 unknown_app", status, out)
			}
			if n := e.counter.Counts(); len(n) != 0 {
				t.Errorf("DynamoDB was asked: %v", n)
			}
			if wechatCalls(e.sb) != calls {
				t.Error("WeChat was called")
			}
		})
	}
}

func wechatCalls(sb *sandbox.Sandbox) int {
	n := 0
	for _, p := range []string{"/sns/jscode2session", "/sns/oauth2/access_token", "/wxa/business/getuserphonenumber"} {
		n += sb.Calls(p)
	}
	return n
}

// TestSessionOfOneAppOnAnother: a session is good for its own app's
// routes only; GET /me takes any.
func TestSessionOfOneAppOnAnother(t *testing.T) {
	e := newMultiEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	sessA := e.loginIn(t, p.ID, mpA.AppID)["session"].(string)
	sessB := e.loginIn(t, p.ID, mpB.AppID)["session"].(string)
	_, app := e.appLogin(t, p.ID, appA.AppID)
	sessApp := app["session"].(string)
	dataA, ivA, _ := e.sb.OpenDataApp(p.ID, mpA.AppID)
	profile, _ := json.Marshal(map[string]string{"encrypted_data": dataA, "iv": ivA})
	code, _ := e.sb.PhoneCode(p.ID, mpB.AppID)
	cases := []struct{ name, route, appid, body, bearer string }{
		{"a_on_b_profile", "POST /mp/{appid}/profile", mpB.AppID, string(profile), sessA},
		{"a_on_b_phone", "POST /mp/{appid}/phone", mpB.AppID, `{"code":"` + code + `"}`, sessA},
		{"a_on_b_consents", "POST /mp/{appid}/subscribe-consents", mpB.AppID, `{"` + mpOnce + `":"accept"}`, sessA},
		{"b_on_default_profile", "POST /mp/profile", "", string(profile), sessB},
		{"b_on_default_consents", "POST /mp/subscribe-consents", "", `{"` + mpOnce + `":"accept"}`, sessB},
		{"mobile_on_default_phone", "POST /mp/phone", "", `{"code":"` + code + `"}`, sessApp},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.items(t)
			status, out, _ := e.callIn(t, tc.route, tc.appid, tc.body, tc.bearer)
			if status != 401 || out["error"] != "invalid_session" {
				t.Fatalf("got %d %v, want 401 invalid_session", status, out)
			}
			if after := e.items(t); after != before {
				t.Errorf("a refused session wrote: %d items, then %d", before, after)
			}
		})
	}
	// The phone code refused above was never spent: B's own session uses it.
	if status, out, _ := e.callIn(t, "POST /mp/{appid}/phone", mpB.AppID, `{"code":"`+code+`"}`, sessB); status != 200 {
		t.Fatalf("B's phone with its own session = %d %v", status, out)
	}
	for _, bearer := range []string{sessA, sessB, sessApp} {
		if status, out, _ := e.call(t, "GET /me", "", bearer); status != 200 || out["uid"] != uidOf(app) {
			t.Fatalf("GET /me = %d %v, want %s", status, out, uidOf(app))
		}
	}
}

// TestMeListsEveryIdentity: logins in two mini programs and a mobile app,
// a follow of an official account and a website QR login, merged by
// unionid into one person, are all listed by GET /me, whichever app's
// session asks, sorted by kind and appid; the old single-app fields name
// the default apps.
func TestMeListsEveryIdentity(t *testing.T) {
	e := newMultiEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	ctx := context.Background()
	oaOpenID, _ := e.sb.OpenID(p.ID, oaB.AppID)
	webOpenID, _ := e.sb.OpenID(p.ID, webA.AppID)
	followed := e.te.Now().Truncate(time.Second)
	// Follow-event and oauth-callback record these.
	if _, err := e.store.Link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: oaB.AppID, OpenID: oaOpenID, Follow: &identity.Follow{Subscribed: true, At: followed}}, UnionID: p.UnionID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Link(ctx, identity.Sighting{Web: &identity.AppSighting{AppID: webA.AppID, OpenID: webOpenID}, UnionID: p.UnionID, Source: identity.SourceWebLogin}); err != nil {
		t.Fatal(err)
	}
	sessA := e.loginIn(t, p.ID, mpA.AppID)["session"].(string)
	e.loginIn(t, p.ID, mpB.AppID)
	_, app := e.appLogin(t, p.ID, appB.AppID)

	type entry struct{ Kind, AppID, OpenID string }
	want := []entry{
		{"mini_program", mpA.AppID, p.MPOpenID},
		{"mini_program", mpB.AppID, openidIn(e, p, mpB)},
		{"official_account", oaB.AppID, oaOpenID},
		{"website", webA.AppID, webOpenID},
		{"mobile", appB.AppID, openidIn(e, p, appB)},
	}
	slices.SortFunc(want[:2], func(a, b entry) int { return strings.Compare(a.AppID, b.AppID) })
	keys, _ := session.NewKeys(sessionKey, "", 0)
	sessOA, _, _ := keys.Issue(session.Session{AppID: oaB.AppID, OpenID: oaOpenID})
	sessWeb, _, _ := keys.Issue(session.Session{AppID: webA.AppID, OpenID: webOpenID})
	for name, bearer := range map[string]string{"mini_program": sessA, "mobile": app["session"].(string), "official_account": sessOA, "website": sessWeb} {
		t.Run(name, func(t *testing.T) {
			status, me, resp := e.call(t, "GET /me", "", bearer)
			if status != 200 || me["uid"] != uidOf(app) {
				t.Fatalf("GET /me = %d %v", status, me)
			}
			var got struct {
				Identities []struct {
					entry
					FirstSeen  time.Time `json:"first_seen"`
					Subscribed *bool     `json:"subscribed"`
				} `json:"identities"`
			}
			if err := json.Unmarshal([]byte(resp.Body), &got); err != nil {
				t.Fatal(err)
			}
			var entries []entry
			for _, id := range got.Identities {
				entries = append(entries, id.entry)
				if id.FirstSeen.IsZero() {
					t.Errorf("%s %s: no first_seen", id.Kind, id.AppID)
				}
				if (id.Kind == "official_account") != (id.Subscribed != nil && *id.Subscribed) {
					t.Errorf("%s %s: subscribed = %v", id.Kind, id.AppID, id.Subscribed)
				}
			}
			if !slices.Equal(entries, want) {
				t.Fatalf("identities = %+v\nwant %+v", entries, want)
			}
			mp, _ := me["mini_program"].(map[string]any)
			oa, _ := me["official_account"].(map[string]any)
			if mp["appid"] != mpA.AppID || oa["appid"] != oaB.AppID || oa["subscribed"] != true {
				t.Errorf("mini_program = %v, official_account = %v: want the default mini program's and the only official account's", mp, oa)
			}
		})
	}
}

// openidIn is p's openid in app.
func openidIn(e *env, p sandbox.Person, app sandbox.App) string {
	id, _ := e.sb.OpenID(p.ID, app.AppID)
	return id
}

// TestOldConfigurationServesTheDefaultOnly: a secret of the old shape (one
// mini program, no mobile app) logs in at /mp/login as before and knows no
// mobile app.
func TestOldConfigurationServesTheDefaultOnly(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	status, out := e.login(t, p.ID, "")
	if status != 200 {
		t.Fatalf("login = %d %v", status, out)
	}
	var fields []string
	for k := range out {
		fields = append(fields, k)
	}
	slices.Sort(fields)
	if !slices.Equal(fields, []string{"expires_at", "person", "session", "unionid_known"}) {
		t.Errorf("login answers %v", fields)
	}
	if s := sessionOf(t, out["session"].(string)); s.AppID != mpA.AppID || s.OpenID != p.MPOpenID {
		t.Errorf("session = %+v", s)
	}
	code, _ := e.sb.WXLogin(p.ID)
	for _, route := range []string{"POST /app/login", "POST /app/{appid}/login"} {
		if status, out, _ := e.callIn(t, route, appA.AppID, `{"code":"`+code+`"}`, ""); status != 404 || out["error"] != "unknown_app" {
			t.Errorf("%s = %d %v, want 404 unknown_app", route, status, out)
		}
	}
}

// TestNewNeedsAnApp: a deployment may have mobile apps only; it needs one
// app that logs in, each with its secret.
func TestNewNeedsAnApp(t *testing.T) {
	mobile := []config.App{{AppID: appA.AppID, Secret: appA.Secret}}
	cases := []struct {
		name string
		cfg  config.Config
		ok   bool
	}{
		{"mobile_apps_only", config.Config{MobileApps: mobile, SigningKey: sessionKey}, true},
		{"no_app", config.Config{SigningKey: sessionKey}, false},
		{"mobile_app_without_secret", config.Config{MobileApps: []config.App{{AppID: appA.AppID}}, SigningKey: sessionKey}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(tc.cfg, nil, nil, observe.Logger(io.Discard, "login"), observe.NewMetrics(io.Discard, "login"))
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v", err)
			}
			if tc.ok {
				status, out, _ := (&env{h: h}).call(t, "POST /mp/login", `{"code":"x"}`, "")
				if status != 404 || out["error"] != "unknown_app" {
					t.Errorf("/mp/login without a mini program = %d %v", status, out)
				}
			}
		})
	}
}
