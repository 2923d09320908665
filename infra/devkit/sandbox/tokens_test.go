package sandbox

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	oa := DevOfficialAccount
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"issues_a_token_for_two_hours", func(t *testing.T, h *harness) {
			a := h.token(oa)
			wantOK(t, a)
			if a.ExpiresIn != 7200 || len(a.AccessToken) < 100 {
				t.Errorf("token %q expires_in %d", a.AccessToken, a.ExpiresIn)
			}
			wantOK(t, h.callbackIP(a.AccessToken))
		}},
		{"previous_token_works_five_more_minutes", func(t *testing.T, h *harness) {
			old, cur := h.token(oa).AccessToken, h.token(oa).AccessToken
			if old == cur {
				t.Fatal("second call returned the same token")
			}
			h.sb.Clock().Advance(tokenOverlap - time.Second)
			wantOK(t, h.callbackIP(old))
			h.sb.Clock().Advance(2 * time.Second)
			wantErr(t, h.callbackIP(old), 40001)
			wantOK(t, h.callbackIP(cur))
		}},
		{"older_tokens_stop_at_once", func(t *testing.T, h *harness) {
			oldest, previous := h.token(oa).AccessToken, h.token(oa).AccessToken
			latest := h.token(oa).AccessToken
			wantErr(t, h.callbackIP(oldest), 40001)
			wantOK(t, h.callbackIP(previous))
			wantOK(t, h.callbackIP(latest))
		}},
		{"overlap_never_outlives_the_token's_own_expiry", func(t *testing.T, h *harness) {
			old := h.token(oa).AccessToken
			h.sb.Clock().Advance(tokenLifetime - time.Minute)
			h.token(oa)
			h.sb.Clock().Advance(time.Minute + time.Second)
			wantErr(t, h.callbackIP(old), 42001)
		}},
		{"token_expires_after_7200_seconds", func(t *testing.T, h *harness) {
			tok := h.token(oa).AccessToken
			h.sb.Clock().Advance(tokenLifetime - time.Second)
			wantOK(t, h.callbackIP(tok))
			h.sb.Clock().Advance(time.Second)
			wantErr(t, h.callbackIP(tok), 42001)
		}},
		{"apps_do_not_supersede_each_other", func(t *testing.T, h *harness) {
			mpTok := h.token(DevMiniProgram).AccessToken
			for range 3 {
				h.token(oa)
			}
			wantOK(t, h.callbackIP(mpTok))
		}},
		{"bad_credentials", func(t *testing.T, h *harness) {
			for _, c := range []struct {
				q    url.Values
				want int
			}{
				{url.Values{"grant_type": {"client_credential"}, "appid": {"wx0000000000000000"}, "secret": {oa.Secret}}, 40013},
				{url.Values{"grant_type": {"client_credential"}, "appid": {oa.AppID}, "secret": {DevMiniProgram.Secret}}, 40125},
				{url.Values{"grant_type": {"authorization_code"}, "appid": {oa.AppID}, "secret": {oa.Secret}}, 40002},
				{url.Values{"grant_type": {"client_credential"}, "secret": {oa.Secret}}, 41002},
				{url.Values{"grant_type": {"client_credential"}, "appid": {oa.AppID}}, 41004},
			} {
				wantErr(t, h.platform("GET", "/cgi-bin/token", c.q, nil), c.want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, start(t, DefaultConfig())) })
	}
}

func TestTokenDailyQuota(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TokenDailyQuota = 3
	h := start(t, cfg)
	oa := DevOfficialAccount
	h.sb.Clock().Set(time.Date(2026, 3, 2, 23, 58, 0, 0, beijing))

	var last string
	t.Run("calls_up_to_the_quota_succeed", func(t *testing.T) {
		for range cfg.TokenDailyQuota {
			a := h.token(oa)
			wantOK(t, a)
			last = a.AccessToken
		}
	})
	t.Run("one_more_is_45009", func(t *testing.T) {
		wantErr(t, h.token(oa), 45009)
	})
	t.Run("refusal_leaves_the_latest_token_working", func(t *testing.T) {
		wantOK(t, h.callbackIP(last))
	})
	t.Run("quota_is_per_app", func(t *testing.T) {
		wantOK(t, h.token(DevMiniProgram))
	})
	t.Run("still_refused_just_before_beijing_midnight", func(t *testing.T) {
		h.sb.Clock().Set(time.Date(2026, 3, 2, 23, 59, 59, 0, beijing))
		wantErr(t, h.token(oa), 45009)
	})
	t.Run("allowed_again_after_beijing_midnight", func(t *testing.T) {
		// 16:00:01 UTC is 00:00:01 the next day in Beijing.
		h.sb.Clock().Set(time.Date(2026, 3, 2, 16, 0, 1, 0, time.UTC))
		wantOK(t, h.token(oa))
	})
}

func TestStableToken(t *testing.T) {
	oa := DevOfficialAccount
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"normal_mode_returns_the_same_token_with_remaining_lifetime", func(t *testing.T, h *harness) {
			first := h.stable(oa, false)
			wantOK(t, first)
			if first.ExpiresIn != 7200 {
				t.Errorf("first expires_in = %d, want 7200", first.ExpiresIn)
			}
			h.sb.Clock().Advance(1000 * time.Second)
			again := h.stable(oa, false)
			if again.AccessToken != first.AccessToken {
				t.Error("normal mode issued a new token while the current one is fresh")
			}
			if again.ExpiresIn < 6199 || again.ExpiresIn > 6200 {
				t.Errorf("expires_in = %d, want 6200 less the test's own run time", again.ExpiresIn)
			}
			wantOK(t, h.callbackIP(first.AccessToken))
		}},
		{"rolls_over_in_the_last_five_minutes_and_keeps_the_old_one_to_its_expiry", func(t *testing.T, h *harness) {
			old := h.stable(oa, false).AccessToken
			h.sb.Clock().Advance(tokenLifetime - tokenOverlap + time.Second)
			next := h.stable(oa, false)
			if next.AccessToken == old || next.ExpiresIn != 7200 {
				t.Fatalf("near expiry got %q expires_in %d, want a new token for 7200 s", next.AccessToken, next.ExpiresIn)
			}
			wantOK(t, h.callbackIP(old))
			h.sb.Clock().Advance(tokenOverlap - 2*time.Second)
			wantOK(t, h.callbackIP(old))
			h.sb.Clock().Advance(time.Second)
			wantErr(t, h.callbackIP(old), 42001)
			if again := h.stable(oa, false); again.AccessToken != next.AccessToken {
				t.Error("normal mode replaced the rolled-over token")
			}
		}},
		{"expired_token_is_replaced_on_the_next_call", func(t *testing.T, h *harness) {
			old := h.stable(oa, false).AccessToken
			h.sb.Clock().Advance(tokenLifetime + time.Hour)
			if a := h.stable(oa, false); a.AccessToken == old || a.ExpiresIn != 7200 {
				t.Errorf("got %q expires_in %d after expiry", a.AccessToken, a.ExpiresIn)
			}
		}},
		{"separate_from_cgi_bin_token_both_ways", func(t *testing.T, h *harness) {
			stable := h.stable(oa, false).AccessToken
			for range 3 {
				h.token(oa)
			}
			wantOK(t, h.callbackIP(stable))
			plain := h.token(oa).AccessToken
			h.stable(oa, true)
			wantOK(t, h.callbackIP(plain))
		}},
		{"force_refresh_issues_a_new_token_and_kills_the_old_at_once", func(t *testing.T, h *harness) {
			old := h.stable(oa, false).AccessToken
			forced := h.stable(oa, true)
			wantOK(t, forced)
			if forced.AccessToken == old || forced.ExpiresIn != 7200 {
				t.Fatalf("force gave %q expires_in %d", forced.AccessToken, forced.ExpiresIn)
			}
			wantErr(t, h.callbackIP(old), 40001)
			wantOK(t, h.callbackIP(forced.AccessToken))
			if a := h.stable(oa, false); a.AccessToken != forced.AccessToken {
				t.Error("normal mode after a force does not return the forced token")
			}
		}},
		{"force_refresh_also_kills_a_rolled_over_token", func(t *testing.T, h *harness) {
			old := h.stable(oa, false).AccessToken
			h.sb.Clock().Advance(tokenLifetime - time.Minute)
			h.stable(oa, false) // rolls over; old still valid for a minute
			h.stable(oa, true)
			wantErr(t, h.callbackIP(old), 40001)
		}},
		{"force_refresh_needs_30_seconds_between_calls", func(t *testing.T, h *harness) {
			first := h.stable(oa, true)
			wantOK(t, first)
			h.sb.Clock().Advance(forceInterval - time.Second)
			wantErr(t, h.stable(oa, true), 45011)
			wantOK(t, h.callbackIP(first.AccessToken)) // the refused force invalidated nothing
			h.sb.Clock().Advance(time.Second)
			wantOK(t, h.stable(oa, true))
		}},
		{"bad_requests", func(t *testing.T, h *harness) {
			wantErr(t, h.platform("GET", "/cgi-bin/stable_token", nil, nil), 43002)
			wantErr(t, h.platform("POST", "/cgi-bin/stable_token", nil, "{not json"), 47001)
			wantErr(t, h.platform("POST", "/cgi-bin/stable_token", nil, map[string]any{
				"grant_type": "client_credential", "appid": oa.AppID, "secret": strings.Repeat("f", 32),
			}), 40125)
			wantErr(t, h.platform("POST", "/cgi-bin/stable_token", nil, map[string]any{
				"grant_type": "client_credential", "appid": "wx0123456789abcdef", "secret": oa.Secret,
			}), 40013)
			wantErr(t, h.platform("POST", "/cgi-bin/stable_token", nil, map[string]any{
				"appid": oa.AppID, "secret": oa.Secret,
			}), 40002)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, start(t, DefaultConfig())) })
	}
}

func TestStableTokenForceDailyLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ForceDailyQuota = 2
	h := start(t, cfg)
	oa := DevOfficialAccount
	h.sb.Clock().Set(time.Date(2026, 3, 2, 23, 50, 0, 0, beijing))

	t.Run("forces_up_to_the_limit_succeed", func(t *testing.T) {
		for range cfg.ForceDailyQuota {
			wantOK(t, h.stable(oa, true))
			h.sb.Clock().Advance(forceInterval)
		}
	})
	var current string
	t.Run("one_more_is_45009_and_leaves_the_token_alone", func(t *testing.T) {
		current = h.stable(oa, false).AccessToken
		wantErr(t, h.stable(oa, true), 45009)
		wantOK(t, h.callbackIP(current))
	})
	t.Run("normal_mode_still_works", func(t *testing.T) {
		if a := h.stable(oa, false); a.AccessToken != current {
			t.Errorf("normal mode changed token after a refused force")
		}
	})
	t.Run("limit_is_per_app", func(t *testing.T) {
		wantOK(t, h.stable(DevMiniProgram, true))
	})
	t.Run("limit_resets_at_beijing_midnight", func(t *testing.T) {
		h.sb.Clock().Set(time.Date(2026, 3, 3, 0, 0, 1, 0, beijing))
		wantOK(t, h.stable(oa, true))
	})
}

func TestAccessTokenCheck(t *testing.T) {
	h := start(t, DefaultConfig())
	expired := h.token(DevOfficialAccount).AccessToken
	h.sb.Clock().Advance(tokenLifetime + time.Second)
	valid := h.stable(DevOfficialAccount, false).AccessToken

	tests := []struct {
		name  string
		query url.Values
		want  int
	}{
		{"missing_token_is_41001", url.Values{}, 41001},
		{"empty_token_is_41001", url.Values{"access_token": {""}}, 41001},
		{"unknown_token_is_40001", url.Values{"access_token": {"not-a-token-anyone-issued"}}, 40001},
		{"expired_token_is_42001", url.Values{"access_token": {expired}}, 42001},
		{"valid_token_is_accepted", url.Values{"access_token": {valid}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := h.platform("GET", "/cgi-bin/getcallbackip", tt.query, nil)
			wantErr(t, a, tt.want)
			if tt.want == 0 && len(a.IPList) == 0 {
				t.Error("no ip_list")
			}
			if tt.want != 0 && a.IPList != nil {
				t.Error("error answer carries an ip_list")
			}
		})
	}
	t.Run("40001_names_the_platform's_reason", func(t *testing.T) {
		a := h.callbackIP("nope")
		if !strings.HasPrefix(a.ErrMsg, "invalid credential, access_token is invalid or not latest") {
			t.Errorf("errmsg %q", a.ErrMsg)
		}
	})
}

func TestErrorAnswers(t *testing.T) {
	h := start(t, DefaultConfig())
	t.Run("every_error_carries_a_fresh_rid", func(t *testing.T) {
		a, b := h.callbackIP("x"), h.callbackIP("x")
		wantErr(t, a, 40001)
		wantErr(t, b, 40001)
		if a.ErrMsg == b.ErrMsg {
			t.Errorf("two errors share the rid: %q", a.ErrMsg)
		}
	})
	t.Run("rid_starts_with_the_clock's_time_in_hex", func(t *testing.T) {
		a := h.exchange("unknown")
		rid := a.ErrMsg[strings.LastIndex(a.ErrMsg, "rid: ")+5:]
		at, err := strconv.ParseInt(rid[:8], 16, 64)
		if now := h.sb.Clock().Now().Unix(); err != nil || at > now || at < now-5 {
			t.Errorf("rid %q does not start with the sandbox time %x", rid, now)
		}
	})
	t.Run("unknown_api_paths_are_48001", func(t *testing.T) {
		wantErr(t, h.platform("GET", "/cgi-bin/no/such/api", nil, nil), 48001)
		wantErr(t, h.platform("POST", "/wxa/no_such_api", nil, nil), 48001)
	})
	t.Run("jscode2session_is_labelled_text_plain_like_the_platform's", func(t *testing.T) {
		resp, err := h.srv.Client().Get(h.srv.URL + "/sns/jscode2session?js_code=x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
			t.Errorf("Content-Type %q, want text/plain", ct)
		}
	})
	t.Run("paths_outside_the_api_are_404", func(t *testing.T) {
		req, _ := http.NewRequest("GET", h.srv.URL+"/favicon.ico", nil)
		if status, _ := h.do(req); status != http.StatusNotFound {
			t.Errorf("HTTP %d, want 404", status)
		}
	})
}
