package signin

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"wxbridge/shared/oauthstate"
)

// cookiePrefix names binding cookies; the state's nonce follows.
const cookiePrefix = "wxb_oauth_"

// binding ties a sign-in to the browser that started it: the callback
// accepts a state only from a browser holding the cookie named after its
// nonce. Without it, someone could start a sign-in, consent in their own
// WeChat, and send the callback link to a victim, whose page would then
// hold the attacker's session (login CSRF).
//
// A browser sends a cookie back only to the host that set it (no Domain
// attribute) and to paths under its Path, so the cookie is set while the
// browser is on the callback's host, with the callback's own path: behind
// a custom domain with a base path that is <base path>/oauth/callback,
// not /oauth/callback. Named per nonce, so that two sign-ins in two tabs
// do not overwrite each other; SameSite=Lax, because WeChat comes back
// with a top-level GET.
func binding(st oauthstate.State, callback *url.URL, now time.Time) *http.Cookie {
	return &http.Cookie{
		Name: cookiePrefix + st.Nonce, Value: "1",
		Path:     callback.EscapedPath(),
		MaxAge:   max(1, int(st.Expires.Sub(now).Seconds())),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: callback.Scheme == "https",
	}
}

// bound reports whether cookies hold the binding cookie of nonce.
func bound(cookies []string, nonce string) bool {
	want := cookiePrefix + nonce + "=1"
	for _, c := range cookies {
		for part := range strings.SplitSeq(c, ";") {
			if strings.TrimSpace(part) == want {
				return true
			}
		}
	}
	return false
}
