// Package handler is the oauth-callback function's HTTP shape: the
// official account's web OAuth for H5 pages. GET /oauth/authorize sends the
// browser to the platform's consent page with a signed state; GET
// /oauth/callback checks the state, exchanges the code, links the visitor's
// OA identity and sends the browser back to the page with a session in the
// URL fragment. It takes and returns API Gateway v2 events so the same code
// runs in Lambda, the devstack and the tests.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/identity"
	"wxbridge/shared/oauthstate"
	"wxbridge/shared/observe"
	"wxbridge/shared/profiles"
	"wxbridge/shared/session"
	"wxbridge/shared/wechat"
)

// CallbackPath is the route the platform sends the browser back to.
const CallbackPath = "/oauth/callback"

// maxReturnTo bounds return_to: it travels inside redirect_uri.
const maxReturnTo = 2048

// WeChat is the platform side of web OAuth.
type WeChat interface {
	AuthorizeURL(appid, redirectURI, scope, state string) (string, error)
	OAuthToken(ctx context.Context, appid, secret, code string) (wechat.WebToken, error)
	UserInfo(ctx context.Context, accessToken, openid, lang string) (wechat.UserInfo, error)
}

// People is the identity store as the callback uses it.
type People interface {
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
}

// States records used states (oauthstate.Ledger).
type States interface {
	Use(ctx context.Context, s oauthstate.State) error
}

// Profiles keeps the profiles of snsapi_userinfo visitors.
type Profiles interface {
	Put(ctx context.Context, appid, openid string, p profiles.Profile) error
}

// Options is the function's own configuration.
type Options struct {
	// Origins are the pages allowed to receive sessions (WXB_H5_ORIGINS,
	// parsed by ParseOrigins). return_to must be on one of them.
	Origins []string
	// PublicURL is the API's public base URL (WXB_PUBLIC_URL), under which
	// CallbackPath is served. Empty: https:// and the request's domain name.
	PublicURL string
}

// Deps are the parts the handler talks to.
type Deps struct {
	WeChat   WeChat
	People   People
	States   States
	Profiles Profiles
	Log      *slog.Logger
	Metrics  *observe.Metrics
}

// Handler serves the OAuth routes.
type Handler struct {
	oa        config.App
	origins   map[string]bool
	publicURL string
	states    *oauthstate.Keys
	sessions  *session.Keys
	d         Deps
}

// New builds a Handler. The official account's credentials, the session
// key and at least one origin are required.
func New(cfg config.Config, opts Options, d Deps) (*Handler, error) {
	if err := cfg.Check(config.NeedOfficialAccount, config.NeedSigningKey); err != nil {
		return nil, err
	}
	if len(opts.Origins) == 0 {
		return nil, errors.New("oauth-callback: no H5 origins configured (WXB_H5_ORIGINS): no page could receive a session")
	}
	sessions, err := session.NewKeys(cfg.SigningKey, cfg.SigningKeyPrevious, 0)
	if err != nil {
		return nil, err
	}
	states, err := oauthstate.NewKeys(cfg.SigningKey, cfg.SigningKeyPrevious)
	if err != nil {
		return nil, err
	}
	h := &Handler{oa: cfg.OfficialAccount.App, origins: map[string]bool{}, states: states, sessions: sessions, d: d}
	for _, o := range opts.Origins {
		n, err := origin(o)
		if err != nil {
			return nil, err
		}
		h.origins[n] = true
	}
	if opts.PublicURL != "" {
		u, err := url.Parse(opts.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("oauth-callback: public URL %q is not an http(s) base URL", opts.PublicURL)
		}
		h.publicURL = strings.TrimRight(opts.PublicURL, "/")
	}
	return h, nil
}

// SetClock replaces the clock that states are issued and checked by.
func (h *Handler) SetClock(now func() time.Time) { h.states.Now = now }

// ParseOrigins reads a comma-separated list of origins such as
// "https://h5.example.com,https://m.example.com".
func ParseOrigins(list string) ([]string, error) {
	var out []string
	for o := range strings.SplitSeq(list, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		n, err := origin(o)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// origin normalizes a configured origin: scheme and host in lower case,
// the scheme's default port dropped, no path.
func origin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("oauth-callback: %q is not an origin like https://h5.example.com", s)
	}
	return originOf(u), nil
}

func originOf(u *url.URL) string {
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}

// Handle serves one request.
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	route := httpapi.Route(req)
	log := h.d.Log.With("route", route, "request_id", observe.RequestID(ctx))
	var (
		resp events.APIGatewayV2HTTPResponse
		err  error
	)
	switch route {
	case "GET /oauth/authorize":
		resp, err = h.authorize(req, log)
	case "GET " + CallbackPath:
		resp, err = h.callback(ctx, req, log)
	default:
		err = &pageError{http.StatusNotFound, "not_found", "There is no such page."}
	}
	var pe *pageError
	switch {
	case err == nil:
		return resp, nil
	case errors.As(err, &pe):
		log.Warn("request", "outcome", pe.Code, "status", pe.Status)
		h.d.Metrics.Count("OAuthRefused", "reason", pe.Code)
		return pe.response(), nil
	}
	log.Error("request", "outcome", "server_error", "error", err)
	return (&pageError{http.StatusInternalServerError, "server_error", "Something went wrong on our side; it has been logged."}).response(), nil
}

func (h *Handler) authorize(req events.APIGatewayV2HTTPRequest, log *slog.Logger) (events.APIGatewayV2HTTPResponse, error) {
	q, err := query(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	scope := q.Get("scope")
	if scope == "" {
		scope = wechat.ScopeBase
	}
	if scope != wechat.ScopeBase && scope != wechat.ScopeUserInfo {
		return events.APIGatewayV2HTTPResponse{}, &pageError{http.StatusBadRequest, "invalid_request", "scope must be snsapi_base or snsapi_userinfo."}
	}
	returnTo := q.Get("return_to")
	if err := h.checkReturnTo(returnTo); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	callback, err := h.callbackURL(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	state, st, err := h.states.Issue(scope, returnTo)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	// return_to rides in redirect_uri, which the platform hands back
	// unchanged; the state's MAC binds it, so it cannot be swapped.
	target, err := h.d.WeChat.AuthorizeURL(h.oa.AppID, callback+"?return_to="+url.QueryEscape(returnTo), scope, state)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	log.Info("request", "outcome", "redirect_to_wechat", "scope", scope)
	h.d.Metrics.Count("OAuthStarted", "scope", scope)
	resp := redirect(target)
	resp.Cookies = []string{browserCookie(st.Nonce, callback, int(time.Until(st.Expires).Seconds()))}
	return resp, nil
}

// browserCookie ties a sign-in to the browser that started it: the
// callback accepts a state only from a browser holding the cookie named
// after its nonce. Without it, someone could start a sign-in, consent in
// their own WeChat, and send the callback link to a victim, whose page
// would then hold the attacker's session (login CSRF). Named per nonce, so
// that two sign-ins in two tabs do not overwrite each other; SameSite=Lax,
// because WeChat comes back with a top-level GET.
func browserCookie(nonce, callback string, maxAge int) string {
	c := &http.Cookie{
		Name: "wxb_oauth_" + nonce, Value: "1", Path: CallbackPath, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(callback, "https://"),
	}
	return c.String()
}

// fromThisBrowser reports whether the request carries the cookie of the
// state's nonce.
func fromThisBrowser(req events.APIGatewayV2HTTPRequest, nonce string) bool {
	want := "wxb_oauth_" + nonce + "=1"
	for _, c := range req.Cookies {
		for _, part := range strings.Split(c, ";") {
			if strings.TrimSpace(part) == want {
				return true
			}
		}
	}
	return false
}

// checkReturnTo accepts an absolute URL on an allowed origin, without
// credentials or a fragment (the session is put in the fragment).
func (h *Handler) checkReturnTo(raw string) error {
	bad := func(msg string) error {
		return &pageError{http.StatusBadRequest, "invalid_return_to", msg}
	}
	if raw == "" {
		return bad("return_to is required: the address of the page to come back to.")
	}
	if len(raw) > maxReturnTo {
		return bad(fmt.Sprintf("return_to is longer than %d bytes.", maxReturnTo))
	}
	// Browsers read a backslash as a slash and drop tabs and newlines, so a
	// URL holding them may not go where Go's parser says it goes.
	if strings.ContainsAny(raw, "\\#") || strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return bad("return_to may not contain a fragment, backslashes, spaces or control characters.")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" || u.User != nil {
		return bad("return_to must be an absolute http(s) URL without credentials.")
	}
	if !h.origins[originOf(u)] {
		return bad("return_to is not on an allowed origin (WXB_H5_ORIGINS).")
	}
	return nil
}

func (h *Handler) callbackURL(req events.APIGatewayV2HTTPRequest) (string, error) {
	if h.publicURL != "" {
		return h.publicURL + CallbackPath, nil
	}
	domain := req.RequestContext.DomainName
	if domain == "" || strings.ContainsAny(domain, "/?#@\\") {
		return "", errors.New("no public URL configured (WXB_PUBLIC_URL) and no domain name in the request")
	}
	return "https://" + domain + CallbackPath, nil
}

func (h *Handler) callback(ctx context.Context, req events.APIGatewayV2HTTPRequest, log *slog.Logger) (events.APIGatewayV2HTTPResponse, error) {
	q, err := query(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	returnTo := q.Get("return_to")
	st, err := h.states.Verify(q.Get("state"), returnTo)
	switch {
	case errors.Is(err, oauthstate.ErrExpired):
		return events.APIGatewayV2HTTPResponse{}, &pageError{http.StatusBadRequest, "expired_state", "This sign-in took more than 10 minutes. Go back to the page and try again."}
	case err != nil:
		return events.APIGatewayV2HTTPResponse{}, &pageError{http.StatusBadRequest, "invalid_state", "This sign-in link is not valid. Go back to the page and try again."}
	}
	// Signed by us, but the allowlist may have shrunk since.
	if err := h.checkReturnTo(returnTo); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if !fromThisBrowser(req, st.Nonce) {
		return events.APIGatewayV2HTTPResponse{}, &pageError{http.StatusBadRequest, "foreign_state", "This sign-in was started in another browser. Go back to the page and try again."}
	}
	if err := h.d.States.Use(ctx, st); errors.Is(err, oauthstate.ErrReplayed) {
		return events.APIGatewayV2HTTPResponse{}, &pageError{http.StatusBadRequest, "used_state", "This sign-in link has been used already. Go back to the page and try again."}
	} else if err != nil {
		log.Error("state ledger", "outcome", "state_ledger_error", "error", err)
		return h.back(log, returnTo, "error", "temporarily_unavailable"), nil
	}
	code := q.Get("code")
	if code == "" {
		// The platform comes back without a code when the user refuses.
		return h.back(log, returnTo, "error", "access_denied"), nil
	}
	tok, err := h.d.WeChat.OAuthToken(ctx, h.oa.AppID, h.oa.Secret, code)
	if err != nil {
		return h.back(log, returnTo, "error", h.wechatFailure(log, "sns/oauth2/access_token", err)), nil
	}
	if tok.Snapshot {
		// Snapshot mode: a virtual account, not a person. Store nothing.
		h.d.Metrics.Count("OAuthSnapshots")
		return h.back(log, returnTo, "snapshot", "1"), nil
	}
	unionID := tok.UnionID
	var info *wechat.UserInfo
	if st.Scope == wechat.ScopeUserInfo && tok.HasScope(wechat.ScopeUserInfo) {
		// The user has consented and the code is spent: a failed profile read
		// costs the profile, not the sign-in.
		ui, err := h.d.WeChat.UserInfo(ctx, tok.AccessToken, tok.OpenID, "")
		if err != nil {
			h.wechatFailure(log, "sns/userinfo", err)
		} else {
			info = &ui
			if unionID == "" {
				unionID = ui.UnionID
			}
		}
	}
	res, err := h.d.People.Link(ctx, identity.Sighting{
		OA:      &identity.OASighting{AppID: h.oa.AppID, OpenID: tok.OpenID},
		UnionID: unionID,
	})
	switch {
	case errors.Is(err, identity.ErrContention):
		log.Warn("link", "outcome", "link_error", "error", err)
		return h.back(log, returnTo, "error", "temporarily_unavailable"), nil
	case err != nil:
		log.Error("link", "outcome", "link_error", "error", err)
		return h.back(log, returnTo, "error", "server_error"), nil
	}
	h.d.Metrics.Count("OAuthLogins", "scope", st.Scope, "outcome", string(res.Outcome))
	if len(res.Merged) > 0 {
		h.d.Metrics.Count("Merges")
	}
	if info != nil {
		p := profiles.Profile{Nickname: info.Nickname, HeadImgURL: info.HeadImgURL, UpdatedAt: time.Now()}
		if err := h.d.Profiles.Put(ctx, h.oa.AppID, tok.OpenID, p); err != nil {
			log.Warn("profile", "outcome", "profile_not_saved", "error", err)
		}
	}
	sess, s, err := h.sessions.Issue(session.Session{AppID: h.oa.AppID, OpenID: tok.OpenID, UID: res.Person.UID})
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	log.Info("oauth", "outcome", "linked", "uid", res.Person.UID, "link", res.Outcome, "scope", st.Scope, "unionid_known", unionID != "", "profile", info != nil)
	return h.back(log, returnTo, "session", sess, "expires_at", fmt.Sprint(s.Expires.Unix())), nil
}

// wechatFailure logs a failed call and names the fragment error for it.
func (h *Handler) wechatFailure(log *slog.Logger, api string, err error) string {
	// The client counts WeChatErrors by api and errcode.
	class := wechat.ClassOf(err)
	switch class {
	case wechat.ClassCode:
		log.Warn(api+" failed", "outcome", "wechat_error", "class", class.String(), "error", err, "rid", wechat.RID(err))
		return "invalid_code"
	case wechat.ClassTransient, wechat.ClassQuota:
		log.Warn(api+" failed", "outcome", "wechat_error", "class", class.String(), "error", err, "rid", wechat.RID(err))
		return "temporarily_unavailable"
	}
	// Configuration and unknown failures are ours to fix, not the user's.
	log.Error(api+" failed", "outcome", "wechat_error", "class", class.String(), "error", err, "rid", wechat.RID(err))
	return "server_error"
}

// back sends the browser to returnTo with kv in the fragment, where
// neither servers nor Referer headers see it.
func (h *Handler) back(log *slog.Logger, returnTo string, kv ...string) events.APIGatewayV2HTTPResponse {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	outcome := "session"
	if kv[0] != "session" {
		outcome = kv[0] + "=" + kv[1]
	}
	log.Info("request", "outcome", outcome)
	return redirect(returnTo + "#" + f.Encode())
}

func redirect(location string) events.APIGatewayV2HTTPResponse {
	return events.APIGatewayV2HTTPResponse{
		StatusCode: http.StatusFound,
		Headers: map[string]string{
			"Location":        location,
			"Cache-Control":   "no-store",
			"Referrer-Policy": "no-referrer",
		},
	}
}

// query reads the query string, refusing repeated parameters: with two
// return_to values, which one a component reads is anyone's guess.
func query(req events.APIGatewayV2HTTPRequest) (url.Values, error) {
	q, err := url.ParseQuery(req.RawQueryString)
	if err == nil && req.RawQueryString == "" {
		for k, v := range req.QueryStringParameters {
			q.Set(k, v)
		}
	}
	if err != nil {
		return nil, &pageError{http.StatusBadRequest, "invalid_request", "The address is malformed."}
	}
	for k, v := range q {
		if len(v) > 1 {
			return nil, &pageError{http.StatusBadRequest, "invalid_request", fmt.Sprintf("The parameter %s is repeated.", k)}
		}
	}
	return q, nil
}
