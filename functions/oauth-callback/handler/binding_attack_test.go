package handler

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
)

// TestAttackBindingCookieCopiedFromTheAttackersOwnBrowser: cookie tossing
// played in full. The attacker, who controls another host of the domain,
// starts a sign-in in their own browser, so they hold its binding cookie,
// value and all (a MAC of the nonce does not stop them), consent in their
// own WeChat, and from their host set that cookie on the victim's browser
// for the whole domain: under its own __Host- name (which the browser
// refuses with a Domain attribute), without the prefix, and as "__host-"
// (which a browser that matched prefixes case-sensitively would keep).
// The victim, lured to the callback link, gets the foreign_state page,
// not the attacker's session; the attacker's own browser still finishes
// the sign-in, so the cookie copied was the real one.
func TestAttackBindingCookieCopiedFromTheAttackersOwnBrowser(t *testing.T) {
	e := newEnv(t)
	h := e.newHandler(t, Options{Origins: []string{e.h5.URL}, PublicURL: "https://api.example.com"})
	g := gateway{host: "api.example.com", stage: "$default", h: func() *Handler { return h }}
	net := internet{g.host: g.handler()}

	attackerJar := newBrowserJar()
	attacker := &http.Client{Jar: attackerJar, Transport: net, CheckRedirect: noFollow}
	resp, err := attacker.Get("https://api.example.com/oauth/authorize?" + url.Values{"scope": {wechat.ScopeBase}, "return_to": {e.h5.URL + "/account"}}.Encode())
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %v %v", resp, err)
	}
	resp.Body.Close()
	authorize, _ := url.Parse(resp.Header.Get("Location"))
	callback, _ := url.Parse(authorize.Query().Get("redirect_uri"))
	q := callback.Query()
	q.Set("code", freshCode(e, e.sb.CreatePerson(sandbox.PersonSpec{})))
	q.Set("state", authorize.Query().Get("state"))
	callback.RawQuery = q.Encode()
	own := attackerJar.Cookies(callback)
	if len(own) != 1 {
		t.Fatalf("setup: the attacker's browser holds %v, want its binding cookie", own)
	}
	name, value := own[0].Name, own[0].Value

	victimJar := newBrowserJar()
	evil := &url.URL{Scheme: "https", Host: "evil.example.com", Path: "/"}
	tossed := func(name string) *http.Cookie {
		return &http.Cookie{Name: name, Value: value, Domain: "example.com", Path: "/", Secure: true, HttpOnly: true}
	}
	victimJar.SetCookies(evil, []*http.Cookie{tossed(name), tossed(strings.TrimPrefix(name, "__Host-"))})
	victimJar.CookieJar.SetCookies(evil, []*http.Cookie{tossed(strings.Replace(name, "__Host-", "__host-", 1))})
	if len(victimJar.Cookies(callback)) == 0 {
		t.Fatal("setup: the victim's browser would send none of the tossed cookies to the callback")
	}
	resp, signedIn := e.lure(t, victimJar, net, callback)
	if signedIn != "" {
		t.Fatalf("the victim's browser was signed in as the attacker (%s) with the attacker's own binding cookie tossed from a sibling host", signedIn)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback in the victim's browser = %d, want the foreign_state page", resp.StatusCode)
	}

	resp, err = attacker.Get(callback.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Location"), "session=") {
		t.Fatalf("the attacker's own browser = %d %q, want a session", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// lure sends the victim's browser (its cookie jar) to the callback link
// the attacker started, and returns the answer and the openid it was
// signed in as ("" if none).
func (e *env) lure(t *testing.T, jar http.CookieJar, net http.RoundTripper, callback *url.URL) (*http.Response, string) {
	t.Helper()
	victim := &http.Client{Jar: jar, Transport: net, CheckRedirect: noFollow}
	resp, err := victim.Get(callback.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); strings.Contains(loc, "session=") {
		return resp, e.verifySession(t, mustFragment(t, loc).Get("session")).OpenID
	}
	return resp, ""
}

// noFollow keeps a client on the answer that redirects, so the test reads
// where the browser would be sent.
func noFollow(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
