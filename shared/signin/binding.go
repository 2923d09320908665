package signin

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"wxbridge/shared/oauthstate"
)

// The binding cookie's name: the state's nonce follows the prefix. Over
// https it carries the __Host- prefix too (hostPrefix).
const (
	cookiePrefix = "wxb_oauth_"
	hostPrefix   = "__Host-"
)

// bindingKeys make and check binding cookie values: a MAC of the nonce
// under a key derived from the signing key, and during a rotation also the
// previous one, so that a rotation does not break visitors who are on the
// consent page (as oauthstate.Keys does for the state itself).
type bindingKeys struct {
	signing []byte
	verify  [][]byte
}

func newBindingKeys(current, previous string) bindingKeys {
	k := bindingKeys{signing: deriveBindingKey(current)}
	k.verify = append(k.verify, k.signing)
	if previous != "" {
		k.verify = append(k.verify, deriveBindingKey(previous))
	}
	return k
}

// deriveBindingKey separates the binding's key from the states' and the
// sessions' keys, which come from the same configured secret.
func deriveBindingKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("wxbridge oauth binding v1"))
	return m.Sum(nil)
}

// bindingValue is the cookie value that binds nonce under key: 16 bytes of
// HMAC-SHA256, base64url.
func bindingValue(key []byte, nonce string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("wxbridge-oauth-binding-v1\n"))
	m.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// bindingName is the cookie name for nonce on a callback served over
// https (secure) or not.
func bindingName(nonce string, secure bool) string {
	if secure {
		return hostPrefix + cookiePrefix + nonce
	}
	return cookiePrefix + nonce
}

// cookie is the binding cookie of st for a callback at callback. It ties
// the sign-in to the browser that started it: the callback accepts a state
// only from a browser holding the cookie named after its nonce. Without
// it, someone could start a sign-in, consent in their own WeChat, and send
// the callback link to a victim, whose page would then hold the attacker's
// session (login CSRF).
//
// The state carries its nonce in the clear, so the value is a MAC of the
// nonce that only wxbridge can make: whoever merely holds a state (a link
// in a log, a Referer) cannot make its cookie. That alone does not stop
// someone who controls another host of the domain (a user-content
// subdomain, a compromised blog): they start a sign-in themselves, their
// own browser receives the cookie, value and all, and their host sets that
// same cookie on a victim's browser with Domain=<parent domain> (cookie
// tossing). Only the browser can refuse that: it accepts a cookie named
// __Host-… only from the host itself, over https, without a Domain
// attribute and with Path=/, so a __Host- cookie that reaches the callback
// was set by the callback's host. Hence Path=/ rather than the callback's
// own path, which the prefix does not allow: the cookie still goes only to
// this host, and for at most the state's 10 minutes. (The callback does
// not clear it: a replayed link must still be told used_state, not
// foreign_state.) Over plain http (a local devstack) it cannot have the prefix, which
// browsers accept from secure origins only.
//
// A browser sends the cookie only to the host that set it, so it is set
// while the browser is on the callback's host (see Site). Named per nonce,
// so that two sign-ins in two tabs do not overwrite each other;
// SameSite=Lax, because WeChat comes back with a top-level GET.
func (k bindingKeys) cookie(st oauthstate.State, callback *url.URL, now time.Time) *http.Cookie {
	secure := callback.Scheme == "https"
	return &http.Cookie{
		Name: bindingName(st.Nonce, secure), Value: bindingValue(k.signing, st.Nonce),
		Path:     "/",
		MaxAge:   max(1, int(st.Expires.Sub(now).Seconds())),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure,
	}
}

// bound reports whether cookies ("name=value" each, or "a=1; b=2") hold
// the binding cookie of nonce with a value these keys made. Only the exact
// name counts: a browser may send a tossed cookie of any other spelling
// (no prefix, "__host-" on a browser that compares case-sensitively).
func (k bindingKeys) bound(cookies []string, nonce string, secure bool) bool {
	name := bindingName(nonce, secure)
	for _, c := range cookies {
		for part := range strings.SplitSeq(c, ";") {
			n, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || n != name {
				continue
			}
			// A planted cookie of the same name may come first: check each.
			for _, key := range k.verify {
				if hmac.Equal([]byte(v), []byte(bindingValue(key, nonce))) {
					return true
				}
			}
		}
	}
	return false
}
