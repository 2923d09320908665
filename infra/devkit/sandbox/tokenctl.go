package sandbox

import (
	"errors"
	"net/http"
)

// tokenControl is what the token tests steer and measure per app: an errcode
// the token endpoints answer on demand (40164 IP not whitelisted, 89503 IP
// risk, 45009 quota, ...) and how many token-endpoint calls each app made.
type tokenControl struct {
	errs  map[string]int         // appid -> errcode
	calls map[string]*TokenCalls // appid -> counts
}

// TokenCalls counts an app's calls to the token endpoints that passed the
// credential check, whatever they were answered; calls with wrong
// credentials and calls answered by a Fault are not counted here (Calls
// counts them by path).
type TokenCalls struct {
	Token  int `json:"token"`  // GET /cgi-bin/token
	Stable int `json:"stable"` // POST /cgi-bin/stable_token in normal mode
	Forced int `json:"forced"` // POST /cgi-bin/stable_token with force_refresh
}

// Total is every token-endpoint call counted.
func (c TokenCalls) Total() int { return c.Token + c.Stable + c.Forced }

// ErrNoApp reports an appid that is neither of the sandbox's accounts.
var ErrNoApp = errors.New("sandbox: no such app")

type tokenCallKind int

const (
	classicCall tokenCallKind = iota
	stableCall
	forcedCall
)

// tokenGate counts a token-endpoint call of a and returns the errcode armed
// with SetTokenError, if any. An armed error consumes no quota and
// invalidates nothing, as on the platform, which checks the IP before
// issuing anything.
func (s *Sandbox) tokenGate(a *account, kind tokenCallKind) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.tokenctl.calls[a.AppID]
	if c == nil {
		if s.tokenctl.calls == nil {
			s.tokenctl.calls = map[string]*TokenCalls{}
		}
		c = &TokenCalls{}
		s.tokenctl.calls[a.AppID] = c
	}
	switch kind {
	case classicCall:
		c.Token++
	case stableCall:
		c.Stable++
	case forcedCall:
		c.Forced++
	}
	if code := s.tokenctl.errs[a.AppID]; code != 0 {
		return errcode(code)
	}
	return nil
}

// SetTokenError makes both token endpoints answer errcode to appid until it
// is set to 0: 40164 for a caller outside the IP whitelist, 89503 for an IP
// pending risk confirmation, 45009 for an exhausted quota. Unlike a Fault,
// it hits one app only and counts in TokenCalls.
func (s *Sandbox) SetTokenError(appid string, errcode int) error {
	if s.apps[appid] == nil {
		return ErrNoApp
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokenctl.errs == nil {
		s.tokenctl.errs = map[string]int{}
	}
	if errcode == 0 {
		delete(s.tokenctl.errs, appid)
	} else {
		s.tokenctl.errs[appid] = errcode
	}
	return nil
}

// TokenCalls reports appid's token-endpoint calls so far.
func (s *Sandbox) TokenCalls(appid string) TokenCalls {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.tokenctl.calls[appid]; c != nil {
		return *c
	}
	return TokenCalls{}
}

// RevokeTokens invalidates every working access token of appid, of both
// families, at once: calls with them answer 40001 from now on, as they do
// after a leak is cut off elsewhere. It issues no replacement and reports
// how many tokens it revoked.
func (s *Sandbox) RevokeTokens(appid string) (int, error) {
	if s.apps[appid] == nil {
		return 0, ErrNoApp
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.tokens {
		if t.appid == appid && t.live(now) {
			t.supersede(now)
			n++
		}
	}
	return n, nil
}

// tokenControlRoutes adds the token controls to the control API.
func (s *Sandbox) tokenControlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /sandbox/apps/{appid}/revoke-tokens", s.postRevokeTokens)
	mux.HandleFunc("POST /sandbox/apps/{appid}/token-error", s.postTokenError)
	mux.HandleFunc("GET /sandbox/apps/{appid}/token-calls", s.getTokenCalls)
}

func (s *Sandbox) postRevokeTokens(w http.ResponseWriter, r *http.Request) {
	n, err := s.RevokeTokens(r.PathValue("appid"))
	if err != nil {
		controlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (s *Sandbox) postTokenError(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ErrCode *int `json:"errcode"`
	}
	if err := decodeBody(r, &req); err != nil || req.ErrCode == nil {
		controlError(w, http.StatusBadRequest, `want {"errcode": N} (0 clears)`)
		return
	}
	if err := s.SetTokenError(r.PathValue("appid"), *req.ErrCode); err != nil {
		controlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"errcode": *req.ErrCode})
}

func (s *Sandbox) getTokenCalls(w http.ResponseWriter, r *http.Request) {
	appid := r.PathValue("appid")
	if s.apps[appid] == nil {
		controlError(w, http.StatusNotFound, ErrNoApp.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.TokenCalls(appid))
}
