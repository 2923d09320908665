package signin

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"wxbridge/shared/oauthstate"
)

// TestBindingCookie: over https the cookie is a __Host- cookie (Secure,
// Path=/, no Domain), the only kind a browser refuses to take from another
// host of the domain; over http it cannot be. Its value is a MAC of the
// nonce, never a constant.
func TestBindingCookie(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	st := oauthstate.State{Nonce: "00112233445566778899aabb", Expires: now.Add(oauthstate.TTL)}
	k := newBindingKeys(signingKey, "")
	for _, c := range []struct {
		callback, name string
	}{
		{"https://abc123.execute-api.us-east-1.amazonaws.com/oauth/callback", "__Host-wxb_oauth_" + st.Nonce},
		{"https://api.example.com/wx/oauth/callback", "__Host-wxb_oauth_" + st.Nonce},
		{"http://127.0.0.1:8080/oauth/callback", "wxb_oauth_" + st.Nonce},
	} {
		u, _ := url.Parse(c.callback)
		ck := k.cookie(st, u, now)
		back, err := http.ParseSetCookie(ck.String())
		if err != nil {
			t.Fatal(err)
		}
		secure := u.Scheme == "https"
		if back.Name != c.name || back.Path != "/" || back.Domain != "" || !back.HttpOnly ||
			back.SameSite != http.SameSiteLaxMode || back.Secure != secure || back.MaxAge != int(oauthstate.TTL.Seconds()) {
			t.Errorf("%s: cookie %s", c.callback, ck)
		}
		if back.Value == "1" || !k.bound([]string{back.Name + "=" + back.Value}, st.Nonce, secure) {
			t.Errorf("%s: value %q does not bind the nonce", c.callback, back.Value)
		}
	}
}

// TestBindingBound: only the exact name with a value wxbridge made for
// that nonce binds. Tossed variants (no prefix, another case, a constant,
// another nonce's value, another key's) do not; a planted one sent before
// the real one does not hide it.
func TestBindingBound(t *testing.T) {
	const nonce = "00112233445566778899aabb"
	k := newBindingKeys(signingKey, "")
	good := bindingValue(k.signing, nonce)
	other := bindingValue(k.signing, "ffffffffffffffffffffffff")
	foreign := bindingValue(deriveBindingKey("someone-elses-signing-key-0123456789"), nonce)
	for _, c := range []struct {
		cookies string
		secure  bool
		want    bool
	}{
		{"__Host-wxb_oauth_" + nonce + "=" + good, true, true},
		{"a=1; __Host-wxb_oauth_" + nonce + "=" + good + "; b=2", true, true},
		{"__Host-wxb_oauth_" + nonce + "=1; __Host-wxb_oauth_" + nonce + "=" + good, true, true},
		{"__Host-wxb_oauth_" + nonce + "=1", true, false},
		{"__Host-wxb_oauth_" + nonce + "=", true, false},
		{"__Host-wxb_oauth_" + nonce + "=" + other, true, false},
		{"__Host-wxb_oauth_" + nonce + "=" + foreign, true, false},
		{"__Host-wxb_oauth_" + nonce + "=" + good + "x", true, false},
		{"wxb_oauth_" + nonce + "=" + good, true, false},         // tossed without the prefix
		{"__host-wxb_oauth_" + nonce + "=" + good, true, false},  // a browser checking the prefix case-sensitively
		{"x__Host-wxb_oauth_" + nonce + "=" + good, true, false}, // another name
		{"wxb_oauth_" + nonce + "=" + good, false, true},
		{"wxb_oauth_" + nonce + "=1", false, false},
	} {
		if got := k.bound([]string{c.cookies}, nonce, c.secure); got != c.want {
			t.Errorf("bound(%q, secure %v) = %v, want %v", c.cookies, c.secure, got, c.want)
		}
	}
}

// TestBindingRotation: a cookie set before the signing key was rotated
// still binds while the previous key is configured (a visitor on the
// consent page during the rotation), and not after.
func TestBindingRotation(t *testing.T) {
	const nonce = "00112233445566778899aabb"
	const next = "rotated-signing-key-for-tests-0123456789abcdef"
	before := bindingValue(newBindingKeys(signingKey, "").signing, nonce)
	cookie := []string{"__Host-wxb_oauth_" + nonce + "=" + before}
	if !newBindingKeys(next, signingKey).bound(cookie, nonce, true) {
		t.Error("a cookie of the previous key is refused during the rotation")
	}
	if newBindingKeys(next, "").bound(cookie, nonce, true) {
		t.Error("a cookie of a retired key still binds")
	}
	if bindingValue(newBindingKeys(next, signingKey).signing, nonce) == before {
		t.Error("new cookies are still made with the previous key")
	}
}
