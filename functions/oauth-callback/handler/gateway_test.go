package handler

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/wechat"
)

// The tests below reach the function the ways a deployed stack is reached:
// at its execute-api address, at a custom domain, at a custom domain with
// a base path (an API mapping), and through a proxy in front. A browser
// with a real cookie jar follows every redirect at the real addresses, so
// a cookie comes back only where a browser would send it (host, Path,
// Secure), and is kept only if a browser would keep it (name prefixes).

const apiID = "abc123"

var executeAPI = apiID + ".execute-api.us-east-1.amazonaws.com"

// gateway plays API Gateway (HTTP API, payload 2.0, one Lambda
// integration per route) for one address of the API: it routes the URL
// the browser asked for and builds the event as API Gateway builds it.
type gateway struct {
	host string // the host the browser addresses
	// stage is the API stage: "$default" (SAM's, and the template's), or a
	// named stage, which the execute-api URL carries as its first segment
	// and which API Gateway keeps in rawPath there.
	stage string
	// basePath is a custom domain's API mapping path ("/wx"), which API
	// Gateway strips before routing. Whether rawPath still holds it is
	// reported both ways; keepBase plays the other answer, and the handler
	// must not depend on it.
	basePath string
	keepBase bool
	// domainName, when set, is the domain the event names instead of host:
	// a proxy in front (CloudFront) that forwards to the execute-api host.
	domainName string
	h          func() *Handler
}

func (g gateway) handler() http.Handler {
	return httpapi.Serve(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		path := ev.RawPath // as the browser asked
		route, raw, ok := path, path, true
		switch {
		case g.stage != "$default":
			route, ok = strings.CutPrefix(path, "/"+g.stage)
		case g.basePath != "":
			route, ok = strings.CutPrefix(path, g.basePath)
			if raw = route; g.keepBase {
				raw = path
			}
		}
		// The template's routes: /oauth/… and /web/…, the app's segment
		// a path variable.
		segs := strings.Split(route, "/")
		routePath := route
		if len(segs) == 4 {
			ev.PathParameters = map[string]string{"appid": segs[2]}
			segs[2] = "{appid}"
			routePath = strings.Join(segs, "/")
		}
		switch routePath {
		case AuthorizePath, CallbackPath, AppAuthorizePath, AppCallbackPath, WebAuthorizePath, WebCallbackPath, WebAppAuthorizePath, WebAppCallbackPath:
		default:
			ok = false
		}
		if !ok {
			return events.APIGatewayV2HTTPResponse{StatusCode: 404, Body: `{"message":"Not Found"}`}, nil
		}
		domain := g.host
		if g.domainName != "" {
			domain = g.domainName
		}
		ev.RouteKey = ev.RequestContext.HTTP.Method + " " + routePath
		ev.RawPath = raw
		ev.Headers["host"] = domain
		ev.Headers["x-forwarded-proto"] = "https"
		rc := &ev.RequestContext
		rc.RouteKey, rc.HTTP.Path = ev.RouteKey, raw
		rc.APIID, rc.Stage = apiID, g.stage
		rc.DomainName = domain
		rc.DomainPrefix, _, _ = strings.Cut(domain, ".")
		return g.h().Handle(ctx, ev)
	})
}

// internet routes a browser's requests: the gateways' hosts in-process,
// the rest (the sandbox, the H5 site, on loopback) over the wire.
type internet map[string]http.Handler

func (n internet) RoundTrip(r *http.Request) (*http.Response, error) {
	h, ok := n[r.URL.Host]
	if !ok {
		return http.DefaultTransport.RoundTrip(r)
	}
	sr := r.Clone(r.Context())
	sr.Host, sr.RemoteAddr = r.URL.Host, "203.0.113.7:51000"
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, sr)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// visitThrough follows a sign-in from start like a browser on n, with its
// own cookie jar (one that keeps browsers' rules for prefixed cookies),
// consenting as p at the platform's authorize page.
func (e *env) visitThrough(t *testing.T, n internet, start string, p sandbox.Person) visit {
	t.Helper()
	return e.browseOn(t, newBrowserJar(), n, start, url.Values{"person": {p.ID}})
}

// TestSignInAtEveryAddress is issue 12's third defect: with PublicUrl set,
// every sign-in ended in foreign_state, the binding cookie being set with
// Path=/oauth/callback on whichever host served /oauth/authorize. Each
// case is a full authorize, consent and callback round trip.
func TestSignInAtEveryAddress(t *testing.T) {
	e := newEnv(t, multiApp()...)
	var h *Handler
	current := func() *Handler { return h }
	execDefault := gateway{host: executeAPI, stage: "$default", h: current}
	cases := []struct {
		name      string
		publicURL string
		gateways  []gateway
		start     string // the address the page links to
		moved     bool   // the browser is first sent to the public URL
		callback  string // where the platform sends the browser back
		qr        bool   // a website app's: the QR connect page
	}{
		{name: "execute_api_address", gateways: []gateway{execDefault},
			start: "https://" + executeAPI + "/oauth/authorize", callback: "https://" + executeAPI + "/oauth/callback"},
		{name: "execute_api_address_of_a_named_stage", gateways: []gateway{{host: executeAPI, stage: "prod", h: current}},
			start: "https://" + executeAPI + "/prod/oauth/authorize", callback: "https://" + executeAPI + "/prod/oauth/callback"},
		{name: "custom_domain", publicURL: "https://api.example.com",
			gateways: []gateway{execDefault, {host: "api.example.com", stage: "$default", h: current}},
			start:    "https://api.example.com/oauth/authorize", callback: "https://api.example.com/oauth/callback"},
		{name: "custom_domain_linked_at_execute_api", publicURL: "https://api.example.com",
			gateways: []gateway{execDefault, {host: "api.example.com", stage: "$default", h: current}},
			start:    "https://" + executeAPI + "/oauth/authorize", moved: true, callback: "https://api.example.com/oauth/callback"},
		{name: "custom_domain_with_a_base_path", publicURL: "https://api.example.com/wx",
			gateways: []gateway{execDefault, {host: "api.example.com", stage: "$default", basePath: "/wx", h: current}},
			start:    "https://api.example.com/wx/oauth/authorize", callback: "https://api.example.com/wx/oauth/callback"},
		{name: "custom_domain_with_a_base_path_kept_in_raw_path", publicURL: "https://api.example.com/wx",
			gateways: []gateway{execDefault, {host: "api.example.com", stage: "$default", basePath: "/wx", keepBase: true, h: current}},
			start:    "https://api.example.com/wx/oauth/authorize", callback: "https://api.example.com/wx/oauth/callback"},
		{name: "base_path_linked_at_execute_api", publicURL: "https://api.example.com/wx",
			gateways: []gateway{execDefault, {host: "api.example.com", stage: "$default", basePath: "/wx", h: current}},
			start:    "https://" + executeAPI + "/oauth/authorize", moved: true, callback: "https://api.example.com/wx/oauth/callback"},
		// CloudFront in front forwards to the execute-api host: the event
		// never names the public host. One move, then no loop.
		{name: "proxy_that_rewrites_the_host", publicURL: "https://www.example.com/api",
			gateways: []gateway{{host: "www.example.com", stage: "$default", basePath: "/api", domainName: executeAPI, h: current}},
			start:    "https://www.example.com/api/oauth/authorize", moved: true, callback: "https://www.example.com/api/oauth/callback"},
		// Another app's routes, named by appid, come back to that app's
		// callback under the same base.
		{name: "official_account_by_appid_linked_at_execute_api", publicURL: "https://api.example.com/wx",
			gateways: []gateway{execDefault, {host: "api.example.com", stage: "$default", basePath: "/wx", h: current}},
			start:    "https://" + executeAPI + "/oauth/" + oa2 + "/authorize", moved: true, callback: "https://api.example.com/wx/oauth/" + oa2 + "/callback"},
		{name: "website_app_at_a_custom_domain_with_a_base_path", publicURL: "https://api.example.com/wx",
			gateways: []gateway{execDefault, {host: "api.example.com", stage: "$default", basePath: "/wx", h: current}},
			start:    "https://api.example.com/wx/web/" + web2 + "/authorize", callback: "https://api.example.com/wx/web/" + web2 + "/callback", qr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h = e.newHandler(t, Options{Origins: []string{e.h5.URL}, PublicURL: tc.publicURL})
			n := internet{}
			for _, g := range tc.gateways {
				n[g.host] = g.handler()
			}
			p := e.sb.CreatePerson(sandbox.PersonSpec{})
			page := e.h5.URL + "/orders?id=8812"
			scope, platform, appid := wechat.ScopeBase, "/connect/oauth2/authorize", oa1
			if strings.Contains(tc.start, oa2) {
				appid = oa2
			}
			if tc.qr {
				scope, platform, appid = wechat.ScopeLogin, "/connect/qrconnect", web2
			}
			start := tc.start + "?" + url.Values{"scope": {scope}, "return_to": {page}}.Encode()
			v := e.visitThrough(t, n, start, p)

			if _, code, refused := strings.Cut(v.body, "<small>error: "); refused {
				code, _, _ = strings.Cut(code, "<")
				t.Fatalf("sign-in refused with %s (%d) after %v", code, v.status, v.hops)
			}
			hops := v.hops
			if tc.moved {
				want := strings.TrimSuffix(tc.callback, "/callback") + "/authorize"
				if len(hops) == 0 || hops[0].Scheme+"://"+hops[0].Host+hops[0].Path != want ||
					hops[0].Query().Get("return_to") != page || hops[0].Query().Get("scope") != scope {
					t.Fatalf("hops %v, want %s with the same query first", hops, want)
				}
				hops = hops[1:]
			}
			if len(hops) != 3 || hops[0].Path != platform {
				t.Fatalf("hops = %v, want authorize page, callback, H5 page", v.hops)
			}
			cb := *hops[1]
			cb.RawQuery = ""
			if cb.String() != tc.callback {
				t.Errorf("callback at %s, want %s", cb.String(), tc.callback)
			}
			if v.status != 200 || v.final.Path != "/orders" || v.final.RawQuery != "id=8812" {
				t.Fatalf("ended at %s (%d %q), want the page; hops %v", v.final, v.status, v.body, v.hops)
			}
			f := v.fragment()
			if s, openid := e.verifySession(t, f.Get("session")), p.OpenIDs[appid]; s.AppID != appid || s.OpenID != openid {
				t.Errorf("session for %s in %s, want %s", s.OpenID, s.AppID, openid)
			}
		})
	}
}

// TestBindingCookieIsHostOnly: with a base path, the cookie is a __Host-
// cookie of the public host (Secure, Path=/, no Domain, as the prefix
// requires), so a browser sends it to that host over https and to no other
// host of the domain, and refuses such a cookie from any of them.
func TestBindingCookieIsHostOnly(t *testing.T) {
	e := newEnv(t)
	h := e.newHandler(t, Options{Origins: []string{e.h5.URL}, PublicURL: "https://api.example.com/wx"})
	g := gateway{host: "api.example.com", stage: "$default", basePath: "/wx", h: func() *Handler { return h }}
	jar := newBrowserJar()
	c := &http.Client{Jar: jar, Transport: internet{g.host: g.handler()}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("https://api.example.com/wx/oauth/authorize?" + url.Values{"return_to": {e.h5.URL + "/"}}.Encode())
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %v %v", resp, err)
	}
	resp.Body.Close()
	set := resp.Cookies()
	if len(set) != 1 || !strings.HasPrefix(set[0].Name, "__Host-wxb_oauth_") || set[0].Path != "/" || set[0].Domain != "" ||
		!set[0].Secure || !set[0].HttpOnly || set[0].SameSite != http.SameSiteLaxMode || set[0].Value == "1" {
		t.Fatalf("Set-Cookie %q, want one __Host- binding cookie", resp.Header.Values("Set-Cookie"))
	}
	sent := func(u string) bool {
		pu, _ := url.Parse(u)
		for _, ck := range jar.Cookies(pu) {
			if ck.Name == set[0].Name && ck.Value == set[0].Value {
				return true
			}
		}
		return false
	}
	for u, want := range map[string]bool{
		"https://api.example.com/wx/oauth/callback?code=x": true,
		"http://api.example.com/wx/oauth/callback":         false, // Secure
		"https://" + executeAPI + "/oauth/callback":        false,
		"https://h5.example.com/":                          false, // a sibling host
		"https://example.com/":                             false, // the parent domain
	} {
		if got := sent(u); got != want {
			t.Errorf("cookie sent to %s: %v, want %v", u, got, want)
		}
	}
}

// browserJar is a cookie jar that also keeps the rules browsers apply to
// prefixed cookie names (RFC 6265bis, "Cookie Name Prefixes"), which
// net/http/cookiejar does not: a __Host- cookie is taken only from an
// https page, Secure, with Path=/ and without a Domain attribute; a
// __Secure- cookie only Secure from an https page. Current browsers match
// the prefixes case-insensitively.
type browserJar struct{ http.CookieJar }

func newBrowserJar() browserJar {
	j, _ := cookiejar.New(nil)
	return browserJar{j}
}

func (b browserJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	var kept []*http.Cookie
	for _, c := range cookies {
		name := strings.ToLower(c.Name)
		switch {
		case strings.HasPrefix(name, "__host-") && (u.Scheme != "https" || !c.Secure || c.Domain != "" || c.Path != "/"):
		case strings.HasPrefix(name, "__secure-") && (u.Scheme != "https" || !c.Secure):
		default:
			kept = append(kept, c)
		}
	}
	b.CookieJar.SetCookies(u, kept)
}
