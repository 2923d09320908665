package sandbox

import (
	"errors"
	"net/http"
	"time"
)

// Web OAuth of the official account: the authorize page on
// open.weixin.qq.com (oauth_page.go) issues codes, and the sns endpoints
// exchange them for web grants and read the profile.

const (
	scopeBase     = "snsapi_base"
	scopeUserInfo = "snsapi_userinfo"

	// oauthCodeLifetime is how long an authorize code can be exchanged.
	oauthCodeLifetime = 5 * time.Minute
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

// oauthCode is an authorize code: it works once, for oauthCodeLifetime.
type oauthCode struct {
	personID string // empty for an anonymous snapshot visitor
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
	openid   string
	unionid  string
	scope    string
	snapshot bool
	expires  time.Time
}

// OAuthConsent is what a person does on the authorize page.
type OAuthConsent struct {
	Person string // the person's ID; may be empty for a Snapshot visitor
	Scope  string // snsapi_base or snsapi_userinfo
	// Snapshot plays the platform's snapshot mode: the page is browsed by a
	// virtual account, whose openid and unionid belong to nobody.
	Snapshot bool
}

// ErrScope reports a scope the platform does not know.
var ErrScope = errors.New("sandbox: scope must be snsapi_base or snsapi_userinfo")

// OAuthCode plays the authorize page for c: the code the platform appends
// to redirect_uri once the person has consented (at once for snsapi_base).
func (s *Sandbox) OAuthCode(c OAuthConsent) (string, error) {
	if c.Scope != scopeBase && c.Scope != scopeUserInfo {
		return "", ErrScope
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.people[c.Person]; !ok && !(c.Snapshot && c.Person == "") {
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
	b.codes[code] = &oauthCode{personID: c.Person, scope: c.Scope, snapshot: c.Snapshot, issued: now}
	return code, nil
}

// prune forgets codes long past their lifetime and grants past their
// expiry; a forgotten used code then answers 40029 rather than 40163.
func (b *oauthBook) prune(now time.Time) {
	for c, oc := range b.codes {
		if now.Sub(oc.issued) > 2*oauthCodeLifetime {
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
	oa := s.cfg.OfficialAccount
	switch {
	case appid == "":
		return webTokenAnswer{}, errcode(41002)
	case appid != oa.AppID:
		return webTokenAnswer{}, errcode(40013)
	case secret == "":
		return webTokenAnswer{}, errcode(41004)
	case secret != oa.Secret:
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
	case oc == nil:
		return webTokenAnswer{}, errcode(40029)
	case oc.used:
		return webTokenAnswer{}, errcode(40163)
	case now.Sub(oc.issued) > oauthCodeLifetime:
		return webTokenAnswer{}, errcode(40029)
	}
	oc.used = true
	g := webGrant{personID: oc.personID, scope: oc.scope, snapshot: oc.snapshot}
	if oc.snapshot {
		// Virtual account data: an openid (and unionid) of nobody, new for
		// every visit.
		g.openid = openID(oa.AppID)
		g.unionid = "oU" + randomB64(26)
	} else {
		p := s.people[oc.personID]
		g.openid, g.unionid = p.OAOpenID, p.UnionID
	}
	refresh := g
	refresh.expires = now.Add(refreshLifetime)
	rt := s.newWebToken(s.oauth.refresh)
	s.oauth.refresh[rt] = &refresh
	a := s.grant(g, now)
	a.RefreshToken = rt
	// The platform returns the unionid here only for snsapi_userinfo.
	if g.scope != scopeUserInfo {
		a.UnionID = ""
	}
	return a, nil
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
	case appid != s.cfg.OfficialAccount.AppID:
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
	case g == nil:
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
	case g.scope != scopeUserInfo || g.snapshot:
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
