package sandbox

import (
	"net/http"
	"testing"
)

func TestRevokeTokens(t *testing.T) {
	h := start(t, DefaultConfig())
	oa, mp := DevOfficialAccount, DevMiniProgram
	stable := h.stable(oa, false)
	classic := h.token(oa)
	other := h.stable(mp, false)
	wantOK(t, stable)
	wantOK(t, classic)

	var got map[string]int
	h.control("POST", "/sandbox/apps/"+oa.AppID+"/revoke-tokens", nil, http.StatusOK, &got)
	if got["revoked"] != 2 {
		t.Fatalf("revoked %v, want the stable and the classic token", got)
	}
	wantErr(t, h.callbackIP(stable.AccessToken), 40001)
	wantErr(t, h.callbackIP(classic.AccessToken), 40001)
	wantOK(t, h.callbackIP(other.AccessToken)) // the other app is untouched

	// A forced refresh issues a working token again; so does normal mode,
	// since the current stable token is gone.
	forced := h.stable(oa, true)
	wantOK(t, forced)
	wantOK(t, h.callbackIP(forced.AccessToken))

	h.control("POST", "/sandbox/apps/wx0000000000000000/revoke-tokens", nil, http.StatusNotFound, nil)
}

func TestTokenError(t *testing.T) {
	h := start(t, DefaultConfig())
	oa, mp := DevOfficialAccount, DevMiniProgram
	before := h.stable(oa, false)
	wantOK(t, before)

	h.control("POST", "/sandbox/apps/"+oa.AppID+"/token-error", map[string]int{"errcode": 40164}, http.StatusOK, nil)
	wantErr(t, h.stable(oa, false), 40164)
	wantErr(t, h.stable(oa, true), 40164)
	wantErr(t, h.token(oa), 40164)
	wantOK(t, h.stable(mp, false)) // one app only
	// Refused calls issue and invalidate nothing, and use no force quota.
	wantOK(t, h.callbackIP(before.AccessToken))

	var calls TokenCalls
	h.control("GET", "/sandbox/apps/"+oa.AppID+"/token-calls", nil, http.StatusOK, &calls)
	if calls != (TokenCalls{Token: 1, Stable: 2, Forced: 1}) || calls.Total() != 4 {
		t.Fatalf("token calls %+v", calls)
	}
	// Wrong credentials are answered before the gate and not counted.
	wantErr(t, h.stable(App{AppID: oa.AppID, Secret: "wrong"}, false), 40125)
	if c := h.sb.TokenCalls(oa.AppID); c.Total() != 4 {
		t.Fatalf("token calls %+v after a wrong secret", c)
	}

	h.control("POST", "/sandbox/apps/"+oa.AppID+"/token-error", map[string]int{"errcode": 0}, http.StatusOK, nil)
	after := h.stable(oa, false)
	wantOK(t, after)
	if after.AccessToken != before.AccessToken {
		t.Fatal("normal mode changed the token after the error was cleared")
	}
	for i := range 20 {
		if a := h.stable(oa, true); a.ErrCode != 0 {
			t.Fatalf("force %d after the 40164s: %d (the refused ones must not count)", i+1, a.ErrCode)
		}
		h.sb.Clock().Advance(forceInterval)
	}

	h.control("POST", "/sandbox/apps/"+oa.AppID+"/token-error", map[string]string{}, http.StatusBadRequest, nil)
	h.control("POST", "/sandbox/apps/wx0000000000000000/token-error", map[string]int{"errcode": 1}, http.StatusNotFound, nil)
	h.control("GET", "/sandbox/apps/wx0000000000000000/token-calls", nil, http.StatusNotFound, nil)
}
