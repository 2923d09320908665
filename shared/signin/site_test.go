package signin

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"wxbridge/shared/oauthstate"
)

func TestSiteBase(t *testing.T) {
	const execute = "https://abc123.execute-api.us-east-1.amazonaws.com"
	cases := []struct {
		name, public, arrived string
		base                  string
		elsewhere             bool
	}{
		{"own_address", "", execute, execute, false},
		{"own_address_of_a_named_stage", "", execute + "/prod", execute + "/prod", false},
		{"custom_domain_reached_there", "https://api.example.com", "https://api.example.com", "https://api.example.com", false},
		{"base_path_reached_there", "https://api.example.com/wx/", "https://API.example.com:443", "https://api.example.com/wx", false},
		{"base_path_reached_at_execute_api", "https://api.example.com/wx", execute, "https://api.example.com/wx", true},
		{"devstack_http", "http://127.0.0.1:8080", "https://127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"devstack_by_another_name", "http://127.0.0.1:8080", "https://localhost:8080", "http://127.0.0.1:8080", true},
		{"address_unknown", "https://api.example.com/wx", "", "https://api.example.com/wx", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSite(c.public)
			if err != nil {
				t.Fatal(err)
			}
			base, elsewhere, err := s.Base(c.arrived)
			if err != nil || base != c.base || elsewhere != c.elsewhere {
				t.Errorf("Base(%q) = %q, %v, %v; want %q, %v", c.arrived, base, elsewhere, err, c.base, c.elsewhere)
			}
		})
	}
	if _, _, err := (Site{}).Base(""); err == nil {
		t.Error("no public URL and no address: want an error")
	}
	for _, bad := range []string{"ftp://api.example.com", "https://api.example.com/?x=1", "https://api.example.com/#x", "api.example.com/wx", "https://u:p@api.example.com"} {
		if _, err := NewSite(bad); err == nil {
			t.Errorf("NewSite(%q) accepted", bad)
		}
	}
}

// TestBinding: the cookie is scoped to the callback's own path (a base
// path included) and sent back only there, and only over https when the
// callback is https.
func TestBinding(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	st := oauthstate.State{Nonce: "00112233445566778899aabb", Expires: now.Add(oauthstate.TTL)}
	for _, c := range []struct{ callback, path string }{
		{"https://abc123.execute-api.us-east-1.amazonaws.com/oauth/callback", "/oauth/callback"},
		{"https://api.example.com/wx/oauth/callback", "/wx/oauth/callback"},
		{"http://127.0.0.1:8080/oauth/callback", "/oauth/callback"},
	} {
		u, _ := url.Parse(c.callback)
		ck := binding(st, u, now)
		back, err := http.ParseSetCookie(ck.String())
		if err != nil {
			t.Fatal(err)
		}
		if back.Name != "wxb_oauth_"+st.Nonce || back.Path != c.path || back.Domain != "" || !back.HttpOnly ||
			back.SameSite != http.SameSiteLaxMode || back.Secure != (u.Scheme == "https") || back.MaxAge != int(oauthstate.TTL.Seconds()) {
			t.Errorf("%s: cookie %s", c.callback, ck)
		}
	}
	for cookies, want := range map[string]bool{
		"wxb_oauth_00112233445566778899aabb=1":                       true,
		"a=1; wxb_oauth_00112233445566778899aabb=1; b=2":             true,
		"wxb_oauth_00112233445566778899aabb=0":                       false,
		"wxb_oauth_ffffffffffffffffffffffff=1":                       false,
		"xwxb_oauth_00112233445566778899aabb=1":                      false,
		"wxb_oauth_00112233445566778899aabb=1x; wxb_oauth_0011223=1": false,
	} {
		if got := bound([]string{cookies}, st.Nonce); got != want {
			t.Errorf("bound(%q) = %v", cookies, got)
		}
	}
}
