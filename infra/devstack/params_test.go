package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/observe"
)

// TestParamsFromEnv: make dev passes PARAMS in WXB_DEV_PARAMS, read as
// sam deploy --parameter-overrides reads it; what cannot be read stops the
// devstack with a message that names the variable and the place.
func TestParamsFromEnv(t *testing.T) {
	t.Setenv("WXB_DEV_PARAMS", `PublicUrl=http://127.0.0.1:8080/wx H5Origins="https://h5.example.com,https://m.example.com" LogRetentionDays='7'`)
	cfg, err := configFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"PublicUrl": "http://127.0.0.1:8080/wx", "H5Origins": "https://h5.example.com,https://m.example.com", "LogRetentionDays": "7"}
	if len(cfg.Params) != len(want) {
		t.Errorf("Params = %v, want %v", cfg.Params, want)
	}
	for k, v := range want {
		if cfg.Params[k] != v {
			t.Errorf("Params[%s] = %q, want %q", k, cfg.Params[k], v)
		}
	}
	for _, bad := range []string{
		`PublicUrl`,                     // no value
		`H5Origins="https://h5.example`, // unclosed quote
		`PublicUrl=a PublicUrl=b`,       // twice
	} {
		t.Setenv("WXB_DEV_PARAMS", bad)
		if _, err := configFromEnv(); err == nil || !strings.Contains(err.Error(), "WXB_DEV_PARAMS (make dev PARAMS=…)") {
			t.Errorf("WXB_DEV_PARAMS=%s: configFromEnv = %v, want an error naming the variable", bad, err)
		}
	}
}

// TestStartRefusesBadParams: values the template would refuse stop Start
// before it starts anything, with CloudFormation's reason.
func TestStartRefusesBadParams(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   []string
	}{
		{map[string]string{"PublicURL": "http://127.0.0.1:8080/wx"}, []string{"PublicURL is not a parameter", "PublicUrl", "H5Origins"}},
		{map[string]string{"PublicUrl": "http://127.0.0.1:8080/wx/"}, []string{"PublicUrl", "without a trailing slash"}},
		{map[string]string{"LogRetentionDays": "10"}, []string{"LogRetentionDays", "AllowedValues"}},
		{map[string]string{"PublicUrl": "http://127.0.0.1:8080/w{x}"}, []string{"cannot be an API mapping"}},
	} {
		began := time.Now()
		s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", Params: tc.params})
		if err == nil {
			s.Close()
			t.Errorf("Start(%v) = nil error", tc.params)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Start(%v) = %q, want it to say %q", tc.params, err, w)
			}
		}
		if d := time.Since(began); d > time.Second {
			t.Errorf("Start(%v) took %s to refuse: it started something first", tc.params, d)
		}
	}
}

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		"":                              defaultAddr,
		"http://127.0.0.1:9090/wx":      "127.0.0.1:9090",
		"http://localhost:9090":         "localhost:9090",
		"http://[::1]:9090/wx":          "[::1]:9090",
		"http://127.0.0.1/wx":           defaultAddr, // no port: 80 is not ours to take
		"https://127.0.0.1:9443/wx":     defaultAddr, // the devstack speaks http
		"https://api.example.com/wx":    defaultAddr, // a tunnel's address
		"http://192.168.1.20:8080/wx":   defaultAddr,
		"http://wx.example.com:8080/wx": defaultAddr,
	} {
		if got := listenAddr(in); got != want {
			t.Errorf("listenAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestBasePath starts a devstack as make dev PARAMS='PublicUrl=…/wx'
// does: the API answers under /wx only (login, the sandbox's pushes and
// the H5 sign-in go there), the root keeps the console and nothing of the
// API, as a custom domain with an API mapping under /wx.
func TestBasePath(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for PublicUrl to name
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + ln.Addr().String()
	ln.Close()
	s := testStack(t, Config{Params: map[string]string{"PublicUrl": root + "/wx"}, Logs: &observe.Capture{}})
	if s.URL != root || s.APIURL != root+"/wx" {
		t.Fatalf("URL %s, APIURL %s; want %s and %s/wx", s.URL, s.APIURL, root, root)
	}
	_, cfg := call(t, "GET", root+"/_dev/config", nil, nil)
	if cfg["api_url"] != root+"/wx" || cfg["h5_origin"] != root || cfg["push_url"] != root+"/wx/wechat/push" {
		t.Errorf("/_dev/config: api_url %v, h5_origin %v, push_url %v", cfg["api_url"], cfg["h5_origin"], cfg["push_url"])
	}

	// Nothing of the API at the root.
	for _, r := range []string{"POST /mp/login", "GET /me", "GET /oauth/authorize", "POST /wechat/push", "GET /wechat/push", "GET /MP_verify_7JNbT2dLQ3hNtY6s.txt"} {
		method, path, _ := strings.Cut(r, " ")
		if status := statusOf(t, method, root+path); status != http.StatusNotFound {
			t.Errorf("%s at the root = %d, want 404", r, status)
		}
	}
	// The file route answers under the base path: the function's own 404
	// (text), not API Gateway's (JSON).
	resp, err := http.Get(s.APIURL + "/MP_verify_7JNbT2dLQ3hNtY6s.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("GET %s/MP_verify_….txt = %d %s, want oauth-callback's 404", s.APIURL, resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// Mini-program login and a follow pushed by the sandbox, under /wx.
	mia := s.sb.CreatePerson(sandbox.PersonSpec{Nickname: "Mia"})
	code, _ := s.sb.WXLogin(mia.ID)
	status, login := call(t, "POST", s.APIURL+"/mp/login", map[string]any{"code": code}, nil)
	if status != 200 {
		t.Fatalf("POST /wx/mp/login = %d %v", status, login)
	}
	if d, err := s.sb.Follow(context.Background(), mia.ID, ""); err != nil || !d.Delivered {
		t.Fatalf("follow: %+v %v (the sandbox pushes to %s/wechat/push)", d, err, s.APIURL)
	}
	bearer := map[string]string{"Authorization": "Bearer " + login["session"].(string)}
	eventually(t, "the follower linked", func() bool {
		_, me := call(t, "GET", s.APIURL+"/me", nil, bearer)
		return me["linked"] == true && me["follows_oa"] == true
	})

	// The H5 sign-in: every hop under /wx, back to the page at the root.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	hop := func(u string) *url.URL {
		t.Helper()
		resp, err := browser.Get(u)
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("GET %s: %v %v", u, resp, err)
		}
		resp.Body.Close()
		next, _ := url.Parse(resp.Header.Get("Location"))
		return next
	}
	authorize := hop(s.APIURL + "/oauth/authorize?" + url.Values{"scope": {"snsapi_userinfo"}, "return_to": {root + "/_dev/h5"}}.Encode())
	if redirect := authorize.Query().Get("redirect_uri"); !strings.HasPrefix(redirect, s.APIURL+"/oauth/callback?") {
		t.Errorf("redirect_uri = %q, want %s/oauth/callback?…", redirect, s.APIURL)
	}
	q := authorize.Query()
	q.Set("person", mia.ID) // the sandbox's consent, given at once
	authorize.RawQuery = q.Encode()
	callback := hop(authorize.String())
	if callback.Path != "/wx/oauth/callback" {
		t.Errorf("callback at %s, want /wx/oauth/callback", callback.Path)
	}
	back := hop(callback.String())
	frag, _ := url.ParseQuery(back.Fragment)
	if back.Path != "/_dev/h5" || frag.Get("session") == "" {
		t.Fatalf("back at %s, want /_dev/h5#session=…", back)
	}
	if _, me := call(t, "GET", s.APIURL+"/me", nil, map[string]string{"Authorization": "Bearer " + frag.Get("session")}); me["uid"] != login["person"].(map[string]any)["uid"] {
		t.Errorf("H5 sign-in: /wx/me = %v, want the mini-program person", me)
	}
}

func statusOf(t *testing.T, method, u string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
