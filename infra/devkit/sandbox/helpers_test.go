package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"testing"
	"time"
)

// answer holds any platform answer the sandbox gives.
type answer struct {
	ErrCode     int      `json:"errcode"`
	ErrMsg      string   `json:"errmsg"`
	OpenID      string   `json:"openid"`
	SessionKey  string   `json:"session_key"`
	UnionID     string   `json:"unionid"`
	AccessToken string   `json:"access_token"`
	ExpiresIn   int      `json:"expires_in"`
	IPList      []string `json:"ip_list"`
}

// harness is a sandbox behind a real HTTP server. Its methods may be called
// from many goroutines: they report with t.Errorf, never t.Fatalf.
type harness struct {
	t   *testing.T
	sb  *Sandbox
	srv *httptest.Server
}

// morning is a fixed instant well inside a Beijing day and at the start of a
// minute, so per-minute and per-day counters do not roll over mid-test.
var morning = time.Date(2026, 3, 2, 10, 0, 0, 0, beijing)

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	sb := New(cfg)
	sb.Clock().Set(morning)
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return &harness{t: t, sb: sb, srv: srv}
}

func (h *harness) do(req *http.Request) (int, []byte) {
	h.t.Helper()
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// platform makes a platform call and decodes the answer, which must be
// HTTP 200 JSON like every platform answer.
func (h *harness) platform(method, path string, q url.Values, body any) answer {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path+"?"+q.Encode(), rd)
	status, raw := h.do(req)
	var a answer
	if status != http.StatusOK {
		h.t.Errorf("%s %s: HTTP %d, want 200 (%s)", method, path, status, raw)
	} else if err := json.Unmarshal(raw, &a); err != nil {
		h.t.Errorf("%s %s: answer is not JSON: %s", method, path, raw)
	}
	return a
}

// exchange calls jscode2session with the mini program's credentials.
func (h *harness) exchange(code string) answer {
	h.t.Helper()
	mp := h.sb.cfg.MiniProgram
	return h.platform("GET", "/sns/jscode2session", url.Values{
		"appid": {mp.AppID}, "secret": {mp.Secret}, "js_code": {code}, "grant_type": {"authorization_code"},
	}, nil)
}

// login plays wx.login then jscode2session for person id.
func (h *harness) login(id string) answer {
	h.t.Helper()
	code, err := h.sb.WXLogin(id)
	if err != nil {
		h.t.Errorf("WXLogin(%s): %v", id, err)
	}
	return h.exchange(code)
}

func (h *harness) token(app App) answer {
	h.t.Helper()
	return h.platform("GET", "/cgi-bin/token", url.Values{
		"grant_type": {"client_credential"}, "appid": {app.AppID}, "secret": {app.Secret},
	}, nil)
}

func (h *harness) stable(app App, force bool) answer {
	h.t.Helper()
	return h.platform("POST", "/cgi-bin/stable_token", nil, map[string]any{
		"grant_type": "client_credential", "appid": app.AppID, "secret": app.Secret, "force_refresh": force,
	})
}

func (h *harness) callbackIP(token string) answer {
	h.t.Helper()
	return h.platform("GET", "/cgi-bin/getcallbackip", url.Values{"access_token": {token}}, nil)
}

// control calls the control API and decodes the answer into out (if not
// nil), checking the status.
func (h *harness) control(method, path string, body any, want int, out any) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, rd)
	status, raw := h.do(req)
	if status != want {
		h.t.Errorf("%s %s: HTTP %d, want %d (%s)", method, path, status, want, raw)
		return
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Errorf("%s %s: %v in %s", method, path, err, raw)
		}
	}
}

var errmsgShape = regexp.MustCompile(`^[^,].*[^,]( |, )rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$`)

// wantErr checks that a is the platform's error answer for code.
func wantErr(t *testing.T, a answer, code int) {
	t.Helper()
	if a.ErrCode != code {
		t.Errorf("errcode = %d (%q), want %d", a.ErrCode, a.ErrMsg, code)
		return
	}
	if code != 0 && !errmsgShape.MatchString(a.ErrMsg) {
		t.Errorf("errmsg %q does not end with a platform rid", a.ErrMsg)
	}
}

// wantOK checks that a is a success answer.
func wantOK(t *testing.T, a answer) {
	t.Helper()
	if a.ErrCode != 0 {
		t.Errorf("errcode = %d (%q), want success", a.ErrCode, a.ErrMsg)
	}
}
