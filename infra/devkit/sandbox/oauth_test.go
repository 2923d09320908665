package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// webAnswer holds any web OAuth answer.
type webAnswer struct {
	ErrCode        int      `json:"errcode"`
	ErrMsg         string   `json:"errmsg"`
	AccessToken    string   `json:"access_token"`
	ExpiresIn      int      `json:"expires_in"`
	RefreshToken   string   `json:"refresh_token"`
	OpenID         string   `json:"openid"`
	Scope          string   `json:"scope"`
	UnionID        string   `json:"unionid"`
	IsSnapshotUser int      `json:"is_snapshotuser"`
	Nickname       string   `json:"nickname"`
	HeadImgURL     string   `json:"headimgurl"`
	Privilege      []string `json:"privilege"`
}

func (h *harness) sns(path string, q url.Values) webAnswer {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+path+"?"+q.Encode(), nil)
	status, raw := h.do(req)
	var a webAnswer
	if status != http.StatusOK || json.Unmarshal(raw, &a) != nil {
		h.t.Errorf("GET %s: HTTP %d %s, want 200 JSON", path, status, raw)
	}
	return a
}

func (h *harness) exchangeOAuth(code string) webAnswer {
	h.t.Helper()
	oa := h.sb.cfg.OfficialAccount
	return h.sns("/sns/oauth2/access_token", url.Values{"appid": {oa.AppID}, "secret": {oa.Secret}, "code": {code}, "grant_type": {"authorization_code"}})
}

func (h *harness) userInfo(token, openid string) webAnswer {
	h.t.Helper()
	return h.sns("/sns/userinfo", url.Values{"access_token": {token}, "openid": {openid}, "lang": {"zh_CN"}})
}

func (h *harness) refresh(rt string) webAnswer {
	h.t.Helper()
	return h.sns("/sns/oauth2/refresh_token", url.Values{"appid": {h.sb.cfg.OfficialAccount.AppID}, "grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func (h *harness) consent(p Person, scope string) string {
	h.t.Helper()
	code, err := h.sb.OAuthCode(OAuthConsent{Person: p.ID, Scope: scope})
	if err != nil {
		h.t.Fatal(err)
	}
	return code
}

// authorize opens the authorize page without following redirects.
func (h *harness) authorize(q url.Values) (*http.Response, string) {
	h.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(h.srv.URL + "/connect/oauth2/authorize?" + q.Encode())
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func authorizeQuery(scope, redirect, state string, extra ...string) url.Values {
	q := url.Values{"appid": {DevOfficialAccount.AppID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {scope}, "state": {state}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return q
}

func TestAuthorizePage(t *testing.T) {
	h := start(t, DefaultConfig())
	p := h.sb.CreatePerson(PersonSpec{Nickname: `<b>Mia</b>`})
	const back = "https://api.example/oauth/callback?return_to=https%3A%2F%2Fh5.example%2F"

	t.Run("person_consents_at_once", func(t *testing.T) {
		resp, _ := h.authorize(authorizeQuery(scopeUserInfo, back, "St4te", "person", p.ID))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil {
			t.Fatalf("status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		q := loc.Query()
		if loc.Host != "api.example" || loc.Path != "/oauth/callback" || q.Get("return_to") != "https://h5.example/" || q.Get("state") != "St4te" {
			t.Fatalf("redirected to %s: redirect_uri's own query must be kept, state appended", loc)
		}
		a := h.exchangeOAuth(q.Get("code"))
		wantOK(t, answer{ErrCode: a.ErrCode, ErrMsg: a.ErrMsg})
		if a.OpenID != p.OAOpenID || a.UnionID != p.UnionID || a.Scope != scopeUserInfo {
			t.Errorf("exchange = %+v", a)
		}
	})

	t.Run("refusal_comes_back_without_a_code", func(t *testing.T) {
		resp, _ := h.authorize(authorizeQuery(scopeUserInfo, back, "St4te", "person", p.ID, "refuse", "1"))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Has("code") || loc.Query().Get("state") != "St4te" {
			t.Fatalf("refusal = %d %s", resp.StatusCode, loc)
		}
	})

	t.Run("without_a_person_a_page_to_pick_one", func(t *testing.T) {
		resp, body := h.authorize(authorizeQuery(scopeUserInfo, back, "St4te"))
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("page = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{`name="person"`, `value="` + p.ID + `"`, `name="refuse"`, `name="state" value="St4te"`, "&lt;b&gt;Mia&lt;/b&gt;"} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %s", want)
			}
		}
		if strings.Contains(body, "<b>Mia") {
			t.Error("nickname not escaped")
		}
	})

	for name, q := range map[string]url.Values{
		"other_appid":      func() url.Values { q := authorizeQuery(scopeBase, back, "s"); q.Set("appid", "wx0000"); return q }(),
		"unknown_scope":    authorizeQuery("snsapi_login", back, "s", "person", p.ID),
		"relative_uri":     authorizeQuery(scopeBase, "/cb", "s", "person", p.ID),
		"bad_state":        authorizeQuery(scopeBase, back, "not-alnum", "person", p.ID),
		"long_state":       authorizeQuery(scopeBase, back, strings.Repeat("a", 129), "person", p.ID),
		"no_response_type": func() url.Values { q := authorizeQuery(scopeBase, back, "s"); q.Del("response_type"); return q }(),
	} {
		t.Run("error_page_for_"+name, func(t *testing.T) {
			resp, body := h.authorize(q)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "errcode 100") {
				t.Fatalf("got %d Location %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}

	t.Run("unknown_person", func(t *testing.T) {
		resp, _ := h.authorize(authorizeQuery(scopeBase, back, "s", "person", "p999"))
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Location") != "" {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
}

func TestOAuthExchange(t *testing.T) {
	h := start(t, DefaultConfig())
	p := h.sb.CreatePerson(PersonSpec{})

	t.Run("snsapi_base_yields_the_openid_only", func(t *testing.T) {
		a := h.exchangeOAuth(h.consent(p, scopeBase))
		wantOK(t, answer{ErrCode: a.ErrCode})
		if a.OpenID != p.OAOpenID || a.UnionID != "" || a.Scope != scopeBase || a.ExpiresIn != 7200 || a.AccessToken == "" || a.RefreshToken == "" {
			t.Fatalf("answer = %+v", a)
		}
		wantErr(t, answer{ErrCode: h.userInfo(a.AccessToken, a.OpenID).ErrCode, ErrMsg: h.userInfo(a.AccessToken, a.OpenID).ErrMsg}, 48001)
	})

	t.Run("snsapi_userinfo_yields_unionid_and_profile", func(t *testing.T) {
		a := h.exchangeOAuth(h.consent(p, scopeUserInfo))
		if a.UnionID != p.UnionID || a.IsSnapshotUser != 0 {
			t.Fatalf("answer = %+v", a)
		}
		info := h.userInfo(a.AccessToken, a.OpenID)
		if info.ErrCode != 0 || info.OpenID != p.OAOpenID || info.Nickname != p.Nickname || info.UnionID != p.UnionID || info.HeadImgURL == "" || info.Privilege == nil {
			t.Fatalf("userinfo = %+v", info)
		}
	})

	t.Run("codes_work_once", func(t *testing.T) {
		code := h.consent(p, scopeBase)
		wantOK(t, answer{ErrCode: h.exchangeOAuth(code).ErrCode})
		a := h.exchangeOAuth(code)
		wantErr(t, answer{ErrCode: a.ErrCode, ErrMsg: a.ErrMsg}, 40163)
	})

	t.Run("codes_expire_after_5_minutes", func(t *testing.T) {
		code := h.consent(p, scopeBase)
		h.sb.Clock().Advance(5*time.Minute + time.Second)
		a := h.exchangeOAuth(code)
		wantErr(t, answer{ErrCode: a.ErrCode, ErrMsg: a.ErrMsg}, 40029)
	})

	t.Run("mini_program_codes_are_not_oauth_codes", func(t *testing.T) {
		code, _ := h.sb.WXLogin(p.ID)
		wantErr(t, answer{ErrCode: h.exchangeOAuth(code).ErrCode, ErrMsg: h.exchangeOAuth(code).ErrMsg}, 40029)
	})

	t.Run("credentials", func(t *testing.T) {
		code := h.consent(p, scopeBase)
		mp := h.sb.cfg.MiniProgram
		oa := h.sb.cfg.OfficialAccount
		for want, q := range map[int]url.Values{
			40013: {"appid": {mp.AppID}, "secret": {mp.Secret}, "code": {code}, "grant_type": {"authorization_code"}},
			40125: {"appid": {oa.AppID}, "secret": {"wrong"}, "code": {code}, "grant_type": {"authorization_code"}},
			40002: {"appid": {oa.AppID}, "secret": {oa.Secret}, "code": {code}, "grant_type": {"client_credential"}},
			41008: {"appid": {oa.AppID}, "secret": {oa.Secret}, "grant_type": {"authorization_code"}},
		} {
			a := h.sns("/sns/oauth2/access_token", q)
			wantErr(t, answer{ErrCode: a.ErrCode, ErrMsg: a.ErrMsg}, want)
		}
		// None of those spent the code.
		wantOK(t, answer{ErrCode: h.exchangeOAuth(code).ErrCode})
	})

	t.Run("snapshot_visitor_is_virtual", func(t *testing.T) {
		code, err := h.sb.OAuthCode(OAuthConsent{Person: p.ID, Scope: scopeUserInfo, Snapshot: true})
		if err != nil {
			t.Fatal(err)
		}
		a := h.exchangeOAuth(code)
		if a.IsSnapshotUser != 1 || a.OpenID == "" || a.OpenID == p.OAOpenID || a.UnionID == p.UnionID {
			t.Fatalf("snapshot answer = %+v", a)
		}
		info := h.userInfo(a.AccessToken, a.OpenID)
		wantErr(t, answer{ErrCode: info.ErrCode, ErrMsg: info.ErrMsg}, 48001)
	})
}

func TestOAuthTokens(t *testing.T) {
	h := start(t, DefaultConfig())
	p := h.sb.CreatePerson(PersonSpec{})
	other := h.sb.CreatePerson(PersonSpec{})
	a := h.exchangeOAuth(h.consent(p, scopeUserInfo))

	check := func(got webAnswer, code int) {
		t.Helper()
		wantErr(t, answer{ErrCode: got.ErrCode, ErrMsg: got.ErrMsg}, code)
	}
	check(h.userInfo(a.AccessToken, other.OAOpenID), 40003)
	check(h.userInfo(a.AccessToken, ""), 41009)
	check(h.userInfo("", a.OpenID), 41001)
	check(h.userInfo("not-a-token", a.OpenID), 40001)

	h.sb.Clock().Advance(2*time.Hour + time.Second)
	check(h.userInfo(a.AccessToken, a.OpenID), 42001)

	r := h.refresh(a.RefreshToken)
	check(r, 0)
	if r.AccessToken == "" || r.AccessToken == a.AccessToken || r.RefreshToken != a.RefreshToken || r.OpenID != p.OAOpenID || r.UnionID != "" {
		t.Fatalf("refresh = %+v", r)
	}
	check(h.userInfo(r.AccessToken, p.OAOpenID), 0)
	check(h.refresh("not-a-token"), 40030)
	check(h.sns("/sns/oauth2/refresh_token", url.Values{"appid": {DevOfficialAccount.AppID}, "grant_type": {"refresh_token"}}), 41003)

	// Refreshing does not extend the refresh token: 30 days from consent.
	h.sb.Clock().Advance(30*24*time.Hour - 2*time.Hour)
	check(h.refresh(a.RefreshToken), 42002)
}

func TestOAuthControlOfCodes(t *testing.T) {
	h := start(t, DefaultConfig())
	if _, err := h.sb.OAuthCode(OAuthConsent{Person: "p42", Scope: scopeBase}); err != ErrNoPerson {
		t.Errorf("unknown person: %v", err)
	}
	if _, err := h.sb.OAuthCode(OAuthConsent{Scope: "snsapi_other"}); err != ErrScope {
		t.Errorf("unknown scope: %v", err)
	}
	if _, err := h.sb.OAuthCode(OAuthConsent{Person: "p1", Scope: "snsapi_login"}); err != ErrNoApp {
		t.Errorf("QR login without a website app: %v", err)
	}
	code, err := h.sb.OAuthCode(OAuthConsent{Scope: scopeBase, Snapshot: true})
	if err != nil || !regexp.MustCompile(`^[0-9A-Za-z]{32}$`).MatchString(code) {
		t.Fatalf("anonymous snapshot code %q, %v", code, err)
	}
}
