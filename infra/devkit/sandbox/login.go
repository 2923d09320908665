package sandbox

import "net/http"

// platformRoutes maps the platform's paths. Methods are checked by the
// handlers, not the patterns, so that a wrong method gets the platform's
// answer (43002) rather than the mux's 405.
func (s *Sandbox) platformRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/sns/jscode2session", s.handleJSCode2Session)
	mux.HandleFunc("/cgi-bin/token", s.handleToken)
	mux.HandleFunc("/cgi-bin/stable_token", s.handleStableToken)
	mux.HandleFunc("/cgi-bin/getcallbackip", s.handleCallbackIP)
	s.followerRoutes(mux) // users.go
	s.rosterRoutes(mux)   // followers.go
	s.messageRoutes(mux)  // messages.go
	s.phoneRoutes(mux)    // phone.go
	// The platform answers API paths it does not serve to this account with
	// 48001; anything outside the API prefixes is a plain 404.
	for _, prefix := range []string{"/cgi-bin/", "/sns/", "/wxa/", "/datacube/"} {
		mux.HandleFunc(prefix, func(w http.ResponseWriter, r *http.Request) { s.fail(w, 48001) })
	}
	mux.HandleFunc("/", http.NotFound)
	return mux
}

type sessionAnswer struct {
	OpenID     string `json:"openid"`
	SessionKey string `json:"session_key"`
	UnionID    string `json:"unionid,omitempty"`
}

// handleJSCode2Session is GET /sns/jscode2session (code2Session).
func (s *Sandbox) handleJSCode2Session(w http.ResponseWriter, r *http.Request) {
	// The platform labels this answer text/plain although it is JSON;
	// clients that insist on application/json break on it.
	w.Header().Set("Content-Type", "text/plain")
	q := r.URL.Query()
	v, err := s.codeToSession(q.Get("appid"), q.Get("secret"), q.Get("js_code"), q.Get("grant_type"))
	s.answer(w, v, err)
}

func (s *Sandbox) codeToSession(appid, secret, code, grantType string) (sessionAnswer, error) {
	mp := s.ofKind(AppMiniProgram, appid)
	switch {
	case appid == "":
		return sessionAnswer{}, errcode(41002)
	case mp == nil:
		return sessionAnswer{}, errcode(40013)
	case secret == "":
		return sessionAnswer{}, errcode(41004)
	case secret != mp.Secret:
		return sessionAnswer{}, errcode(40125)
	case grantType != "authorization_code":
		return sessionAnswer{}, errcode(40002)
	case code == "":
		return sessionAnswer{}, errcode(41008)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	jc := s.codes[code]
	if jc == nil || jc.appid != appid {
		// A code of another mini program is not one of this app's.
		return sessionAnswer{}, errcode(40029)
	}
	p := s.people[jc.personID]
	// 45011 counts every exchange attempt of the person in the current
	// minute, before the code itself is judged.
	if minute := now.Unix() / 60; p.loginMin != minute {
		p.loginMin, p.loginCalls = minute, 0
	}
	p.loginCalls++
	switch {
	case p.loginCalls > s.cfg.LoginPerMinute:
		return sessionAnswer{}, errcode(45011)
	case jc.used:
		return sessionAnswer{}, errcode(40163)
	case now.Sub(jc.issued) > codeLifetime:
		return sessionAnswer{}, errcode(40029)
	}
	jc.used = true
	m := p.in(appid)
	m.sessionKey = newSessionKey()
	a := sessionAnswer{OpenID: m.openid, SessionKey: m.sessionKey}
	// The default mini program's binding can be switched
	// (SetRevealUnionID); the others' is fixed by their AppSpec.
	if appid == s.cfg.MiniProgram.AppID && s.reveal || appid != s.cfg.MiniProgram.AppID && !mp.unbound {
		a.UnionID = p.UnionID
	}
	return a, nil
}
