package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// multi starts a sandbox with every dev app.
func multi(t *testing.T) *harness {
	cfg := DefaultConfig()
	cfg.Apps = DefaultApps()
	return start(t, cfg)
}

// exchangeAt calls jscode2session with app's credentials.
func (h *harness) exchangeAt(app App, code string) answer {
	h.t.Helper()
	return h.platform("GET", "/sns/jscode2session", url.Values{
		"appid": {app.AppID}, "secret": {app.Secret}, "js_code": {code}, "grant_type": {"authorization_code"},
	}, nil)
}

// snsExchange exchanges a web, QR or SDK code with app's credentials.
func (h *harness) snsExchange(app App, code string) webAnswer {
	h.t.Helper()
	return h.sns("/sns/oauth2/access_token", url.Values{"appid": {app.AppID}, "secret": {app.Secret}, "code": {code}, "grant_type": {"authorization_code"}})
}

func wantWebErr(t *testing.T, a webAnswer, code int) {
	t.Helper()
	wantErr(t, answer{ErrCode: a.ErrCode, ErrMsg: a.ErrMsg}, code)
}

func TestAppsLogin(t *testing.T) {
	h := multi(t)
	p := h.sb.CreatePerson(PersonSpec{})

	t.Run("every_app_has_its_own_openid", func(t *testing.T) {
		if len(p.OpenIDs) != 9 || p.OpenIDs[DevMiniProgram.AppID] != p.MPOpenID || p.OpenIDs[DevOfficialAccount.AppID] != p.OAOpenID {
			t.Fatalf("openids %v", p.OpenIDs)
		}
		seen := map[string]bool{}
		for appid, o := range p.OpenIDs {
			if seen[o] {
				t.Errorf("openid %s of %s is another app's too", o, appid)
			}
			seen[o] = true
			if got, ok := h.sb.OpenID(p.ID, appid); !ok || got != o {
				t.Errorf("OpenID(%s) = %q, %v", appid, got, ok)
			}
		}
	})

	t.Run("a_code_works_only_in_its_mini_program", func(t *testing.T) {
		code, err := h.sb.WXLoginApp(p.ID, DevMiniProgram2.AppID)
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, h.exchangeAt(DevMiniProgram, code), 40029)
		wantErr(t, h.exchangeAt(DevUnboundMiniProgram, code), 40029)
		a := h.exchangeAt(DevMiniProgram2, code)
		wantOK(t, a)
		if a.OpenID != p.OpenIDs[DevMiniProgram2.AppID] || a.UnionID != p.UnionID {
			t.Errorf("MP2 session %+v", a)
		}
		def, _ := h.sb.WXLogin(p.ID)
		wantErr(t, h.exchangeAt(DevMiniProgram2, def), 40029)
		wantOK(t, h.exchangeAt(DevMiniProgram, def))
	})

	t.Run("an_unbound_app_never_sees_the_unionid", func(t *testing.T) {
		code, _ := h.sb.WXLoginApp(p.ID, DevUnboundMiniProgram.AppID)
		a := h.exchangeAt(DevUnboundMiniProgram, code)
		wantOK(t, a)
		if a.OpenID != p.OpenIDs[DevUnboundMiniProgram.AppID] || a.UnionID != "" {
			t.Errorf("unbound session %+v", a)
		}
		data, iv, err := h.sb.OpenDataApp(p.ID, DevUnboundMiniProgram.AppID)
		if err != nil {
			t.Fatal(err)
		}
		od, err := wechat.DecryptOpenData(a.SessionKey, data, iv, DevUnboundMiniProgram.AppID)
		if err != nil || od.OpenID != a.OpenID || od.UnionID != "" {
			t.Errorf("unbound open data %+v, %v", od, err)
		}
	})

	t.Run("open_data_uses_the_app_session_key_and_watermark", func(t *testing.T) {
		code, _ := h.sb.WXLoginApp(p.ID, DevMiniProgram2.AppID)
		a := h.exchangeAt(DevMiniProgram2, code)
		var got struct {
			EncryptedData string `json:"encrypted_data"`
			IV            string `json:"iv"`
		}
		h.control("POST", "/sandbox/people/"+p.ID+"/open-data", map[string]string{"appid": DevMiniProgram2.AppID}, http.StatusOK, &got)
		od, err := wechat.DecryptOpenData(a.SessionKey, got.EncryptedData, got.IV, DevMiniProgram2.AppID)
		if err != nil || od.OpenID != p.OpenIDs[DevMiniProgram2.AppID] || od.UnionID != p.UnionID {
			t.Errorf("MP2 open data %+v, %v", od, err)
		}
		if _, err := wechat.DecryptOpenData(a.SessionKey, got.EncryptedData, got.IV, DevMiniProgram.AppID); err == nil {
			t.Error("MP2's open data passes as the default mini program's")
		}
	})

	t.Run("codes_only_for_mini_programs", func(t *testing.T) {
		if _, err := h.sb.WXLoginApp(p.ID, DevOfficialAccount2.AppID); !errors.Is(err, ErrAppKind) {
			t.Errorf("OA: %v", err)
		}
		if _, err := h.sb.WXLoginApp(p.ID, "wx0000000000000000"); !errors.Is(err, ErrNoApp) {
			t.Errorf("unknown app: %v", err)
		}
		code, _ := h.sb.WXLogin(p.ID)
		wantErr(t, h.exchangeAt(DevWebsite, code), 40013)
		wantErr(t, h.token(DevWebsite), 40013) // website apps have no API token
	})

	t.Run("control_api_logs_in_per_app", func(t *testing.T) {
		var c struct{ Code string }
		h.control("POST", "/sandbox/people/"+p.ID+"/wx-login", map[string]string{"appid": DevMiniProgram2.AppID}, http.StatusOK, &c)
		wantErr(t, h.exchangeAt(DevMiniProgram, c.Code), 40029)
		wantOK(t, h.exchangeAt(DevMiniProgram2, c.Code))
		h.control("POST", "/sandbox/people/"+p.ID+"/wx-login", nil, http.StatusOK, &c)
		wantOK(t, h.exchangeAt(DevMiniProgram, c.Code))
		h.control("POST", "/sandbox/people/"+p.ID+"/wx-login", map[string]string{"appid": DevWebsite.AppID}, http.StatusBadRequest, nil)
		h.control("POST", "/sandbox/people/"+p.ID+"/wx-login", map[string]string{"appid": "wx0000000000000000"}, http.StatusNotFound, nil)
	})

	t.Run("apps_are_listed_without_secrets", func(t *testing.T) {
		var list struct{ Apps []AppInfo }
		status, raw := h.do(must(http.NewRequest("GET", h.srv.URL+"/sandbox/apps", nil)))
		if status != http.StatusOK || strings.Contains(string(raw), "5a0dbe0c5ec7e7") {
			t.Fatalf("GET /sandbox/apps: %d %s", status, raw)
		}
		h.control("GET", "/sandbox/apps", nil, http.StatusOK, &list)
		if len(list.Apps) != 9 || list.Apps[0] != (AppInfo{Kind: AppMiniProgram, AppID: DevMiniProgram.AppID, Bound: true, Default: true}) {
			t.Fatalf("apps %+v", list.Apps)
		}
		kinds := map[AppKind]int{}
		for _, a := range list.Apps {
			kinds[a.Kind]++
			if (a.AppID == DevUnboundMiniProgram.AppID) == a.Bound {
				t.Errorf("%s bound = %v", a.AppID, a.Bound)
			}
			if a.Default != (a.AppID == DevWebsite.AppID || a.AppID == DevMobile.AppID || a.AppID == DevMiniProgram.AppID || a.AppID == DevOfficialAccount.AppID) {
				t.Errorf("%s default = %v", a.AppID, a.Default)
			}
		}
		if kinds[AppMiniProgram] != 3 || kinds[AppOfficialAccount] != 2 || kinds[AppWebsite] != 2 || kinds[AppMobile] != 2 {
			t.Errorf("kinds %v", kinds)
		}
	})
}

func must(r *http.Request, err error) *http.Request {
	if err != nil {
		panic(err)
	}
	return r
}

// page opens path on the sandbox without following redirects.
func (h *harness) page(path string, q url.Values) (*http.Response, string) {
	h.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(h.srv.URL + path + "?" + q.Encode())
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestWebsiteQRLogin(t *testing.T) {
	h := multi(t)
	p := h.sb.CreatePerson(PersonSpec{})
	const back = "https://www.example/login/callback"
	link := func(appid, scope string, extra ...string) url.Values {
		q := url.Values{"appid": {appid}, "redirect_uri": {back}, "response_type": {"code"}, "scope": {scope}, "state": {"S7"}}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return q
	}
	// scan plays the page: the person scans and confirms.
	scan := func(t *testing.T, app App) string {
		resp, _ := h.page("/connect/qrconnect", link(app.AppID, "snsapi_login", "person", p.ID))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || loc.Host != "www.example" || loc.Query().Get("state") != "S7" || loc.Query().Get("code") == "" {
			t.Fatalf("scan: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		return loc.Query().Get("code")
	}

	t.Run("the_page_asks_who_scans", func(t *testing.T) {
		resp, body := h.page("/connect/qrconnect", link(DevWebsite.AppID, "snsapi_login"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d", resp.StatusCode)
		}
		for _, want := range []string{`action="/connect/qrconnect"`, `value="` + p.ID + `"`, `name="refuse"`, `name="scope" value="snsapi_login"`} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %s", want)
			}
		}
		if strings.Contains(body, "snapshot") {
			t.Error("QR login offers snapshot mode, an official account's")
		}
	})

	t.Run("code_gives_the_website_openid_and_unionid", func(t *testing.T) {
		a := h.snsExchange(DevWebsite, scan(t, DevWebsite))
		if a.ErrCode != 0 || a.OpenID != p.OpenIDs[DevWebsite.AppID] || a.UnionID != p.UnionID || a.Scope != "snsapi_login" {
			t.Fatalf("exchange %+v", a)
		}
		u := h.userInfo(a.AccessToken, a.OpenID)
		if u.ErrCode != 0 || u.UnionID != p.UnionID || u.Nickname != p.Nickname {
			t.Errorf("userinfo %+v", u)
		}
	})

	t.Run("a_code_works_once_for_its_app_only", func(t *testing.T) {
		code := scan(t, DevWebsite)
		wantWebErr(t, h.snsExchange(DevWebsite2, code), 40029)
		wantWebErr(t, h.snsExchange(DevOfficialAccount, code), 40029)
		wantWebErr(t, h.snsExchange(App{DevWebsite.AppID, DevWebsite2.Secret}, code), 40125)
		if a := h.snsExchange(DevWebsite, code); a.ErrCode != 0 {
			t.Fatalf("exchange after other apps' tries: %+v", a)
		}
		wantWebErr(t, h.snsExchange(DevWebsite, code), 40163)
	})

	t.Run("a_code_lives_ten_minutes", func(t *testing.T) {
		early, late := scan(t, DevWebsite2), scan(t, DevWebsite2)
		h.sb.Clock().Advance(10*time.Minute - time.Second)
		if a := h.snsExchange(DevWebsite2, early); a.ErrCode != 0 || a.OpenID != p.OpenIDs[DevWebsite2.AppID] {
			t.Errorf("within 10 minutes: %+v", a)
		}
		h.sb.Clock().Advance(2 * time.Second)
		wantWebErr(t, h.snsExchange(DevWebsite2, late), 40029)
	})

	t.Run("refusal_comes_back_without_a_code", func(t *testing.T) {
		resp, _ := h.page("/connect/qrconnect", link(DevWebsite.AppID, "snsapi_login", "person", p.ID, "refuse", "1"))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Has("code") || loc.Query().Get("state") != "S7" {
			t.Fatalf("refusal %d %s", resp.StatusCode, loc)
		}
	})

	for name, c := range map[string]struct {
		path string
		q    url.Values
	}{
		"official_account_at_qrconnect": {"/connect/qrconnect", link(DevOfficialAccount.AppID, "snsapi_login", "person", p.ID)},
		"website_at_authorize":          {"/connect/oauth2/authorize", link(DevWebsite.AppID, "snsapi_base", "person", p.ID)},
		"userinfo_scope_at_qrconnect":   {"/connect/qrconnect", link(DevWebsite.AppID, "snsapi_userinfo", "person", p.ID)},
		"login_scope_at_authorize":      {"/connect/oauth2/authorize", link(DevOfficialAccount2.AppID, "snsapi_login", "person", p.ID)},
	} {
		t.Run("error_page_for_"+name, func(t *testing.T) {
			resp, body := h.page(c.path, c.q)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "errcode 100") {
				t.Fatalf("got %d %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}

	t.Run("second_official_account_authorizes_its_own_openid", func(t *testing.T) {
		resp, _ := h.page("/connect/oauth2/authorize", link(DevOfficialAccount2.AppID, "snsapi_userinfo", "person", p.ID))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		code := loc.Query().Get("code")
		wantWebErr(t, h.snsExchange(DevOfficialAccount, code), 40029)
		a := h.snsExchange(DevOfficialAccount2, code)
		if a.ErrCode != 0 || a.OpenID != p.OpenIDs[DevOfficialAccount2.AppID] || a.UnionID != p.UnionID {
			t.Fatalf("OA2 exchange %+v", a)
		}
		// A refresh token renews only at its own app.
		wantWebErr(t, h.sns("/sns/oauth2/refresh_token", url.Values{"appid": {DevOfficialAccount.AppID}, "grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}}), 40030)
		if r := h.sns("/sns/oauth2/refresh_token", url.Values{"appid": {DevOfficialAccount2.AppID}, "grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}}); r.ErrCode != 0 || r.OpenID != a.OpenID {
			t.Errorf("refresh %+v", r)
		}
	})

	t.Run("go_api_plays_the_page", func(t *testing.T) {
		code, err := h.sb.OAuthCode(OAuthConsent{AppID: DevWebsite2.AppID, Scope: "snsapi_login", Person: p.ID})
		if err != nil {
			t.Fatal(err)
		}
		if a := h.snsExchange(DevWebsite2, code); a.ErrCode != 0 || a.OpenID != p.OpenIDs[DevWebsite2.AppID] {
			t.Errorf("exchange %+v", a)
		}
		for _, c := range []OAuthConsent{
			{AppID: DevWebsite.AppID, Scope: scopeUserInfo, Person: p.ID},
			{AppID: DevOfficialAccount.AppID, Scope: "snsapi_login", Person: p.ID},
		} {
			if _, err := h.sb.OAuthCode(c); !errors.Is(err, ErrScope) {
				t.Errorf("%+v: %v, want ErrScope", c, err)
			}
		}
	})
}

func TestMobileLogin(t *testing.T) {
	h := multi(t)
	p := h.sb.CreatePerson(PersonSpec{})

	t.Run("code_gives_the_app_openid_once", func(t *testing.T) {
		var c struct{ Code string }
		h.control("POST", "/sandbox/people/"+p.ID+"/app-login", map[string]string{"appid": DevMobile2.AppID}, http.StatusOK, &c)
		wantWebErr(t, h.snsExchange(DevMobile, c.Code), 40029)
		a := h.snsExchange(DevMobile2, c.Code)
		if a.ErrCode != 0 || a.OpenID != p.OpenIDs[DevMobile2.AppID] || a.UnionID != p.UnionID || a.Scope != scopeUserInfo {
			t.Fatalf("exchange %+v", a)
		}
		if u := h.userInfo(a.AccessToken, a.OpenID); u.ErrCode != 0 || u.UnionID != p.UnionID {
			t.Errorf("userinfo %+v", u)
		}
		wantWebErr(t, h.snsExchange(DevMobile2, c.Code), 40163)
	})

	t.Run("code_expires_after_ten_minutes", func(t *testing.T) {
		code, err := h.sb.AppLoginCode(p.ID, "") // the default mobile app
		if err != nil {
			t.Fatal(err)
		}
		h.sb.Clock().Advance(10*time.Minute + time.Second)
		wantWebErr(t, h.snsExchange(DevMobile, code), 40029)
	})

	t.Run("codes_only_for_mobile_apps", func(t *testing.T) {
		h.control("POST", "/sandbox/people/"+p.ID+"/app-login", map[string]string{"appid": DevMiniProgram.AppID}, http.StatusBadRequest, nil)
		h.control("POST", "/sandbox/people/nobody/app-login", nil, http.StatusNotFound, nil)
		if _, err := New(DefaultConfig()).AppLoginCode(p.ID, ""); !errors.Is(err, ErrNoApp) {
			t.Errorf("without mobile apps: %v", err)
		}
	})
}

// phoneAnswer is getuserphonenumber's answer.
type phoneAnswer struct {
	ErrCode   int    `json:"errcode"`
	ErrMsg    string `json:"errmsg"`
	PhoneInfo struct {
		PhoneNumber     string `json:"phoneNumber"`
		PurePhoneNumber string `json:"purePhoneNumber"`
		CountryCode     string `json:"countryCode"`
		Watermark       struct {
			Timestamp int64  `json:"timestamp"`
			AppID     string `json:"appid"`
		} `json:"watermark"`
	} `json:"phone_info"`
}

func (h *harness) phone(token, code string) phoneAnswer {
	h.t.Helper()
	var a phoneAnswer
	h.postJSON("/wxa/business/getuserphonenumber?access_token="+url.QueryEscape(token), map[string]string{"code": code}, &a)
	return a
}

func (h *harness) postJSON(path string, body, out any) {
	h.t.Helper()
	b, _ := json.Marshal(body)
	status, raw := h.do(must(http.NewRequest("POST", h.srv.URL+path, bytes.NewReader(b))))
	if status != http.StatusOK || json.Unmarshal(raw, out) != nil {
		h.t.Errorf("POST %s: %d %s", path, status, raw)
	}
}

func TestPhoneNumbers(t *testing.T) {
	h := multi(t)
	p, q := h.sb.CreatePerson(PersonSpec{}), h.sb.CreatePerson(PersonSpec{})
	mpTok := h.stable(DevMiniProgram, false).AccessToken
	mp2Tok := h.stable(DevMiniProgram2, false).AccessToken

	t.Run("people_have_distinct_generated_numbers", func(t *testing.T) {
		if p.Phone != "+8613800000001" || q.Phone != "+8613800000002" {
			t.Errorf("phones %s %s", p.Phone, q.Phone)
		}
	})

	t.Run("code_answers_the_number_once", func(t *testing.T) {
		code, err := h.sb.PhoneCode(p.ID, DevMiniProgram.AppID)
		if err != nil {
			t.Fatal(err)
		}
		a := h.phone(mpTok, code)
		pi := a.PhoneInfo
		if a.ErrCode != 0 || pi.PhoneNumber != "13800000001" || pi.PurePhoneNumber != "13800000001" || pi.CountryCode != "86" ||
			pi.Watermark.AppID != DevMiniProgram.AppID || pi.Watermark.Timestamp != h.sb.Clock().Now().Unix() {
			t.Fatalf("answer %+v", a)
		}
		wantErr(t, answer{ErrCode: h.phone(mpTok, code).ErrCode, ErrMsg: h.phone(mpTok, code).ErrMsg}, 40029)
	})

	t.Run("code_of_another_mini_program_is_refused", func(t *testing.T) {
		var c struct{ Code string }
		h.control("POST", "/sandbox/people/"+p.ID+"/phone-code", map[string]string{"appid": DevMiniProgram2.AppID}, http.StatusOK, &c)
		if a := h.phone(mpTok, c.Code); a.ErrCode != 40029 {
			t.Fatalf("MP2's code at MP: %+v", a)
		}
		if a := h.phone(mp2Tok, c.Code); a.ErrCode != 0 || a.PhoneInfo.Watermark.AppID != DevMiniProgram2.AppID {
			t.Errorf("MP2's code at MP2 after the refusal: %+v", a)
		}
	})

	t.Run("code_expires_after_five_minutes", func(t *testing.T) {
		code, _ := h.sb.PhoneCode(p.ID, "")
		h.sb.Clock().Advance(5*time.Minute + time.Second)
		mpTok := h.stable(DevMiniProgram, false).AccessToken
		if a := h.phone(mpTok, code); a.ErrCode != 40029 {
			t.Errorf("expired code: %+v", a)
		}
	})

	t.Run("token_errors_and_faults", func(t *testing.T) {
		code, _ := h.sb.PhoneCode(p.ID, "")
		oaTok := h.stable(DevOfficialAccount, false).AccessToken
		for tok, want := range map[string]int{"": 41001, "nonsense": 40001, oaTok: 48001} {
			if a := h.phone(tok, code); a.ErrCode != want {
				t.Errorf("token %.8q: %+v, want %d", tok, a, want)
			}
		}
		h.sb.InjectFault(Fault{Path: "/wxa/business/getuserphonenumber", ErrCode: -1, Count: 1})
		before := h.sb.Calls("/wxa/business/getuserphonenumber")
		mpTok := h.stable(DevMiniProgram, false).AccessToken
		if a := h.phone(mpTok, code); a.ErrCode != -1 {
			t.Errorf("fault: %+v", a)
		}
		if a := h.phone(mpTok, code); a.ErrCode != 0 {
			t.Errorf("after the fault, the unused code: %+v", a)
		}
		if n := h.sb.Calls("/wxa/business/getuserphonenumber") - before; n != 2 {
			t.Errorf("%d calls counted, want 2", n)
		}
	})

	t.Run("a_number_moves_to_its_new_holder", func(t *testing.T) {
		old := p.Phone
		var got Person
		h.control("POST", "/sandbox/people/"+q.ID+"/phone", map[string]string{"phone": old}, http.StatusOK, &got)
		if got.Phone != old {
			t.Fatalf("new holder %+v", got)
		}
		if pp, _ := h.sb.Person(p.ID); pp.Phone != "" {
			t.Errorf("old holder keeps %s", pp.Phone)
		}
		if _, err := h.sb.PhoneCode(p.ID, ""); err == nil {
			t.Error("a person without a number taps getPhoneNumber")
		}
		// A number freed or taken by hand is skipped by the generator.
		if r := h.sb.CreatePerson(PersonSpec{}); r.Phone != "+8613800000003" {
			t.Errorf("third person %s", r.Phone)
		}
		h.sb.SetPhone(p.ID, "+8613800000004")
		if r := h.sb.CreatePerson(PersonSpec{}); r.Phone != "+8613800000005" {
			t.Errorf("fourth person %s, want the series to skip the taken number", r.Phone)
		}
		h.control("POST", "/sandbox/people/"+q.ID+"/phone", map[string]string{"phone": "13800000000"}, http.StatusBadRequest, nil)
		h.control("POST", "/sandbox/people/nobody/phone", map[string]string{"phone": "+8613912345678"}, http.StatusNotFound, nil)
	})

	t.Run("numbers_outside_mainland_carry_their_code", func(t *testing.T) {
		if err := h.sb.SetPhone(q.ID, "+85291234567"); err != nil {
			t.Fatal(err)
		}
		code, _ := h.sb.PhoneCode(q.ID, DevUnboundMiniProgram.AppID)
		a := h.phone(h.stable(DevUnboundMiniProgram, false).AccessToken, code)
		if pi := a.PhoneInfo; a.ErrCode != 0 || pi.PhoneNumber != "+85291234567" || pi.PurePhoneNumber != "91234567" || pi.CountryCode != "852" {
			t.Errorf("answer %+v", a)
		}
	})
}

// oaInbox is one official account's push URL: it opens each push with that
// account's token and EncodingAESKey, as the follow-event function does.
type oaInbox struct {
	mu     sync.Mutex
	events []push.Event
}

func (x *oaInbox) serve(t *testing.T, sb *Sandbox, appid, token, key string) {
	recv, err := push.NewReceiver(token, key, appid, 0)
	if err != nil {
		t.Fatal(err)
	}
	recv.Now = sb.Clock().Now
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		q := req.URL.Query()
		e, err := recv.Open(push.Query{Signature: q.Get("signature"), Timestamp: q.Get("timestamp"), Nonce: q.Get("nonce"), EncryptType: q.Get("encrypt_type"), MsgSignature: q.Get("msg_signature")}, body)
		if err != nil {
			t.Errorf("push to %s does not open: %v", appid, err)
			http.Error(w, err.Error(), 400)
			return
		}
		x.mu.Lock()
		x.events = append(x.events, e)
		x.mu.Unlock()
		io.WriteString(w, "success")
	}))
	t.Cleanup(srv.Close)
	mode := push.Safe
	if key == "" {
		mode = push.Plaintext
	}
	if err := sb.SetPushTargetApp(appid, PushTarget{URL: srv.URL, Token: token, EncodingAESKey: key, Mode: mode}); err != nil {
		t.Fatal(err)
	}
}

func (x *oaInbox) all() []push.Event {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]push.Event(nil), x.events...)
}

const otherAESKey = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"

func TestPushPerOfficialAccount(t *testing.T) {
	h := multi(t)
	ctx := context.Background()
	p := h.sb.CreatePerson(PersonSpec{})
	var one, two oaInbox
	one.serve(t, h.sb, DevOfficialAccount.AppID, "tokenone", testAESKey)
	two.serve(t, h.sb, DevOfficialAccount2.AppID, "tokentwo", otherAESKey)
	tok2 := h.stable(DevOfficialAccount2, false).AccessToken
	tok1 := h.stable(DevOfficialAccount, false).AccessToken
	info := func(tok, openid string) answer {
		return h.platform("GET", "/cgi-bin/user/info", url.Values{"access_token": {tok}, "openid": {openid}}, nil)
	}

	t.Run("each_account_pushes_its_own_events", func(t *testing.T) {
		var d Delivery
		h.control("POST", "/sandbox/people/"+p.ID+"/follow", map[string]string{"appid": DevOfficialAccount2.AppID, "scene": "s2"}, http.StatusOK, &d)
		if !d.Delivered || len(one.all()) != 0 || len(two.all()) != 1 {
			t.Fatalf("delivery %+v; pushes %d / %d", d, len(one.all()), len(two.all()))
		}
		e := two.all()[0]
		if e.Event != push.Subscribe || e.FromUserName != p.OpenIDs[DevOfficialAccount2.AppID] || e.ToUserName != OriginalID(DevOfficialAccount2.AppID) || e.EventKey != "qrscene_s2" {
			t.Errorf("OA2 event %+v", e)
		}
		if _, err := h.sb.Follow(ctx, p.ID, ""); err != nil {
			t.Fatal(err)
		}
		if e := one.all()[0]; e.FromUserName != p.OAOpenID || e.ToUserName != OriginalID(DevOfficialAccount.AppID) || e.ToUserName == OriginalID(DevOfficialAccount2.AppID) {
			t.Errorf("OA event %+v", e)
		}
	})

	t.Run("follow_state_is_per_account", func(t *testing.T) {
		if _, err := h.sb.UnfollowApp(ctx, p.ID, ""); err != nil {
			t.Fatal(err)
		}
		a := info(tok2, p.OpenIDs[DevOfficialAccount2.AppID])
		var u UserInfo
		h.sb.mu.Lock()
		u, _ = h.sb.userInfo(h.sb.apps[DevOfficialAccount2.AppID], p.OpenIDs[DevOfficialAccount2.AppID])
		h.sb.mu.Unlock()
		if a.ErrCode != 0 || u.Subscribe != 1 || u.UnionID != p.UnionID || u.QRSceneStr != "s2" {
			t.Errorf("OA2 user/info %+v", u)
		}
		h.sb.mu.Lock()
		u, _ = h.sb.userInfo(h.sb.apps[DevOfficialAccount.AppID], p.OAOpenID)
		h.sb.mu.Unlock()
		if u.Subscribe != 0 {
			t.Errorf("OA user/info after the unfollow %+v", u)
		}
		wantErr(t, info(tok1, p.OpenIDs[DevOfficialAccount2.AppID]), 40003)
		wantErr(t, info(tok2, p.OAOpenID), 40003)
		if pp, _ := h.sb.Person(p.ID); pp.Following {
			t.Error("Following reports another account's follow")
		}
		var list FollowerList
		status, raw := h.do(must(http.NewRequest("GET", h.srv.URL+"/cgi-bin/user/get?access_token="+url.QueryEscape(tok2), nil)))
		if status != 200 || json.Unmarshal(raw, &list) != nil || list.Total != 1 || list.Data.OpenID[0] != p.OpenIDs[DevOfficialAccount2.AppID] {
			t.Errorf("OA2 user/get %s", raw)
		}
	})

	t.Run("scan_of_another_account_ticket_is_refused", func(t *testing.T) {
		var qr struct{ Ticket string }
		h.postJSON("/cgi-bin/qrcode/create?access_token="+url.QueryEscape(tok2), map[string]any{"action_name": "QR_LIMIT_STR_SCENE", "action_info": map[string]any{"scene": map[string]string{"scene_str": "t2"}}}, &qr)
		if _, err := h.sb.ScanApp(ctx, p.ID, "", "", qr.Ticket); err == nil {
			t.Error("OA2's ticket scanned at OA")
		}
		d, err := h.sb.ScanApp(ctx, p.ID, DevOfficialAccount2.AppID, "", qr.Ticket)
		if err != nil || d.Event.Event != push.Scan || d.Event.EventKey != "t2" {
			t.Errorf("scan %+v, %v", d, err)
		}
	})

	t.Run("no_target_no_follow", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Apps = DefaultApps()
		sb := New(cfg)
		p := sb.CreatePerson(PersonSpec{})
		(&oaInbox{}).serve(t, sb, DevOfficialAccount.AppID, "tokenone", "")
		if _, err := sb.FollowApp(ctx, p.ID, DevOfficialAccount2.AppID, ""); !errors.Is(err, ErrNoPushTarget) {
			t.Errorf("follow without OA2's target: %v", err)
		}
		if pp, _ := sb.Person(p.ID); pp.Following {
			t.Error("a follow nobody was told about took effect")
		}
		if _, err := sb.FollowApp(ctx, p.ID, DevMiniProgram2.AppID, ""); !errors.Is(err, ErrAppKind) {
			t.Errorf("follow of a mini program: %v", err)
		}
	})
}

func TestSendsPerApp(t *testing.T) {
	h := multi(t)
	ctx := context.Background()
	p := h.sb.CreatePerson(PersonSpec{})
	var one, two oaInbox
	one.serve(t, h.sb, DevOfficialAccount.AppID, "tokenone", "")
	two.serve(t, h.sb, DevOfficialAccount2.AppID, "tokentwo", otherAESKey)
	if _, err := h.sb.FollowApp(ctx, p.ID, DevOfficialAccount2.AppID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sb.Follow(ctx, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	tpl := "tpl" + strings.Repeat("x", 40)
	data := map[string]any{"thing1": map[string]string{"value": "hi"}}
	send := func(app App, path string, body map[string]any) answer {
		var a answer
		h.postJSON(path+"?access_token="+url.QueryEscape(h.stable(app, false).AccessToken), body, &a)
		return a
	}
	oa2, mp2 := p.OpenIDs[DevOfficialAccount2.AppID], p.OpenIDs[DevMiniProgram2.AppID]

	t.Run("an_openid_of_another_app_is_invalid", func(t *testing.T) {
		for _, c := range []struct {
			app  App
			path string
			to   string
		}{
			{DevOfficialAccount2, "/cgi-bin/message/template/send", p.OAOpenID},
			{DevOfficialAccount, "/cgi-bin/message/template/send", oa2},
			{DevOfficialAccount2, "/cgi-bin/message/subscribe/bizsend", p.OAOpenID},
			{DevOfficialAccount2, "/cgi-bin/message/custom/send", p.OAOpenID},
			{DevMiniProgram2, "/cgi-bin/message/subscribe/send", p.MPOpenID},
			{DevMiniProgram, "/cgi-bin/message/subscribe/send", mp2},
		} {
			body := map[string]any{"touser": c.to, "template_id": tpl, "data": data, "msgtype": "text", "text": map[string]string{"content": "hi"}}
			wantErr(t, send(c.app, c.path, body), 40003)
		}
		if in, _ := h.sb.Inbox(p.ID); len(in) != 0 {
			t.Errorf("inbox %+v", in)
		}
	})

	t.Run("sends_reach_the_person_from_their_app", func(t *testing.T) {
		h.sb.GrantConsent(p.ID, tpl)
		wantOK(t, send(DevOfficialAccount2, "/cgi-bin/message/template/send", map[string]any{"touser": oa2, "template_id": tpl, "data": data}))
		wantOK(t, send(DevMiniProgram2, "/cgi-bin/message/subscribe/send", map[string]any{"touser": mp2, "template_id": tpl, "data": data}))
		wantOK(t, send(DevOfficialAccount2, "/cgi-bin/message/custom/send", map[string]any{"touser": oa2, "msgtype": "text", "text": map[string]string{"content": "hi"}}))
		in, _ := h.sb.Inbox(p.ID)
		if len(in) != 3 || in[0].AppID != DevOfficialAccount2.AppID || in[1].AppID != DevMiniProgram2.AppID || in[2].AppID != DevOfficialAccount2.AppID {
			t.Fatalf("inbox %+v", in)
		}
		ds, err := h.sb.PushTemplateReports(ctx)
		if err != nil || len(ds) != 1 || !ds[0].Delivered {
			t.Fatalf("reports %+v, %v", ds, err)
		}
		got := two.all()
		if last := got[len(got)-1]; last.Event != push.TemplateFinish || last.FromUserName != oa2 || last.ToUserName != OriginalID(DevOfficialAccount2.AppID) {
			t.Errorf("OA2 report %+v", last)
		}
		for _, e := range one.all() {
			if e.Event == push.TemplateFinish {
				t.Errorf("OA2's report pushed to OA: %+v", e)
			}
		}
	})

	t.Run("customer_service_windows_are_per_account", func(t *testing.T) {
		// Following OA2 opened OA2's window only; the default account's
		// own follow opened its own.
		h.sb.Clock().Advance(EventWindow + time.Second)
		wantErr(t, send(DevOfficialAccount2, "/cgi-bin/message/custom/send", map[string]any{"touser": oa2, "msgtype": "text", "text": map[string]string{"content": "late"}}), 45015)
		if _, err := h.sb.Message(ctx, p.ID, "hello OA"); err != nil {
			t.Fatal(err)
		}
		wantErr(t, send(DevOfficialAccount2, "/cgi-bin/message/custom/send", map[string]any{"touser": oa2, "msgtype": "text", "text": map[string]string{"content": "still late"}}), 45015)
		wantOK(t, send(DevOfficialAccount, "/cgi-bin/message/custom/send", map[string]any{"touser": p.OAOpenID, "msgtype": "text", "text": map[string]string{"content": "answer"}}))
	})
}
