package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

const (
	tokenLifetime = 7200 * time.Second
	// tokenOverlap is how long a superseded cgi-bin/token token keeps
	// working, and how early before expiry stable_token rolls over.
	tokenOverlap = 5 * time.Minute
	// forceInterval is the least time between two stable_token force
	// refreshes of one app.
	forceInterval = 30 * time.Second
)

// account is the platform's state for one app.
type account struct {
	App
	kind    AppKind
	unbound bool // not bound to the open platform: reveals no unionid

	// cgi-bin/token family.
	tokenDay   string
	tokenCalls int
	latest     *accessToken
	previous   *accessToken // superseded by latest, in its overlap

	// stable_token family, independent of the one above.
	stable     *accessToken
	stableOld  *accessToken // rolled over by stable, valid to its own expiry
	forceDay   string
	forceCalls int
	lastForce  time.Time
}

// accessToken is an issued access token of either family.
type accessToken struct {
	value   string
	appid   string
	expires time.Time
	revoked time.Time // when a newer token superseded it; zero if never
}

// supersede makes t stop working at at, unless it already stops earlier.
// A token superseded at or after its expiry simply expires.
func (t *accessToken) supersede(at time.Time) {
	if at.After(t.expires) {
		at = t.expires
	}
	if t.revoked.IsZero() || at.Before(t.revoked) {
		t.revoked = at
	}
}

// superseded reports whether t no longer works at now because a newer token
// replaced it (40001), as opposed to having expired (42001).
func (t *accessToken) superseded(now time.Time) bool {
	return !t.revoked.IsZero() && t.revoked.Before(t.expires) && !now.Before(t.revoked)
}

func (t *accessToken) live(now time.Time) bool {
	return !t.superseded(now) && now.Before(t.expires)
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
}

// remaining is expires_in for t at now, in whole seconds, rounded down so
// that a client never believes a token lives longer than it does.
func remaining(t *accessToken, now time.Time) tokenAnswer {
	return tokenAnswer{AccessToken: t.value, ExpiresIn: int(t.expires.Sub(now) / time.Second)}
}

// mint issues a new token for appid. The caller holds s.mu.
func (s *Sandbox) mint(appid string, now time.Time) *accessToken {
	t := &accessToken{appid: appid, expires: now.Add(tokenLifetime)}
	for t.value == "" || s.tokens[t.value] != nil {
		t.value = randomB64(136) // the platform asks for 512 characters of storage
	}
	s.tokens[t.value] = t
	return t
}

// credentials checks the client_credential triple of both token endpoints.
// The accounts map is fixed after New, so no lock is needed. Website and
// mobile apps have no API access token: their calls come with the user's
// web token (sns/*).
func (s *Sandbox) credentials(grantType, appid, secret string) (*account, error) {
	a := s.apps[appid]
	if a != nil && a.kind != AppMiniProgram && a.kind != AppOfficialAccount {
		a = nil
	}
	switch {
	case grantType != "client_credential":
		return nil, errcode(40002)
	case appid == "":
		return nil, errcode(41002)
	case a == nil:
		return nil, errcode(40013)
	case secret == "":
		return nil, errcode(41004)
	case secret != a.Secret:
		return nil, errcode(40125)
	}
	return a, nil
}

// handleToken is GET /cgi-bin/token (getAccessToken).
func (s *Sandbox) handleToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a, err := s.credentials(q.Get("grant_type"), q.Get("appid"), q.Get("secret"))
	if err == nil {
		err = s.tokenGate(a, classicCall)
	}
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	v, err := s.issueToken(a)
	s.answer(w, v, err)
}

// issueToken issues a new cgi-bin/token token. The one it replaces keeps
// working for tokenOverlap (never past its own expiry); any older one stops
// now.
func (s *Sandbox) issueToken(a *account) (tokenAnswer, error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if day := platformDay(now); a.tokenDay != day {
		a.tokenDay, a.tokenCalls = day, 0
	}
	if a.tokenCalls >= s.cfg.TokenDailyQuota {
		return tokenAnswer{}, errcode(45009)
	}
	a.tokenCalls++
	t := s.mint(a.AppID, now)
	if a.previous != nil {
		a.previous.supersede(now)
	}
	if a.latest != nil {
		a.latest.supersede(now.Add(tokenOverlap))
	}
	a.previous, a.latest = a.latest, t
	return remaining(t, now), nil
}

type stableRequest struct {
	GrantType    string `json:"grant_type"`
	AppID        string `json:"appid"`
	Secret       string `json:"secret"`
	ForceRefresh bool   `json:"force_refresh"`
}

// handleStableToken is POST /cgi-bin/stable_token (getStableAccessToken).
func (s *Sandbox) handleStableToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.fail(w, 43002)
		return
	}
	var req stableRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	switch {
	case err != nil || len(body) == 0:
		s.fail(w, 44002)
		return
	case json.Unmarshal(body, &req) != nil:
		s.fail(w, 47001)
		return
	}
	a, err := s.credentials(req.GrantType, req.AppID, req.Secret)
	if err == nil {
		kind := stableCall
		if req.ForceRefresh {
			kind = forcedCall
		}
		err = s.tokenGate(a, kind)
	}
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	if req.ForceRefresh {
		v, err := s.forceStableToken(a)
		s.answer(w, v, err)
		return
	}
	s.answer(w, s.stableToken(a), nil)
}

// stableToken is normal mode: every caller gets the current token and its
// remaining lifetime. A new one is issued only when there is none, or the
// current one is gone or has less than tokenOverlap left; the old one then
// keeps working until its own expiry, so callers cannot break each other.
func (s *Sandbox) stableToken(a *account) tokenAnswer {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := a.stable; cur == nil || !cur.live(now) || cur.expires.Sub(now) < tokenOverlap {
		a.stableOld, a.stable = a.stable, s.mint(a.AppID, now)
	}
	return remaining(a.stable, now)
}

// errForceTooSoon is the answer to a force refresh less than forceInterval
// after the previous one. The documentation only says such a call "does not
// refresh"; the sandbox answers the frequency errcode the page lists, 45011.
var errForceTooSoon = errcode(45011)

// forceStableToken is force_refresh mode: limited per day and spaced by
// forceInterval, it issues a new token and invalidates the app's earlier
// stable tokens at once (it exists to kill a leaked token).
func (s *Sandbox) forceStableToken(a *account) (tokenAnswer, error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if day := platformDay(now); a.forceDay != day {
		a.forceDay, a.forceCalls = day, 0
	}
	if a.forceCalls >= s.cfg.ForceDailyQuota {
		return tokenAnswer{}, errcode(45009)
	}
	if since := now.Sub(a.lastForce); !a.lastForce.IsZero() && since >= 0 && since < forceInterval {
		return tokenAnswer{}, errForceTooSoon
	}
	a.forceCalls++
	a.lastForce = now
	for _, old := range []*accessToken{a.stable, a.stableOld} {
		if old != nil {
			old.supersede(now)
		}
	}
	a.stableOld, a.stable = nil, s.mint(a.AppID, now)
	return remaining(a.stable, now), nil
}

// authorize is the access-token check of every API that takes one: it
// returns the app the token belongs to, or the platform's answer for a
// missing (41001), unknown or superseded (40001) or expired (42001) token.
func (s *Sandbox) authorize(r *http.Request) (App, error) {
	token := r.URL.Query().Get("access_token")
	if token == "" {
		return App{}, errcode(41001)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[token]
	switch {
	case t == nil || t.superseded(now):
		return App{}, errcode(40001)
	case !now.Before(t.expires):
		return App{}, errcode(42001)
	}
	return s.apps[t.appid].App, nil
}

// callbackIPs are the addresses the sandbox's pushes come from.
var callbackIPs = []string{"127.0.0.1", "::1"}

// handleCallbackIP is GET /cgi-bin/getcallbackip.
func (s *Sandbox) handleCallbackIP(w http.ResponseWriter, r *http.Request) {
	if _, err := s.authorize(r); err != nil {
		s.answer(w, nil, err)
		return
	}
	s.answer(w, struct {
		IPList []string `json:"ip_list"`
	}{callbackIPs}, nil)
}
