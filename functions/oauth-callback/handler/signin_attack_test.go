package handler

// Attacks on H5 sign-in with a public URL (issue 12, defect 3): a state
// replayed, twice at once; a callback finished in another browser,
// including one holding a binding cookie planted from a sibling
// subdomain; open-redirect attempts through return_to.

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
)

// TestAttackStateReplayed: the platform's redirect is followed twice at
// once (a double tap, a prefetching browser, a replaying proxy), then
// again later with another code: one session at most, the other
// callbacks refused as used, nothing linked twice.
func TestAttackStateReplayed(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	page := e.h5.URL + "/welcome"
	callback, state := e.start(t, e.h, wechat.ScopeBase, page)
	code := freshCode(e, p)
	var sessions, used atomic.Int32
	var mu sync.Mutex // the env's cookie jar is shared by the two requests
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			<-start
			mu.Lock()
			u, _ := url.Parse(callback)
			q := u.Query()
			q.Set("code", code)
			q.Set("state", state)
			mu.Unlock()
			resp := e.get(t, e.h, "/oauth/callback?"+q.Encode())
			switch {
			case resp.StatusCode == http.StatusFound && strings.Contains(resp.Headers["Location"], "session="):
				sessions.Add(1)
			case resp.StatusCode == http.StatusBadRequest && strings.Contains(resp.Body, "used_state"):
				used.Add(1)
			case resp.StatusCode == http.StatusFound:
				// A redirect with an error (the code spent by the other).
			default:
				t.Errorf("callback = %d %q", resp.StatusCode, resp.Headers["Location"])
			}
		})
	}
	close(start)
	wg.Wait()
	if sessions.Load() != 1 || used.Load() != 1 {
		t.Fatalf("%d sessions and %d used-state refusals from one state twice, want 1 and 1", sessions.Load(), used.Load())
	}
	// Later, with a fresh code of someone else: still used.
	other := e.sb.CreatePerson(sandbox.PersonSpec{})
	refusedPage(t, e.finish(t, e.h, callback, freshCode(e, other), state), http.StatusBadRequest, "used_state")
}

// TestAttackBindingCookiePlantedFromASiblingSubdomain: the login-CSRF
// attack again, by an attacker who controls any other host of the
// domain (a compromised or user-content subdomain: the H5 pages' host,
// a blog). They start a sign-in, consent in their own WeChat, and read
// the binding cookie's name in the state they were given: the name is
// wxb_oauth_ + the state's nonce, which the state carries in the clear,
// and the value is always "1". Their host sets that cookie on the
// victim's browser with Domain=<parent domain>, which the browser then
// sends to the callback. The callback accepts it, and the victim's page
// receives the attacker's session. The cookie's value should be
// something only wxbridge could have set (a MAC of the nonce under the
// signing key), not a name anyone holding the state can derive.
func TestAttackBindingCookiePlantedFromASiblingSubdomain(t *testing.T) {
	e := newEnv(t)
	var h *Handler
	h = e.newHandler(t, Options{Origins: []string{e.h5.URL}, PublicURL: "https://api.example.com"})
	g := gateway{host: "api.example.com", stage: "$default", h: func() *Handler { return h }}
	net := internet{g.host: g.handler()}

	// The attacker's own browser starts a sign-in.
	attackerJar, _ := cookiejar.New(nil)
	attacker := &http.Client{Jar: attackerJar, Transport: net, CheckRedirect: noFollow}
	page := e.h5.URL + "/account"
	resp, err := attacker.Get("https://api.example.com/oauth/authorize?" + url.Values{"scope": {wechat.ScopeBase}, "return_to": {page}}.Encode())
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %v %v", resp, err)
	}
	resp.Body.Close()
	authorize, _ := url.Parse(resp.Header.Get("Location"))
	state := authorize.Query().Get("state")
	callback, _ := url.Parse(authorize.Query().Get("redirect_uri"))
	mallory := e.sb.CreatePerson(sandbox.PersonSpec{})
	q := callback.Query()
	q.Set("code", freshCode(e, mallory))
	q.Set("state", state)
	callback.RawQuery = q.Encode()

	// From evil.example.com, the attacker plants the cookie the state
	// names (its nonce is the state's bytes 6 to 18, in hex) on the
	// victim's browser for the whole domain.
	nonce := state[12:36]
	victimJar, _ := cookiejar.New(nil)
	victimJar.SetCookies(&url.URL{Scheme: "https", Host: "evil.example.com", Path: "/"}, []*http.Cookie{{
		Name: "wxb_oauth_" + nonce, Value: "1", Domain: "example.com", Path: "/oauth/callback", Secure: true, HttpOnly: true,
	}})
	if len(victimJar.Cookies(callback)) != 1 {
		t.Fatal("setup: the browser would not send the planted cookie to the callback")
	}
	// The victim is lured to the callback link.
	if _, signedIn := e.lure(t, victimJar, net, callback); signedIn != "" {
		t.Fatalf("the victim's browser was signed in as the attacker (%s) with a cookie planted from a sibling subdomain", signedIn)
	}
}

func mustFragment(t testing.TB, loc string) url.Values {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := url.ParseQuery(u.Fragment)
	return f
}

// TestAttackOpenRedirect: return_to values that would send the browser,
// and the session, somewhere else. /oauth/authorize refuses each with a
// page, never a redirect; a callback whose return_to was swapped after the
// state was issued is refused too.
func TestAttackOpenRedirect(t *testing.T) {
	e := newEnv(t)
	allowed := e.h5.URL // http://127.0.0.1:<port>
	host := strings.TrimPrefix(allowed, "http://")
	for _, rt := range []string{
		"https://evil.example/",
		"//evil.example/x",
		"/relative/path",
		"javascript:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"http://" + host + "@evil.example/",
		"http://" + host + ".evil.example/",
		"http://evil.example/?next=" + allowed,
		"http://evil.example\\@" + host + "/",
		"http://" + host + "\\@evil.example/",
		"http:/\\evil.example/",
		"http://" + host + "#@evil.example/",
		"http://" + host + "%2f@evil.example/",
		"http://" + host + "\t.evil.example/",
		"http://" + host + "/\r\nLocation: https://evil.example/",
		"https://" + host + "/", // another scheme is another origin
		"http://127.0.0.1:1/",   // another port
		"http://localhost" + host[strings.LastIndexByte(host, ':'):] + "/",
		"http://" + host + "。evil.example/",
		"  " + allowed + "/",
		allowed + "/" + strings.Repeat("a", 3000),
	} {
		t.Run(url.PathEscape(rt[:min(len(rt), 40)]), func(t *testing.T) {
			resp := e.get(t, e.h, "/oauth/authorize?"+url.Values{"scope": {wechat.ScopeBase}, "return_to": {rt}}.Encode())
			if resp.StatusCode != http.StatusBadRequest || resp.Headers["Location"] != "" {
				t.Fatalf("return_to %q: %d Location %q, want a 400 page", rt, resp.StatusCode, resp.Headers["Location"])
			}
		})
	}
	// A state issued for one page, finished with return_to swapped (to an
	// outside page, or another allowed one), or repeated.
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	callback, state := e.start(t, e.h, wechat.ScopeBase, allowed+"/a")
	u, _ := url.Parse(callback)
	for name, rt := range map[string][]string{"outside": {"https://evil.example/"}, "other_allowed_page": {allowed + "/b"}, "repeated": {allowed + "/a", "https://evil.example/"}} {
		q := u.Query()
		q["return_to"] = rt
		q.Set("code", freshCode(e, p))
		q.Set("state", state)
		resp := e.get(t, e.h, "/oauth/callback?"+q.Encode())
		if resp.StatusCode != http.StatusBadRequest || resp.Headers["Location"] != "" {
			t.Fatalf("%s: callback = %d Location %q, want a 400 page", name, resp.StatusCode, resp.Headers["Location"])
		}
	}
}
