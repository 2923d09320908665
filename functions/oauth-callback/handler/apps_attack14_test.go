package handler

// Issue 14 attacks on sign-in through several apps: a state of every
// app's authorize route (the default routes included) at every other
// app's callback, replayed there after it was used, and brought with the
// binding cookie of another sign-in.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/wechat"
)

// TestStatesAcrossAppsAttack14: every pair of (authorize route, callback
// route) of two official accounts and two website apps. A state is good
// only at the callbacks of the app that issued it (its default route and
// its route by appid); at any other app's it is invalid_state before
// anything is spent or written, before and after it was used; used, it is
// used_state at its own.
func TestStatesAcrossAppsAttack14(t *testing.T) {
	e := newEnv(t, multiApp()...)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/done"
	type route struct{ authorize, callback, appid string }
	routes := []route{
		{AuthorizePath, CallbackPath, oa1},
		{"/oauth/" + oa1 + "/authorize", "/oauth/" + oa1 + "/callback", oa1},
		{"/oauth/" + oa2 + "/authorize", "/oauth/" + oa2 + "/callback", oa2},
		{WebAuthorizePath, WebCallbackPath, web1},
		{"/web/" + web1 + "/authorize", "/web/" + web1 + "/callback", web1},
		{"/web/" + web2 + "/authorize", "/web/" + web2 + "/callback", web2},
	}
	scopeOf := func(appid string) string {
		if appid == web1 || appid == web2 {
			return wechat.ScopeLogin
		}
		return wechat.ScopeBase
	}
	refusedElsewhere := func(t *testing.T, from route, callback, state string) {
		t.Helper()
		before := e.identityItems(t)
		for _, at := range routes {
			if at.appid == from.appid {
				continue
			}
			refusedPage(t, e.finishAt(t, e.h, at.callback, callback, "0123456789abcdef", state), http.StatusBadRequest, "invalid_state")
		}
		if n := e.identityItems(t); n != before {
			t.Fatalf("states refused at other apps' callbacks wrote %d items", n-before)
		}
	}
	for _, from := range routes {
		t.Run(from.authorize, func(t *testing.T) {
			callback, state := e.startAt(t, e.h, from.authorize, "", page)
			refusedElsewhere(t, from, callback, state)
			code, err := e.sb.OAuthCode(sandbox.OAuthConsent{AppID: from.appid, Person: p.ID, Scope: scopeOf(from.appid)})
			if err != nil {
				t.Fatal(err)
			}
			f := backTo(t, e.finishAt(t, e.h, from.callback, callback, code, state), page)
			if s := e.verifySession(t, f.Get("session")); s.AppID != from.appid {
				t.Fatalf("session of %q, want %s", s.AppID, from.appid)
			}
			// Replayed: used at its own app's callbacks, invalid anywhere else.
			for _, at := range routes {
				if at.appid == from.appid {
					refusedPage(t, e.finishAt(t, e.h, at.callback, callback, code, state), http.StatusBadRequest, "used_state")
				}
			}
			refusedElsewhere(t, from, callback, state)
		})
	}
}

// TestBindingCookieOfAnotherSignInAttack14: a state brought by a browser
// that holds only the binding cookie of another sign-in (of the same app,
// or of another app), or that cookie's value under this sign-in's name, is
// foreign_state; the state is not spent, and the browser that started it
// still finishes.
func TestBindingCookieOfAnotherSignInAttack14(t *testing.T) {
	e := newEnv(t, multiApp()...)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/done"
	base, _ := url.Parse(e.bridge.URL + "/")
	nameOf := func(state string) string { return "wxb_oauth_" + state[12:36] } // the nonce: bytes 6 to 18
	// cookies are the jar's cookies but this sign-in's.
	cookies := func(state string) map[string]string {
		out := map[string]string{}
		for _, c := range e.jar.Cookies(base) {
			if c.Name != nameOf(state) {
				out[c.Name] = c.Value
			}
		}
		return out
	}
	oaCallback, oaState := e.startAt(t, e.h, "/oauth/"+oa2+"/authorize", "", page)
	_, otherOA := e.startAt(t, e.h, "/oauth/"+oa2+"/authorize", "", page)
	_, otherWeb := e.startAt(t, e.h, WebAuthorizePath, "", page)
	others := cookies(oaState)
	if len(others) != 2 || others[nameOf(otherOA)] == "" || others[nameOf(otherWeb)] == "" {
		t.Fatalf("setup: the jar holds %v", others)
	}
	code, err := e.sb.OAuthCode(sandbox.OAuthConsent{AppID: oa2, Person: p.ID, Scope: wechat.ScopeBase})
	if err != nil {
		t.Fatal(err)
	}
	for name, jar := range map[string]map[string]string{
		"only_other_sign_ins_cookies":           others,
		"another_oa_sign_ins_value_by_its_name": {nameOf(oaState): others[nameOf(otherOA)]},
		"a_website_sign_ins_value_by_its_name":  {nameOf(oaState): others[nameOf(otherWeb)]},
	} {
		t.Run(name, func(t *testing.T) {
			u, _ := url.Parse(oaCallback)
			q := u.Query()
			q.Set("code", code)
			q.Set("state", oaState)
			r := httptest.NewRequest("GET", e.bridge.URL+"/oauth/"+oa2+"/callback?"+q.Encode(), nil)
			for n, v := range jar {
				r.AddCookie(&http.Cookie{Name: n, Value: v})
			}
			req, err := httpapi.Request(r)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := e.h.Handle(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			refusedPage(t, resp, http.StatusBadRequest, "foreign_state")
		})
	}
	if n := e.identityItems(t); n != 0 {
		t.Fatalf("foreign states wrote %d items", n)
	}
	f := backTo(t, e.finishAt(t, e.h, "/oauth/"+oa2+"/callback", oaCallback, code, oaState), page)
	if f.Get("session") == "" {
		t.Fatalf("the browser that started it: %v", f)
	}
}
