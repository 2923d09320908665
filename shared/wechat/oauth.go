package wechat

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// The scopes of an official account's web OAuth.
const (
	// ScopeBase is silent and yields the openid only.
	ScopeBase = "snsapi_base"
	// ScopeUserInfo shows a consent page and yields the profile and, for an
	// account bound to the open platform, the unionid.
	ScopeUserInfo = "snsapi_userinfo"
	// ScopeLogin is a website app's QR login (open platform): the user scans
	// a QR code on the connect page and consents on the phone. The grant
	// carries the unionid for an app bound to the open platform.
	ScopeLogin = "snsapi_login"
)

// MaxStateLen is the longest state the authorize page carries back; it must
// be letters and digits only.
const MaxStateLen = 128

// AuthorizeURL returns the page to send a browser to for an official
// account's web OAuth (the platform asks for consent, ScopeUserInfo, or
// not, ScopeBase) or a website app's QR login (ScopeLogin), and which
// redirects to redirectURI?code=CODE&state=STATE, or
// redirectURI?state=STATE when the user refuses.
func (c *Client) AuthorizeURL(appid, redirectURI, scope, state string) (string, error) {
	switch {
	case appid == "":
		return "", fmt.Errorf("wechat authorize: empty appid")
	case scope != ScopeBase && scope != ScopeUserInfo && scope != ScopeLogin:
		return "", fmt.Errorf("wechat authorize: unknown scope %q", scope)
	case len(state) > MaxStateLen || !alnumOnly(state):
		return "", fmt.Errorf("wechat authorize: state must be at most %d letters and digits", MaxStateLen)
	}
	u, err := url.Parse(redirectURI)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("wechat authorize: redirect_uri must be an absolute http(s) URL")
	}
	// The platform matches the link against a strict pattern: parameters in
	// this order, and the #wechat_redirect fragment; links that differ get
	// an error page instead of the consent page. A website app's QR login
	// has its own page, qrconnect, with the same parameters.
	page := "/connect/oauth2/authorize"
	if scope == ScopeLogin {
		page = "/connect/qrconnect"
	}
	return c.openBase + page +
		"?appid=" + url.QueryEscape(appid) +
		"&redirect_uri=" + url.QueryEscape(redirectURI) +
		"&response_type=code" +
		"&scope=" + scope +
		"&state=" + state +
		"#wechat_redirect", nil
}

func alnumOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// WebToken is a web OAuth grant: a user-level token that reads only that
// user's information. It is not the account's API access token.
type WebToken struct {
	AccessToken  string
	ExpiresIn    time.Duration
	RefreshToken string // renews AccessToken for 30 days from the consent
	OpenID       string // the user's openid in the official account
	Scope        string // what the user granted, comma-separated
	// UnionID comes only with ScopeUserInfo, and only for an account bound
	// to the open platform.
	UnionID string
	// Snapshot marks a visitor in the platform's snapshot mode
	// (is_snapshotuser=1): OpenID and UnionID are virtual and must not be
	// stored as a person.
	Snapshot bool
}

// HasScope reports whether the grant includes scope.
func (t WebToken) HasScope(scope string) bool {
	for s := range strings.SplitSeq(t.Scope, ",") {
		if strings.TrimSpace(s) == scope {
			return true
		}
	}
	return false
}

// String formats the grant with both tokens redacted.
func (t WebToken) String() string {
	return fmt.Sprintf("WebToken{OpenID:%s UnionID:%s Scope:%s Snapshot:%t AccessToken:%s RefreshToken:%s ExpiresIn:%s}",
		t.OpenID, t.UnionID, t.Scope, t.Snapshot, redactedIfSet(t.AccessToken), redactedIfSet(t.RefreshToken), t.ExpiresIn)
}

// GoString keeps %#v from printing the tokens.
func (t WebToken) GoString() string { return "wechat." + t.String() }

// LogValue logs the grant with both tokens redacted.
func (t WebToken) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("openid", t.OpenID),
		slog.String("unionid", t.UnionID),
		slog.String("scope", t.Scope),
		slog.Bool("snapshot", t.Snapshot),
		slog.String("access_token", redactedIfSet(t.AccessToken)),
		slog.String("refresh_token", redactedIfSet(t.RefreshToken)),
	)
}

type webTokenAnswer struct {
	AccessToken    string `json:"access_token"`
	ExpiresIn      int64  `json:"expires_in"`
	RefreshToken   string `json:"refresh_token"`
	OpenID         string `json:"openid"`
	Scope          string `json:"scope"`
	UnionID        string `json:"unionid"`
	IsSnapshotUser int    `json:"is_snapshotuser"`
}

func (r webTokenAnswer) token(api string) (WebToken, error) {
	if r.AccessToken == "" || r.OpenID == "" || r.ExpiresIn <= 0 {
		return WebToken{}, &transportError{api: api, what: "answer without access_token, openid or expires_in"}
	}
	return WebToken{
		AccessToken:  r.AccessToken,
		ExpiresIn:    time.Duration(r.ExpiresIn) * time.Second,
		RefreshToken: r.RefreshToken,
		OpenID:       r.OpenID,
		Scope:        r.Scope,
		UnionID:      r.UnionID,
		Snapshot:     r.IsSnapshotUser == 1,
	}, nil
}

// OAuthToken exchanges the code the authorize page handed to the callback
// for the user's web grant. Codes work once, for 5 minutes (40029, 40163).
// GET /sns/oauth2/access_token.
func (c *Client) OAuthToken(ctx context.Context, appid, secret, code string) (WebToken, error) {
	const api = "/sns/oauth2/access_token"
	if err := requireCredentials(api, appid, secret); err != nil {
		return WebToken{}, err
	}
	if code == "" {
		return WebToken{}, fmt.Errorf("wechat %s: empty code", api)
	}
	if len(code) > maxCodeLen {
		return WebToken{}, fmt.Errorf("wechat %s: code longer than %d bytes", api, maxCodeLen)
	}
	q := url.Values{
		"appid":      {appid},
		"secret":     {secret},
		"code":       {code},
		"grant_type": {"authorization_code"},
	}
	var r webTokenAnswer
	if err := c.get(ctx, api, q, &r); err != nil {
		return WebToken{}, err
	}
	return r.token(api)
}

// RefreshOAuthToken renews a web grant's access token with its refresh
// token, which lives 30 days from the consent (40030 invalid, 42002
// expired: the user must consent again). The call takes no secret.
// GET /sns/oauth2/refresh_token.
func (c *Client) RefreshOAuthToken(ctx context.Context, appid, refreshToken string) (WebToken, error) {
	const api = "/sns/oauth2/refresh_token"
	switch {
	case appid == "":
		return WebToken{}, fmt.Errorf("wechat %s: empty appid", api)
	case refreshToken == "":
		return WebToken{}, fmt.Errorf("wechat %s: empty refresh_token", api)
	}
	q := url.Values{
		"appid":         {appid},
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
	}
	var r webTokenAnswer
	if err := c.get(ctx, api, q, &r); err != nil {
		return WebToken{}, err
	}
	return r.token(api)
}

// UserInfo is the profile a ScopeUserInfo grant reads. Since October 2021
// the platform sends sex 0 and empty province, city and country.
type UserInfo struct {
	OpenID     string
	Nickname   string
	Sex        int
	Province   string
	City       string
	Country    string
	HeadImgURL string
	Privilege  []string
	// UnionID is set only for an account bound to the open platform.
	UnionID string
}

// String formats the profile without the nickname or the avatar.
func (u UserInfo) String() string {
	return fmt.Sprintf("UserInfo{OpenID:%s UnionID:%s}", u.OpenID, u.UnionID)
}

// GoString keeps %#v from printing the nickname.
func (u UserInfo) GoString() string { return "wechat." + u.String() }

// LogValue logs the ids only: nicknames and avatars stay out of logs.
func (u UserInfo) LogValue() slog.Value {
	return slog.GroupValue(slog.String("openid", u.OpenID), slog.String("unionid", u.UnionID))
}

// UserInfo reads the profile of the user a web grant speaks for. A grant of
// ScopeBase, or of a snapshot visitor, answers 48001. lang is zh_CN, zh_TW
// or en; empty means zh_CN. GET /sns/userinfo.
func (c *Client) UserInfo(ctx context.Context, accessToken, openid, lang string) (UserInfo, error) {
	const api = "/sns/userinfo"
	switch {
	case accessToken == "":
		return UserInfo{}, fmt.Errorf("wechat %s: empty access_token", api)
	case openid == "":
		return UserInfo{}, fmt.Errorf("wechat %s: empty openid", api)
	}
	if lang == "" {
		lang = "zh_CN"
	}
	q := url.Values{"access_token": {accessToken}, "openid": {openid}, "lang": {lang}}
	var r struct {
		OpenID     string   `json:"openid"`
		Nickname   string   `json:"nickname"`
		Sex        int      `json:"sex"`
		Province   string   `json:"province"`
		City       string   `json:"city"`
		Country    string   `json:"country"`
		HeadImgURL string   `json:"headimgurl"`
		Privilege  []string `json:"privilege"`
		UnionID    string   `json:"unionid"`
	}
	if err := c.get(ctx, api, q, &r); err != nil {
		return UserInfo{}, err
	}
	if r.OpenID == "" {
		return UserInfo{}, &transportError{api: api, what: "answer without openid"}
	}
	return UserInfo(r), nil
}
