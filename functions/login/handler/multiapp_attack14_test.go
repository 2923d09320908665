package handler

// Issue 14 attacks on the login function's per-app routes: hostile appids
// in the path, a website app's session at the mini-program routes, a lost
// getuserphonenumber answer and its retry, and two people with different
// numbers merging across mini programs. No number is ever in a log line or
// an answer.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/session"
)

func TestPerAppRoutesAttack14(t *testing.T) {
	e := newMultiEnv(t)
	ctx := context.Background()
	e.sb.SetRevealUnionID(false) // the default mini program's login hides it: open data reveals it
	alice := e.sb.CreatePerson(sandbox.PersonSpec{})
	const n1, n2 = "+8613912340141", "+8613912340142"
	if err := e.sb.SetPhone(alice.ID, n1); err != nil {
		t.Fatal(err)
	}
	sessA := e.loginIn(t, alice.ID, mpA.AppID)["session"].(string)
	// noNumber fails the test if body names either number, in any form.
	noNumber := func(where, body string) {
		t.Helper()
		for _, n := range []string{n1, n2} {
			if strings.Contains(body, n[3:]) {
				t.Errorf("%s carries a number: %s", where, body)
			}
		}
	}

	t.Run("hostile_appids_are_unknown_apps", func(t *testing.T) {
		hostile := []string{
			"../", "..%2F" + mpB.AppID, "%2F", mpB.AppID + "/../" + mpA.AppID, "#", mpB.AppID + "#", "?" + mpB.AppID,
			strings.ToUpper(mpB.AppID), " " + mpB.AppID, mpB.AppID + "\x00", "wx\u202e" + mpB.AppID[2:], strings.Repeat("w", 5000),
		}
		routes := []string{"POST /mp/{appid}/login", "POST /mp/{appid}/profile", "POST /mp/{appid}/phone", "POST /mp/{appid}/subscribe-consents", "POST /app/{appid}/login"}
		for _, appid := range hostile {
			for _, route := range routes {
				e.counter.Counts()
				calls := wechatCalls(e.sb)
				status, out, resp := e.callIn(t, route, appid, `{"code":"0123456789abcdef0123456789abcdef"}`, sessA)
				if status != 404 || out["error"] != "unknown_app" {
					t.Fatalf("%s with appid %.40q: %d %v, want 404 unknown_app", route, appid, status, out)
				}
				if n := e.counter.Counts(); len(n) != 0 || wechatCalls(e.sb) != calls {
					t.Errorf("%s with appid %.40q reached DynamoDB (%v) or WeChat", route, appid, n)
				}
				if len(resp.Body) > 512 || strings.ContainsAny(resp.Body, "\x00\u202e") {
					t.Errorf("%s with appid %.40q: the answer reflects it: %d bytes %q", route, appid, len(resp.Body), resp.Body[:min(len(resp.Body), 200)])
				}
			}
		}
	})

	t.Run("a_website_session_is_no_mini_program_session", func(t *testing.T) {
		webOpenID, _ := e.sb.OpenID(alice.ID, webA.AppID)
		res, err := e.store.Link(ctx, identity.Sighting{Web: &identity.AppSighting{AppID: webA.AppID, OpenID: webOpenID}, UnionID: alice.UnionID, Source: identity.SourceWebLogin})
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := session.NewKeys(sessionKey, "", 0)
		web, _, err := keys.Issue(session.Session{AppID: webA.AppID, OpenID: webOpenID, UID: res.Person.UID})
		if err != nil {
			t.Fatal(err)
		}
		code, _ := e.sb.PhoneCode(alice.ID, mpA.AppID)
		data, iv, _ := e.sb.OpenDataApp(alice.ID, mpA.AppID)
		profile, _ := json.Marshal(map[string]string{"encrypted_data": data, "iv": iv})
		calls := wechatCalls(e.sb)
		for _, c := range []struct{ route, appid, body string }{
			{"POST /mp/phone", "", `{"code":"` + code + `"}`},
			{"POST /mp/{appid}/phone", mpB.AppID, `{"code":"` + code + `"}`},
			{"POST /mp/profile", "", string(profile)},
			{"POST /mp/subscribe-consents", "", `{"` + mpOnce + `":"accept"}`},
			{"POST /mp/{appid}/subscribe-consents", mpB.AppID, `{"` + mpOnce + `":"accept"}`},
		} {
			before := e.items(t)
			if status, out, _ := e.callIn(t, c.route, c.appid, c.body, web); status != 401 || out["error"] != "invalid_session" {
				t.Errorf("%s with a website session: %d %v, want 401 invalid_session", c.route, status, out)
			}
			if after := e.items(t); after != before {
				t.Errorf("%s with a website session wrote %d items", c.route, after-before)
			}
		}
		if status, out, _ := e.callIn(t, "POST /mp/{appid}/phone", webA.AppID, `{"code":"`+code+`"}`, web); status != 404 || out["error"] != "unknown_app" {
			t.Errorf("a website app's appid at /mp/{appid}/phone: %d %v", status, out)
		}
		if wechatCalls(e.sb) != calls {
			t.Error("a website session spent a mini program's code")
		}
		// GET /me takes it, and lists the website identity.
		status, me, _ := e.call(t, "GET /me", "", web)
		if status != 200 || me["uid"] != res.Person.UID {
			t.Fatalf("GET /me with a website session: %d %v", status, me)
		}
		found := false
		for _, id := range me["identities"].([]any) {
			m := id.(map[string]any)
			found = found || m["kind"] == "website" && m["appid"] == webA.AppID && m["openid"] == webOpenID
		}
		if !found {
			t.Errorf("identities %v lack the website app's", me["identities"])
		}
	})

	t.Run("a_lost_phone_answer_then_the_retry", func(t *testing.T) {
		code, _ := e.sb.PhoneCode(alice.ID, mpA.AppID)
		defer wechatFault(e, sandbox.Fault{Path: "/wxa/business/getuserphonenumber", LostAnswer: true, Count: 1})(t)()
		status, out, resp := e.callIn(t, "POST /mp/phone", "", `{"code":"`+code+`"}`, sessA)
		noNumber("the lost answer's", resp.Body)
		if status != 503 || out["error"] != "wechat_unavailable" || resp.Headers["Retry-After"] == "" {
			t.Fatalf("lost answer: %d %v", status, out)
		}
		// The client retries as told: WeChat spent the code with its lost
		// answer, so it is refused, and nothing was stored.
		status, out, resp = e.callIn(t, "POST /mp/phone", "", `{"code":"`+code+`"}`, sessA)
		noNumber("the retry's", resp.Body)
		if status != 400 || out["error"] != "invalid_code" {
			t.Fatalf("retry with the spent code: %d %v", status, out)
		}
		if _, err := e.store.ByPhone(ctx, n1); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("the number is stored after a lost answer: %v", err)
		}
		// A new tap verifies it.
		code, _ = e.sb.PhoneCode(alice.ID, mpA.AppID)
		status, out, resp = e.callIn(t, "POST /mp/phone", "", `{"code":"`+code+`"}`, sessA)
		noNumber("the new tap's", resp.Body)
		if status != 200 || out["phone"].(map[string]any)["masked"] != "+****0141" {
			t.Fatalf("new tap: %d %v", status, out)
		}
	})

	t.Run("two_people_with_different_numbers_merge", func(t *testing.T) {
		// Alice's number changes; she taps in the second mini program,
		// whose login knew her unionid: a person of its own, with the
		// new number. Open data in the first reveals the unionid there:
		// the two merge and keep the later number.
		e.te.Sandbox.Clock().Advance(time.Minute)
		if err := e.sb.SetPhone(alice.ID, n2); err != nil {
			t.Fatal(err)
		}
		sessB := e.loginIn(t, alice.ID, mpB.AppID)["session"].(string)
		if sessionOf(t, sessB).UID == sessionOf(t, sessA).UID {
			t.Fatal("setup: the second mini program's login found the first's person")
		}
		code, _ := e.sb.PhoneCode(alice.ID, mpB.AppID)
		if status, out, resp := e.callIn(t, "POST /mp/{appid}/phone", mpB.AppID, `{"code":"`+code+`"}`, sessB); status != 200 {
			t.Fatalf("verify in %s: %d %v", mpB.AppID, status, out)
		} else {
			noNumber("the second verification's", resp.Body)
		}
		data, iv, _ := e.sb.OpenDataApp(alice.ID, mpA.AppID)
		profile, _ := json.Marshal(map[string]string{"encrypted_data": data, "iv": iv})
		if status, out, _ := e.call(t, "POST /mp/profile", string(profile), sessA); status != 200 {
			t.Fatalf("profile: %d %v", status, out)
		}
		uid := ""
		for _, bearer := range []string{sessA, sessB} {
			status, me, resp := e.call(t, "GET /me", "", bearer)
			noNumber("GET /me", resp.Body)
			if status != 200 || me["phone"].(map[string]any)["masked"] != "+****0142" {
				t.Fatalf("GET /me = %d %v, want the later number masked", status, me)
			}
			if uid == "" {
				uid = me["uid"].(string)
			}
			if me["uid"] != uid {
				t.Errorf("two people after the merge: %s, %s", uid, me["uid"])
			}
		}
		if p, err := e.store.ByPhone(ctx, n2); err != nil || p.UID != uid {
			t.Errorf("ByPhone(later) = %s %v, want %s", p.UID, err, uid)
		}
		if _, err := e.store.ByPhone(ctx, n1); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("ByPhone(earlier) = %v, want nobody", err)
		}
	})

	noNumber("the logs", e.logs.String())
}

// TestUnboundMiniProgramLinksOnlyThroughBinding: a mini program outside
// the open platform account reveals no unionid, at login or in open data:
// its user stays a person of their own while the bound apps know them,
// until a login there carries the business binding of that person.
func TestUnboundMiniProgramLinksOnlyThroughBinding(t *testing.T) {
	unbound := sandbox.DevUnboundMiniProgram
	te := testenv.New(t,
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			c.SigningKey, c.BindKey = sessionKey, bindKey
			c.MiniPrograms = []config.App{{AppID: mpB.AppID, Secret: mpB.Secret}, {AppID: unbound.AppID, Secret: unbound.Secret}}
		}))
	fn := te.As("LoginFunction")
	cfg, err := config.Load(context.Background(), fn.Secrets, te.ConfigSecret)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	h, err := New(cfg, fn.WeChat, identity.NewStore(fn.DB, te.Table), observe.Logger(logs, "login"), observe.NewMetrics(logs, "login"),
		WithTokenUses(binding.NewUses(fn.DB, te.Table)))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{h: h, te: te, sb: te.Sandbox, store: identity.NewStore(te.DB, te.Table), db: te.DB, table: te.Table, logs: logs, counter: te.Counter}
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	login := func(appid, bindFor string, ttl time.Duration) map[string]any {
		t.Helper()
		code, err := e.sb.WXLoginApp(p.ID, appid)
		if err != nil {
			t.Fatal(err)
		}
		body := `{"code":"` + code + `"}`
		if bindFor != "" {
			tok, _ := binding.Sign(bindKey, bindFor, time.Now().Add(ttl))
			body = `{"code":"` + code + `","bind_token":"` + tok + `"}`
		}
		status, out, _ := e.callIn(t, mpRoute(appid, "login"), appid, body, "")
		if status != 200 {
			t.Fatalf("login in %s: %d %v", appid, status, out)
		}
		return out
	}
	bound := login(mpB.AppID, "8812", 10*time.Minute)
	alone := login(unbound.AppID, "", 0)
	if uidOf(alone) == uidOf(bound) || alone["unionid_known"] != false {
		t.Fatalf("the unbound login found %s (unionid known: %v), the bound person is %s", uidOf(alone), alone["unionid_known"], uidOf(bound))
	}
	data, iv, err := e.sb.OpenDataApp(p.ID, unbound.AppID)
	if err != nil {
		t.Fatal(err)
	}
	profile, _ := json.Marshal(map[string]string{"encrypted_data": data, "iv": iv})
	status, out, _ := e.callIn(t, "POST /mp/{appid}/profile", unbound.AppID, string(profile), alone["session"].(string))
	if status != 200 || out["unionid_known"] != false || uidOf(out) != uidOf(alone) {
		t.Fatalf("open data of the unbound app: %d %v, want no unionid and the person alone", status, out)
	}
	// The business binds the unbound app's user to its account 8812 (a
	// token of its own: the first one bound the other app's user, and
	// nothing says the two are one): the two people are one.
	linked := login(unbound.AppID, "8812", 20*time.Minute)
	if uidOf(linked) != uidOf(bound) {
		t.Fatalf("bound login is %s, want the bound person %s", uidOf(linked), uidOf(bound))
	}
	status, me, _ := e.call(t, "GET /me", "", linked["session"].(string))
	if status != 200 || me["uid"] != uidOf(bound) || me["external_id"] != "8812" || len(me["identities"].([]any)) != 2 {
		t.Fatalf("GET /me = %d %v", status, me)
	}
}
