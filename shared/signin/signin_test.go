package signin

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/config"
	"wxbridge/shared/ddb"
	"wxbridge/shared/identity"
	"wxbridge/shared/oauthstate"
	"wxbridge/shared/observe"
	"wxbridge/shared/profiles"
	"wxbridge/shared/session"
	"wxbridge/shared/wechat"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// unboundWebsite is a website app not bound to the open platform: the
// platform never reveals the unionid to it.
var unboundWebsite = sandbox.App{AppID: "wx5a0dbe0c0de000a5", Secret: "5a0dbe0c5ec7e700000000000000a0a5"}

const (
	signingKey = "session-signing-key-for-tests-0123456789abcdef"
	h5         = "https://h5.example.com"
	callback   = "https://api.example.com/wx/oauth/callback"
)

// fixture is one official account's sign-in flow over a moto table and
// the sandbox.
type fixture struct {
	flow     *Flow
	sb       *sandbox.Sandbox
	wc       *wechat.Client
	db       *dynamodb.Client
	table    string
	store    *identity.Store
	profiles *profiles.Store
	logs     *observe.Capture
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := sandbox.DefaultConfig()
	cfg.Apps = append(sandbox.DefaultApps(), sandbox.AppSpec{Kind: sandbox.AppWebsite, App: unboundWebsite, Unbound: true})
	f := &fixture{sb: sandbox.New(cfg), logs: &observe.Capture{}}
	srv := httptest.NewServer(f.sb)
	t.Cleanup(srv.Close)
	f.wc = wechat.New(wechat.Options{APIBase: srv.URL, OpenBase: srv.URL})
	f.table = awstest.Table(t)
	f.db = dynamodb.NewFromConfig(awstest.Config(nil))
	f.store = identity.NewStore(f.db, f.table)
	f.profiles = profiles.NewStore(f.db, f.table)
	f.flow = f.newFlow(t, h5)
	return f
}

func (f *fixture) newFlow(t *testing.T, origins ...string) *Flow {
	t.Helper()
	return f.flowOf(t, OfficialAccount(appOf(sandbox.DevOfficialAccount)), origins...)
}

func appOf(a sandbox.App) config.App { return config.App{AppID: a.AppID, Secret: a.Secret} }

// flowOf is the sign-in flow of app over the fixture's table and sandbox.
func (f *fixture) flowOf(t *testing.T, app App, origins ...string) *Flow {
	t.Helper()
	if len(origins) == 0 {
		origins = []string{h5}
	}
	o, err := NewOrigins(origins...)
	if err != nil {
		t.Fatal(err)
	}
	flow, err := New(app, o, signingKey, "", Deps{
		WeChat: f.wc, People: f.store, States: oauthstate.NewLedger(f.db, f.table), Profiles: f.profiles,
		Log: observe.Logger(f.logs, "signin-test"), Metrics: observe.NewMetrics(f.logs, "signin-test"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return flow
}

// begun is a sign-in as the browser carries it to the callback of flow.
type begun struct {
	flow                    *Flow
	state, returnTo, cookie string
}

func (f *fixture) begin(t *testing.T, scope, returnTo string) begun {
	t.Helper()
	return f.beginAt(t, f.flow, scope, returnTo)
}

func (f *fixture) beginAt(t *testing.T, flow *Flow, scope, returnTo string) begun {
	t.Helper()
	s, err := flow.Begin(context.Background(), scope, returnTo, callback)
	if err != nil {
		t.Fatal(err)
	}
	auth, _ := url.Parse(s.Authorize)
	redirect, _ := url.Parse(auth.Query().Get("redirect_uri"))
	if got := redirect.Scheme + "://" + redirect.Host + redirect.Path; got != callback {
		t.Fatalf("redirect_uri %s, want %s?…", redirect, callback)
	}
	return begun{flow: flow, state: auth.Query().Get("state"), returnTo: redirect.Query().Get("return_to"), cookie: s.Binding.Name + "=" + s.Binding.Value}
}

func (f *fixture) finish(b begun, code string) (Back, error) {
	return b.flow.Finish(context.Background(), Return{State: b.state, Code: code, ReturnTo: b.returnTo, Cookies: []string{b.cookie}, Callback: callback})
}

func (f *fixture) consent(t *testing.T, p sandbox.Person, scope string, snapshot bool) string {
	t.Helper()
	code, err := f.sb.OAuthCode(sandbox.OAuthConsent{Person: p.ID, Scope: scope, Snapshot: snapshot})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// identityItems counts the items that are people, identity markers or
// profiles: everything but used states.
func (f *fixture) identityItems(t *testing.T) int {
	t.Helper()
	out, err := f.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &f.table})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, it := range out.Items {
		if !strings.HasPrefix(ddb.String(it, "pk"), "OAUTHSTATE#") {
			n++
		}
	}
	return n
}

func refusedFor(t *testing.T, err error, reason string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != reason {
		t.Fatalf("err = %v, want a refusal %s", err, reason)
	}
}

func TestBegin(t *testing.T) {
	f := newFixture(t)
	t.Run("scope_defaults_to_the_first", func(t *testing.T) {
		s, err := f.flow.Begin(context.Background(), "", h5+"/", callback)
		if err != nil || s.Scope != wechat.ScopeBase || !strings.Contains(s.Authorize, "scope=snsapi_base") {
			t.Fatalf("Begin = %+v, %v", s, err)
		}
	})
	t.Run("unknown_scope", func(t *testing.T) {
		_, err := f.flow.Begin(context.Background(), "snsapi_login", h5+"/", callback)
		refusedFor(t, err, "invalid_request")
	})
	t.Run("return_to_elsewhere", func(t *testing.T) {
		_, err := f.flow.Begin(context.Background(), wechat.ScopeBase, "https://evil.example/", callback)
		refusedFor(t, err, "invalid_return_to")
	})
	t.Run("binding_is_a_host_cookie", func(t *testing.T) {
		// A base path or not, over https the cookie is __Host-: on the
		// callback's host only, which the browser enforces (Path=/, Secure,
		// no Domain).
		s, err := f.flow.Begin(context.Background(), wechat.ScopeBase, h5+"/", callback)
		if err != nil || s.Binding.Path != "/" || !s.Binding.Secure || s.Binding.Domain != "" || !strings.HasPrefix(s.Binding.Name, "__Host-wxb_oauth_") {
			t.Fatalf("binding = %v, %v", s.Binding, err)
		}
	})
	if n := f.identityItems(t); n != 0 {
		t.Errorf("Begin wrote %d items", n)
	}
}

func TestFinishOutcomes(t *testing.T) {
	fault := func(path string, errcode int) func(*fixture) {
		return func(f *fixture) {
			if err := f.sb.InjectFault(sandbox.Fault{Path: path, ErrCode: errcode, Count: 1}); err != nil {
				panic(err)
			}
		}
	}
	fresh := func(t *testing.T, f *fixture, p sandbox.Person) string {
		return f.consent(t, p, wechat.ScopeBase, false)
	}
	cases := []struct {
		name     string
		scope    string
		code     func(t *testing.T, f *fixture, p sandbox.Person) string
		setup    func(f *fixture)
		fragment string // the one key=value expected
		stored   bool   // a person was linked
	}{
		{name: "refused_consent", scope: wechat.ScopeUserInfo, code: func(*testing.T, *fixture, sandbox.Person) string { return "" }, fragment: "error=access_denied"},
		{name: "used_code", scope: wechat.ScopeBase, code: func(t *testing.T, f *fixture, p sandbox.Person) string {
			code := f.consent(t, p, wechat.ScopeBase, false)
			if _, err := f.wc.OAuthToken(context.Background(), sandbox.DevOfficialAccount.AppID, sandbox.DevOfficialAccount.Secret, code); err != nil {
				t.Fatal(err)
			}
			return code
		}, fragment: "error=invalid_code"},
		{name: "expired_code", scope: wechat.ScopeBase, code: func(t *testing.T, f *fixture, p sandbox.Person) string {
			code := f.consent(t, p, wechat.ScopeBase, false)
			f.sb.Clock().Advance(5*time.Minute + time.Second)
			return code
		}, fragment: "error=invalid_code"},
		{name: "unknown_code", scope: wechat.ScopeBase, code: func(*testing.T, *fixture, sandbox.Person) string { return "0123456789abcdef0123456789abcdef" }, fragment: "error=invalid_code"},
		{name: "snapshot_user_not_stored", scope: wechat.ScopeUserInfo, code: func(t *testing.T, f *fixture, p sandbox.Person) string {
			return f.consent(t, p, wechat.ScopeUserInfo, true)
		}, fragment: "snapshot=1"},
		{name: "wechat_down", scope: wechat.ScopeBase, code: fresh, setup: fault("/sns/oauth2/access_token", -1), fragment: "error=temporarily_unavailable"},
		{name: "wechat_rate_limited", scope: wechat.ScopeBase, code: fresh, setup: fault("/sns/oauth2/access_token", 45011), fragment: "error=temporarily_unavailable"},
		{name: "bad_app_secret_is_ours_to_fix", scope: wechat.ScopeBase, code: fresh, setup: fault("/sns/oauth2/access_token", 40125), fragment: "error=server_error"},
		{name: "profile_down_still_signs_in", scope: wechat.ScopeUserInfo, code: func(t *testing.T, f *fixture, p sandbox.Person) string {
			return f.consent(t, p, wechat.ScopeUserInfo, false)
		}, setup: fault("/sns/userinfo", -1), stored: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := f.sb.CreatePerson(sandbox.PersonSpec{})
			page := h5 + "/done"
			b := f.begin(t, tc.scope, page)
			code := tc.code(t, f, p)
			if tc.setup != nil {
				tc.setup(f)
			}
			back, err := f.finish(b, code)
			if err != nil || back.ReturnTo != page || !strings.HasPrefix(back.URL(), page+"#") {
				t.Fatalf("Finish = %+v, %v; want back to %s", back, err, page)
			}
			n := f.identityItems(t)
			if !tc.stored {
				k, v, _ := strings.Cut(tc.fragment, "=")
				if len(back.Fragment) != 1 || back.Fragment.Get(k) != v {
					t.Errorf("fragment = %v, want only %s", back.Fragment, tc.fragment)
				}
				if n != 0 {
					t.Errorf("%d people, markers or profiles stored", n)
				}
				return
			}
			keys, _ := session.NewKeys(signingKey, "", 0)
			s, err := keys.Verify(back.Fragment.Get("session"))
			if err != nil || back.Outcome() != "session" {
				t.Fatalf("session: %v (outcome %s)", err, back.Outcome())
			}
			person, err := f.store.ByUID(context.Background(), s.UID)
			// The unionid came with the token even though the profile did not.
			if err != nil || person.UnionID != p.UnionID {
				t.Errorf("person = %+v, %v", person, err)
			}
			if _, err := f.profiles.Get(context.Background(), sandbox.DevOfficialAccount.AppID, p.OAOpenID); !errors.Is(err, profiles.ErrNotFound) {
				t.Errorf("profile: %v, want none", err)
			}
		})
	}
}

// TestFinishRefuses: a state that cannot be trusted leaves nowhere safe to
// send the browser: a Refusal, nothing written.
func TestFinishRefuses(t *testing.T) {
	f := newFixture(t)
	p := f.sb.CreatePerson(sandbox.PersonSpec{})
	page := h5 + "/done"
	fresh := func() string { return f.consent(t, p, wechat.ScopeBase, false) }

	t.Run("forged", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		s := []byte(b.state)
		s[len(s)-1] ^= 1 // '0'<->'1', 'a'<->'`'…: another state either way
		b.state = string(s)
		_, err := f.finish(b, fresh())
		refusedFor(t, err, "invalid_state")
	})
	t.Run("missing", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		b.state = ""
		_, err := f.finish(b, fresh())
		refusedFor(t, err, "invalid_state")
	})
	t.Run("return_to_swapped", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		b.returnTo = h5 + "/elsewhere"
		_, err := f.finish(b, fresh())
		refusedFor(t, err, "invalid_state")
	})
	t.Run("expired", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		f.flow.SetClock(func() time.Time { return time.Now().Add(oauthstate.TTL + time.Second) })
		defer f.flow.SetClock(time.Now)
		_, err := f.finish(b, fresh())
		refusedFor(t, err, "expired_state")
	})
	t.Run("another_browser", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		other := f.begin(t, wechat.ScopeBase, page)
		b.cookie = other.cookie
		_, err := f.finish(b, fresh())
		refusedFor(t, err, "foreign_state")
	})
	t.Run("replayed", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		code := fresh()
		if back, err := f.finish(b, code); err != nil || back.Outcome() != "session" {
			t.Fatalf("first use: %+v, %v", back, err)
		}
		_, err := f.finish(b, code)
		refusedFor(t, err, "used_state")
		_, err = f.finish(b, fresh())
		refusedFor(t, err, "used_state")
	})
	t.Run("replayed_after_refusal", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		if back, err := f.finish(b, ""); err != nil || back.Outcome() != "error=access_denied" {
			t.Fatalf("refusal: %+v, %v", back, err)
		}
		_, err := f.finish(b, fresh())
		refusedFor(t, err, "used_state")
	})
	t.Run("origin_dropped_from_the_allowlist_since", func(t *testing.T) {
		b := f.begin(t, wechat.ScopeBase, page)
		stricter := f.newFlow(t, "https://m.example.com")
		_, err := stricter.Finish(context.Background(), Return{State: b.state, Code: fresh(), ReturnTo: b.returnTo, Cookies: []string{b.cookie}})
		refusedFor(t, err, "invalid_return_to")
	})
}

func TestNewRefuses(t *testing.T) {
	o, _ := NewOrigins(h5)
	oa := OfficialAccount(config.App{AppID: "wx0", Secret: "s"})
	noSecret := OfficialAccount(config.App{AppID: "wx0"})
	for name, c := range map[string]struct {
		app     App
		origins Origins
		key     string
	}{
		"no_origins": {oa, Origins{}, signingKey},
		"no_secret":  {noSecret, o, signingKey},
		"no_key":     {oa, o, ""},
		"no_scopes":  {App{App: oa.App, Sighting: oa.Sighting}, o, signingKey},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(c.app, c.origins, c.key, "", Deps{}); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestWebsite is a website app's QR login: the connect page, the visitor
// linked by the website app's openid and, for an app bound to the open
// platform, by the unionid its grant carries, so that the person who signed
// in through the official account is the same one.
func TestWebsite(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	web := f.flowOf(t, Website(appOf(sandbox.DevWebsite)))
	unbound := f.flowOf(t, Website(appOf(unboundWebsite)))
	page := h5 + "/account"
	login := func(t *testing.T, flow *Flow, appid string, p sandbox.Person) (session.Session, identity.Person) {
		t.Helper()
		b := f.beginAt(t, flow, "", page)
		code, err := f.sb.OAuthCode(sandbox.OAuthConsent{AppID: appid, Person: p.ID, Scope: wechat.ScopeLogin})
		if err != nil {
			t.Fatal(err)
		}
		back, err := f.finish(b, code)
		if err != nil || back.Outcome() != "session" {
			t.Fatalf("Finish = %v, %v", back.Fragment, err)
		}
		keys, _ := session.NewKeys(signingKey, "", 0)
		s, err := keys.Verify(back.Fragment.Get("session"))
		if err != nil {
			t.Fatal(err)
		}
		openid, _ := f.sb.OpenID(p.ID, appid)
		person, err := f.store.Lookup(ctx, identity.WebKey(appid, openid))
		if err != nil || s.AppID != appid || s.OpenID != openid || s.UID != person.UID || person.Web[appid].OpenID != openid {
			t.Fatalf("session %+v, person %+v, %v: want the website app's identity", s, person, err)
		}
		return s, person
	}

	t.Run("the_qr_connect_page", func(t *testing.T) {
		s, err := web.Begin(ctx, "", page, callback)
		auth, _ := url.Parse(s.Authorize)
		if err != nil || s.Scope != wechat.ScopeLogin || auth.Path != "/connect/qrconnect" || auth.Query().Get("appid") != sandbox.DevWebsite.AppID {
			t.Fatalf("Begin = %+v, %v", s, err)
		}
		_, err = web.Begin(ctx, wechat.ScopeUserInfo, page, callback)
		refusedFor(t, err, "invalid_request")
	})

	t.Run("bound_app_joins_the_official_account_by_unionid", func(t *testing.T) {
		p := f.sb.CreatePerson(sandbox.PersonSpec{})
		b := f.begin(t, wechat.ScopeUserInfo, page)
		if back, err := f.finish(b, f.consent(t, p, wechat.ScopeUserInfo, false)); err != nil || back.Outcome() != "session" {
			t.Fatalf("OA sign-in: %v, %v", back.Fragment, err)
		}
		calls := f.sb.Calls("/sns/userinfo")
		_, person := login(t, web, sandbox.DevWebsite.AppID, p)
		if person.UnionID != p.UnionID || person.OA[sandbox.DevOfficialAccount.AppID].OpenID != p.OAOpenID {
			t.Errorf("person = %+v, want the OA visitor with the website identity", person)
		}
		// The grant carried the unionid: no sns/userinfo, no profile.
		if n := f.sb.Calls("/sns/userinfo") - calls; n != 0 {
			t.Errorf("%d sns/userinfo calls for a grant with the unionid", n)
		}
		if _, err := f.profiles.Get(ctx, sandbox.DevWebsite.AppID, person.Web[sandbox.DevWebsite.AppID].OpenID); !errors.Is(err, profiles.ErrNotFound) {
			t.Errorf("profile: %v, want none", err)
		}
	})

	t.Run("unbound_app_without_unionid_stays_its_own_person", func(t *testing.T) {
		p := f.sb.CreatePerson(sandbox.PersonSpec{})
		b := f.begin(t, wechat.ScopeUserInfo, page)
		if back, err := f.finish(b, f.consent(t, p, wechat.ScopeUserInfo, false)); err != nil || back.Outcome() != "session" {
			t.Fatalf("OA sign-in: %v, %v", back.Fragment, err)
		}
		calls := f.sb.Calls("/sns/userinfo")
		_, person := login(t, unbound, unboundWebsite.AppID, p)
		oa, err := f.store.Lookup(ctx, identity.OAKey(sandbox.DevOfficialAccount.AppID, p.OAOpenID))
		if err != nil || person.UID == oa.UID || person.UnionID != "" || len(person.OA) != 0 {
			t.Errorf("website person %+v, OA person %s (%v): want two people", person, oa.UID, err)
		}
		// No unionid in the grant: sns/userinfo once, for nothing here,
		// but its profile is kept.
		if n := f.sb.Calls("/sns/userinfo") - calls; n != 1 {
			t.Errorf("%d sns/userinfo calls, want 1", n)
		}
		if prof, err := f.profiles.Get(ctx, unboundWebsite.AppID, person.Web[unboundWebsite.AppID].OpenID); err != nil || prof.Nickname != p.Nickname {
			t.Errorf("profile = %+v, %v", prof, err)
		}
	})

	// A state is good only at the callback of the app that issued it.
	t.Run("state_of_another_app", func(t *testing.T) {
		web2 := f.flowOf(t, Website(appOf(sandbox.DevWebsite2)))
		oa2 := f.flowOf(t, OfficialAccount(appOf(sandbox.DevOfficialAccount2)))
		p := f.sb.CreatePerson(sandbox.PersonSpec{})
		before := f.identityItems(t)
		for name, c := range map[string]struct{ from, at *Flow }{
			"official_account_at_website": {f.flow, web},
			"website_at_official_account": {web, f.flow},
			"website_at_another_website":  {web, web2},
			"official_account_at_another": {f.flow, oa2},
		} {
			t.Run(name, func(t *testing.T) {
				b := f.beginAt(t, c.from, "", page)
				b.flow = c.at
				_, err := f.finish(b, f.consent(t, p, wechat.ScopeBase, false))
				refusedFor(t, err, "invalid_state")
			})
		}
		if n := f.identityItems(t); n != before {
			t.Fatalf("refused states linked someone: %d items, had %d", n, before)
		}
	})
}
