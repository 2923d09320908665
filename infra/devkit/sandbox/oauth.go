package sandbox

import (
	"errors"
	"net/http"
	"time"
)

// Web OAuth of the official accounts, QR login of the website apps and the
// mobile apps' SDK login: the authorize and qrconnect pages on
// open.weixin.qq.com (oauth_page.go) and AppLoginCode issue codes, and the
// sns endpoints exchange them for web grants and read the profile.

const (
	scopeBase     = "snsapi_base"
	scopeUserInfo = "snsapi_userinfo"
	scopeLogin    = "snsapi_login" // a website app's QR login

	// oauthCodeLifetime is how long an official account's authorize code
	// can be exchanged.
	oauthCodeLifetime = 5 * time.Minute
	// openCodeLifetime is how long a website or mobile app's code can be
	// exchanged: the open platform's codes live 10 minutes.
	openCodeLifetime = 10 * time.Minute
	// webTokenLifetime is a web access token's life.
	webTokenLifetime = 7200 * time.Second
	// refreshLifetime is a refresh token's life, counted from the consent;
	// refreshing does not extend it.
	refreshLifetime = 30 * 24 * time.Hour
)

// oauthBook is the platform's web OAuth state. Sandbox.mu guards it; its
// maps are made on first use.
type oauthBook struct {
	codes   map[string]*oauthCode
	grants  map[string]*webGrant // by access token
	refresh map[string]*webGrant // by refresh token: the grant it renews
	issued  int                  // codes issued, to pace pruning
}

// oauthCode is an authorize code: it works once, for its app's lifetime
// (codeLife), at the app it was issued for.
type oauthCode struct {
	personID string // empty for an anonymous snapshot visitor
	appid    string
	scope    string
	snapshot bool
	issued   time.Time
	used     bool
}

// webGrant is what a web token speaks for. The same value backs an access
// token (expires: that token's end) and a refresh token (expires: 30 days
// after the consent).
type webGrant struct {
	personID string
	appid    string
	openid   string
	unionid  string
	scope    string
	snapshot bool
	expires  time.Time
}

// OAuthConsent is what a person does on the authorize page of an official
// account or the QR-login page of a website app.
type OAuthConsent struct {
	// AppID is the official account or website app asking; "" is the
	// default official account (the default website app for snsapi_login).
	AppID  string
	Person string // the person's ID; may be empty for a Snapshot visitor
	// Scope is snsapi_base or snsapi_userinfo for an official account,
	// snsapi_login for a website app.
	Scope string
	// Snapshot plays the platform's snapshot mode: the page is browsed by a
	// virtual account, whose openid and unionid belong to nobody.
	Snapshot bool
}

// ErrScope reports a scope the platform does not know, or not for this
// kind of app.
var ErrScope = errors.New("sandbox: scope must be snsapi_base or snsapi_userinfo (official account) or snsapi_login (website app)")

// OAuthCode plays the authorize page (or a website app's QR-login page) for
// c: the code the platform appends to redirect_uri once the person has
// consented (at once for snsapi_base).
func (s *Sandbox) OAuthCode(c OAuthConsent) (string, error) {
	kind := AppOfficialAccount
	if c.Scope == scopeLogin {
		kind = AppWebsite
	}
	a, err := s.app(kind, c.AppID)
	switch {
	case errors.Is(err, ErrAppKind):
		return "", ErrScope
	case err != nil:
		return "", err
	case c.Scope != scopeBase && c.Scope != scopeUserInfo && c.Scope != scopeLogin:
		return "", ErrScope
	case c.Snapshot && kind != AppOfficialAccount:
		return "", errors.New("sandbox: snapshot mode is an official account's")
	}
	return s.issueOAuthCode(a.AppID, c.Person, c.Scope, c.Snapshot)
}

// AppLoginCode plays person id logging in to mobile app appid ("" the
// default) through WeChat's SDK and consenting: the code the SDK hands the
// app, exchanged at sns/oauth2/access_token with the mobile app's
// credentials. It works once, for 10 minutes (the open platform's code
// lifetime).
func (s *Sandbox) AppLoginCode(id, appid string) (string, error) {
	a, err := s.app(AppMobile, appid)
	if err != nil {
		return "", err
	}
	// The SDK asks for snsapi_userinfo, the only scope it takes.
	return s.issueOAuthCode(a.AppID, id, scopeUserInfo, false)
}

// issueOAuthCode issues a code of appid for person (s.mu not held).
func (s *Sandbox) issueOAuthCode(appid, personID, scope string, snapshot bool) (string, error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.people[personID]; !ok && !(snapshot && personID == "") {
		return "", ErrNoPerson
	}
	b := &s.oauth
	if b.codes == nil {
		b.codes = make(map[string]*oauthCode)
		b.grants = make(map[string]*webGrant)
		b.refresh = make(map[string]*webGrant)
	}
	b.issued++
	if b.issued%256 == 0 {
		b.prune(now)
	}
	code := ""
	for code == "" || b.codes[code] != nil {
		code = randomAlnum(32)
	}
	b.codes[code] = &oauthCode{personID: personID, appid: appid, scope: scope, snapshot: snapshot, issued: now}
	return code, nil
}

// codeLife is how long a code of a lives.
func codeLife(a *account) time.Duration {
	if a.kind == AppOfficialAccount {
		return oauthCodeLifetime
	}
	return openCodeLifetime
}

// webApp is the app appid if it exchanges codes at sns/oauth2: an official
// account, a website app or a mobile app.
func (s *Sandbox) webApp(appid string) *account {
	a := s.apps[appid]
	if a == nil || a.kind == AppMiniProgram {
		return nil
	}
	return a
}

// prune forgets codes long past their lifetime and grants past their
// expiry; a forgotten used code then answers 40029 rather than 40163.
func (b *oauthBook) prune(now time.Time) {
	for c, oc := range b.codes {
		if now.Sub(oc.issued) > 2*openCodeLifetime {
			delete(b.codes, c)
		}
	}
	for t, g := range b.grants {
		if now.After(g.expires) {
			delete(b.grants, t)
		}
	}
	for t, g := range b.refresh {
		if now.After(g.expires) {
			delete(b.refresh, t)
		}
	}
}

// oauthRoutes adds the web OAuth paths to the platform's mux.
func (s *Sandbox) oauthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/connect/oauth2/authorize", s.handleAuthorize)
	mux.HandleFunc("/connect/qrconnect", s.handleQRConnect)
	mux.HandleFunc("/sns/oauth2/access_token", s.handleOAuthToken)
	mux.HandleFunc("/sns/oauth2/refresh_token", s.handleOAuthRefresh)
	mux.HandleFunc("/sns/userinfo", s.handleSNSUserInfo)
}

type webTokenAnswer struct {
	AccessToken    string `json:"access_token"`
	ExpiresIn      int    `json:"expires_in"`
	RefreshToken   string `json:"refresh_token"`
	OpenID         string `json:"openid"`
	Scope          string `json:"scope"`
	IsSnapshotUser int    `json:"is_snapshotuser,omitempty"`
	UnionID        string `json:"unionid,omitempty"`
}

// handleOAuthToken is GET /sns/oauth2/access_token (snsAccessToken).
func (s *Sandbox) handleOAuthToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v, err := s.oauthExchange(q.Get("appid"), q.Get("secret"), q.Get("code"), q.Get("grant_type"))
	s.answer(w, v, err)
}

func (s *Sandbox) oauthExchange(appid, secret, code, grantType string) (webTokenAnswer, error) {
	a := s.webApp(appid)
	switch {
	case appid == "":
		return webTokenAnswer{}, errcode(41002)
	case a == nil:
		return webTokenAnswer{}, errcode(40013)
	case secret == "":
		return webTokenAnswer{}, errcode(41004)
	case secret != a.Secret:
		return webTokenAnswer{}, errcode(40125)
	case grantType != "authorization_code":
		return webTokenAnswer{}, errcode(40002)
	case code == "":
		return webTokenAnswer{}, errcode(41008)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	oc := s.oauth.codes[code]
	switch {
	case oc == nil || oc.appid != appid: // another app's code is no code of this one
		return webTokenAnswer{}, errcode(40029)
	case oc.used:
		return webTokenAnswer{}, errcode(40163)
	case now.Sub(oc.issued) > codeLife(a):
		return webTokenAnswer{}, errcode(40029)
	}
	oc.used = true
	g := webGrant{personID: oc.personID, appid: appid, scope: oc.scope, snapshot: oc.snapshot}
	if oc.snapshot {
		// Virtual account data: an openid (and unionid) of nobody, new for
		// every visit.
		g.openid = openID(appid)
		g.unionid = "oU" + randomB64(26)
	} else {
		p := s.people[oc.personID]
		g.openid, g.unionid = p.in(appid).openid, unionIDFor(a, p)
	}
	refresh := g
	refresh.expires = now.Add(refreshLifetime)
	rt := s.newWebToken(s.oauth.refresh)
	s.oauth.refresh[rt] = &refresh
	out := s.grant(g, now)
	out.RefreshToken = rt
	// The platform returns the unionid here only with the profile scopes
	// (snsapi_userinfo, and a website app's snsapi_login).
	if g.scope == scopeBase {
		out.UnionID = ""
	}
	return out, nil
}

// grant issues a web access token for g. The caller holds s.mu.
func (s *Sandbox) grant(g webGrant, now time.Time) webTokenAnswer {
	g.expires = now.Add(webTokenLifetime)
	at := s.newWebToken(s.oauth.grants)
	s.oauth.grants[at] = &g
	a := webTokenAnswer{AccessToken: at, ExpiresIn: int(webTokenLifetime / time.Second), OpenID: g.openid, Scope: g.scope, UnionID: g.unionid}
	if g.snapshot {
		a.IsSnapshotUser = 1
	}
	return a
}

// newWebToken returns a value not yet in m. Web tokens look like the
// platform's: about 90 characters of base64url.
func (s *Sandbox) newWebToken(m map[string]*webGrant) string {
	t := ""
	for t == "" || m[t] != nil {
		t = randomB64(88)
	}
	return t
}

// handleOAuthRefresh is GET /sns/oauth2/refresh_token (snsRefreshToken).
func (s *Sandbox) handleOAuthRefresh(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v, err := s.oauthRefresh(q.Get("appid"), q.Get("grant_type"), q.Get("refresh_token"))
	s.answer(w, v, err)
}

func (s *Sandbox) oauthRefresh(appid, grantType, refreshToken string) (webTokenAnswer, error) {
	switch {
	case appid == "":
		return webTokenAnswer{}, errcode(41002)
	case s.webApp(appid) == nil:
		return webTokenAnswer{}, errcode(40013)
	case grantType != "refresh_token":
		return webTokenAnswer{}, errcode(40002)
	case refreshToken == "":
		return webTokenAnswer{}, errcode(41003)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.oauth.refresh[refreshToken]
	switch {
	case g == nil || g.appid != appid:
		return webTokenAnswer{}, errcode(40030)
	case !now.Before(g.expires):
		return webTokenAnswer{}, errcode(42002)
	}
	// A new access token; earlier ones keep working to their own expiry.
	// The refresh token stays the same and keeps its 30-day end.
	a := s.grant(*g, now)
	a.RefreshToken = refreshToken
	a.UnionID = "" // the refresh answer carries no unionid
	return a, nil
}

type snsUserInfoAnswer struct {
	OpenID     string   `json:"openid"`
	Nickname   string   `json:"nickname"`
	Sex        int      `json:"sex"`
	Province   string   `json:"province"`
	City       string   `json:"city"`
	Country    string   `json:"country"`
	HeadImgURL string   `json:"headimgurl"`
	Privilege  []string `json:"privilege"`
	UnionID    string   `json:"unionid,omitempty"`
}

// handleSNSUserInfo is GET /sns/userinfo (snsUserInfo).
func (s *Sandbox) handleSNSUserInfo(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v, err := s.snsUserInfo(q.Get("access_token"), q.Get("openid"))
	s.answer(w, v, err)
}

func (s *Sandbox) snsUserInfo(token, openid string) (snsUserInfoAnswer, error) {
	if token == "" {
		return snsUserInfoAnswer{}, errcode(41001)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.oauth.grants[token]
	switch {
	case g == nil:
		return snsUserInfoAnswer{}, errcode(40001)
	case !now.Before(g.expires):
		return snsUserInfoAnswer{}, errcode(42001)
	case openid == "":
		return snsUserInfoAnswer{}, errcode(41009)
	case openid != g.openid:
		return snsUserInfoAnswer{}, errcode(40003)
	case g.scope == scopeBase || g.snapshot:
		// A silent grant reads no profile; nor does a snapshot visitor.
		return snsUserInfoAnswer{}, errcode(48001)
	}
	p := s.people[g.personID]
	// Since October 2021 the platform sends sex 0 and no region.
	return snsUserInfoAnswer{
		OpenID:     g.openid,
		Nickname:   p.Nickname,
		HeadImgURL: p.profile.AvatarURL,
		Privilege:  []string{},
		UnionID:    g.unionid,
	}, nil
}
