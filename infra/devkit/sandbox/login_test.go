package sandbox

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"wxbridge/shared/wechat"
)

func TestJSCode2Session(t *testing.T) {
	mp := DevMiniProgram
	query := func(code string) url.Values {
		return url.Values{"appid": {mp.AppID}, "secret": {mp.Secret}, "js_code": {code}, "grant_type": {"authorization_code"}}
	}
	tests := []struct {
		name   string
		before func(h *harness, code string) // runs between wx.login and the exchange
		query  func(code string) url.Values
		want   int
	}{
		{name: "fresh_code_logs_in", want: 0},
		{
			name:   "code_works_only_once",
			before: func(h *harness, code string) { wantOK(h.t, h.exchange(code)) },
			want:   40163,
		},
		{
			name:   "code_still_works_just_before_five_minutes",
			before: func(h *harness, _ string) { h.sb.Clock().Advance(codeLifetime - time.Second) },
			want:   0,
		},
		{
			name:   "code_expires_after_five_minutes",
			before: func(h *harness, _ string) { h.sb.Clock().Advance(codeLifetime + time.Second) },
			want:   40029,
		},
		{
			name:  "unknown_code_is_invalid",
			query: func(string) url.Values { return query("0a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P") },
			want:  40029,
		},
		{
			name: "official_account_appid_is_not_a_mini_program",
			query: func(code string) url.Values {
				q := query(code)
				q.Set("appid", DevOfficialAccount.AppID)
				q.Set("secret", DevOfficialAccount.Secret)
				return q
			},
			want: 40013,
		},
		{
			name:  "wrong_secret",
			query: func(code string) url.Values { q := query(code); q.Set("secret", strings.Repeat("0", 32)); return q },
			want:  40125,
		},
		{
			name:  "wrong_grant_type",
			query: func(code string) url.Values { q := query(code); q.Set("grant_type", "client_credential"); return q },
			want:  40002,
		},
		{
			name:  "missing_code",
			query: func(code string) url.Values { q := query(code); q.Del("js_code"); return q },
			want:  41008,
		},
		{
			name:  "missing_appid",
			query: func(code string) url.Values { q := query(code); q.Del("appid"); return q },
			want:  41002,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, DefaultConfig())
			p := h.sb.CreatePerson(PersonSpec{})
			code, err := h.sb.WXLogin(p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tt.before != nil {
				tt.before(h, code)
			}
			q := query(code)
			if tt.query != nil {
				q = tt.query(code)
			}
			a := h.platform("GET", "/sns/jscode2session", q, nil)
			wantErr(t, a, tt.want)
			if tt.want != 0 {
				if a.OpenID != "" || a.SessionKey != "" {
					t.Errorf("error answer carries a session: %+v", a)
				}
				return
			}
			if a.OpenID != p.MPOpenID || a.UnionID != p.UnionID {
				t.Errorf("openid, unionid = %q, %q, want %q, %q", a.OpenID, a.UnionID, p.MPOpenID, p.UnionID)
			}
			if a.SessionKey == "" {
				t.Error("no session_key")
			}
		})
	}
}

func TestJSCode2SessionRateLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LoginPerMinute = 5
	h := start(t, cfg)
	busy := h.sb.CreatePerson(PersonSpec{})
	calm := h.sb.CreatePerson(PersonSpec{})

	t.Run("calls_within_the_limit_succeed", func(t *testing.T) {
		for i := range cfg.LoginPerMinute {
			if a := h.login(busy.ID); a.ErrCode != 0 {
				t.Fatalf("call %d: errcode %d", i+1, a.ErrCode)
			}
		}
	})
	t.Run("one_more_in_the_same_minute_is_45011", func(t *testing.T) {
		wantErr(t, h.login(busy.ID), 45011)
	})
	t.Run("another_person_is_not_limited", func(t *testing.T) {
		wantOK(t, h.login(calm.ID))
	})
	t.Run("next_minute_allows_again", func(t *testing.T) {
		h.sb.Clock().Advance(time.Minute)
		wantOK(t, h.login(busy.ID))
	})
}

func TestRevealUnionID(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RevealUnionID = false
	h := start(t, cfg)
	p := h.sb.CreatePerson(PersonSpec{})

	steps := []struct {
		name   string
		set    func()
		reveal bool
	}{
		{"unbound_mini_program_hides_unionid", func() {}, false},
		{"binding_through_the_go_api_reveals_it", func() { h.sb.SetRevealUnionID(true) }, true},
		{"unbinding_through_the_control_api_hides_it", func() {
			h.control("POST", "/sandbox/apps/mini-program", map[string]bool{"reveal_unionid": false}, 200, nil)
		}, false},
		{"binding_through_the_control_api_reveals_it", func() {
			h.control("POST", "/sandbox/apps/mini-program", map[string]bool{"reveal_unionid": true}, 200, nil)
		}, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.set()
			a := h.login(p.ID)
			wantOK(t, a)
			if got := a.UnionID != ""; got != st.reveal {
				t.Errorf("unionid %q present = %v, want %v", a.UnionID, got, st.reveal)
			}
			if st.reveal && a.UnionID != p.UnionID {
				t.Errorf("unionid = %q, want %q", a.UnionID, p.UnionID)
			}
		})
	}
}

func TestOpenData(t *testing.T) {
	h := start(t, DefaultConfig())
	p := h.sb.CreatePerson(PersonSpec{Nickname: "小明", UnionID: "oU_fixedUnionForOpenDataTest1"})

	t.Run("refused_before_jscode2session", func(t *testing.T) {
		if _, _, err := h.sb.OpenData(p.ID); !errors.Is(err, ErrNoSession) {
			t.Errorf("err = %v, want ErrNoSession", err)
		}
		if _, _, err := h.sb.OpenData("nobody"); !errors.Is(err, ErrNoPerson) {
			t.Errorf("err = %v, want ErrNoPerson", err)
		}
	})

	first := h.login(p.ID)
	second := h.login(p.ID)
	wantOK(t, first)
	wantOK(t, second)

	t.Run("each_login_rotates_the_session_key", func(t *testing.T) {
		if first.SessionKey == second.SessionKey {
			t.Fatal("session_key did not change between logins")
		}
	})

	data, iv, err := h.sb.OpenData(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("decrypts_with_the_current_session_key", func(t *testing.T) {
		d, err := wechat.DecryptOpenData(second.SessionKey, data, iv, DevMiniProgram.AppID)
		if err != nil {
			t.Fatal(err)
		}
		if d.OpenID != p.MPOpenID || d.UnionID != p.UnionID {
			t.Errorf("openId, unionId = %q, %q, want %q, %q", d.OpenID, d.UnionID, p.MPOpenID, p.UnionID)
		}
		var raw map[string]any
		json.Unmarshal(d.Raw, &raw)
		if raw["nickName"] != "小明" {
			t.Errorf("nickName = %v, want 小明", raw["nickName"])
		}
		for _, k := range []string{"gender", "language", "city", "province", "country", "avatarUrl"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("payload lacks %s", k)
			}
		}
		if got, want := d.Watermark.Timestamp, h.sb.Clock().Now().Unix(); got < want-5 || got > want {
			t.Errorf("watermark timestamp %d, want about %d (the sandbox clock)", got, want)
		}
	})
	t.Run("stale_session_key_fails", func(t *testing.T) {
		if _, err := wechat.DecryptOpenData(first.SessionKey, data, iv, DevMiniProgram.AppID); err == nil {
			t.Error("open data decrypted with the replaced session_key")
		}
	})
	t.Run("control_api_gives_the_same_kind_of_data", func(t *testing.T) {
		var out struct {
			EncryptedData string `json:"encrypted_data"`
			IV            string `json:"iv"`
		}
		h.control("POST", "/sandbox/people/"+p.ID+"/open-data", nil, 200, &out)
		if _, err := wechat.DecryptOpenData(second.SessionKey, out.EncryptedData, out.IV, DevMiniProgram.AppID); err != nil {
			t.Error(err)
		}
	})
}

func TestPeople(t *testing.T) {
	h := start(t, DefaultConfig())
	a := h.sb.CreatePerson(PersonSpec{})
	b := h.sb.CreatePerson(PersonSpec{UnionID: "oU_givenUnionIDforPersonB123", Nickname: "Bee"})

	t.Run("generated_identities_look_like_the_platform's", func(t *testing.T) {
		for _, p := range []Person{a, b} {
			if len(p.MPOpenID) != 28 || len(p.OAOpenID) != 28 || p.MPOpenID[0] != 'o' {
				t.Errorf("openids %q %q are not 28-character openids", p.MPOpenID, p.OAOpenID)
			}
			if p.MPOpenID == p.OAOpenID {
				t.Error("same openid in both apps")
			}
		}
		if n := len(a.UnionID); n < 28 || n > 29 || !strings.HasPrefix(a.UnionID, "oU") {
			t.Errorf("unionid %q", a.UnionID)
		}
		if a.MPOpenID[:6] != b.MPOpenID[:6] || a.MPOpenID[:6] == a.OAOpenID[:6] {
			t.Error("openids of one app should share a prefix that differs between apps")
		}
		if a.Nickname == "" || a.ID == b.ID {
			t.Errorf("people %+v %+v", a, b)
		}
	})
	t.Run("spec_fixes_unionid_and_nickname", func(t *testing.T) {
		if b.UnionID != "oU_givenUnionIDforPersonB123" || b.Nickname != "Bee" {
			t.Errorf("person %+v ignores its spec", b)
		}
	})
	t.Run("people_are_listed_in_creation_order", func(t *testing.T) {
		got := h.sb.People()
		if len(got) != 2 || !reflect.DeepEqual(got[0], a) || !reflect.DeepEqual(got[1], b) {
			t.Errorf("People() = %+v", got)
		}
		if p, ok := h.sb.Person(b.ID); !ok || !reflect.DeepEqual(p, b) {
			t.Errorf("Person(%s) = %+v, %v", b.ID, p, ok)
		}
	})
	t.Run("a_unionid_belongs_to_one_person", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("CreatePerson accepted a taken unionid")
			}
		}()
		h.sb.CreatePerson(PersonSpec{UnionID: b.UnionID})
	})
	t.Run("wx_login_needs_a_person", func(t *testing.T) {
		if _, err := h.sb.WXLogin("nobody"); !errors.Is(err, ErrNoPerson) {
			t.Errorf("err = %v, want ErrNoPerson", err)
		}
	})
}
