package handler

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/identity"
	"wxbridge/shared/session"
	"wxbridge/shared/wechat"
)

type loginRequest struct {
	Code      string `json:"code"`
	BindToken string `json:"bind_token,omitempty"`
}

// PersonView is what a client learns about its own person.
type PersonView struct {
	UID       string `json:"uid"`
	Linked    bool   `json:"linked"`
	FollowsOA bool   `json:"follows_oa"`
}

func viewOf(p identity.Person) PersonView {
	return PersonView{UID: p.UID, Linked: p.Linked(), FollowsOA: p.FollowsOA()}
}

// LoginResponse is the answer to POST /mp/login and POST /app/login.
type LoginResponse struct {
	Session   string     `json:"session"`
	ExpiresAt time.Time  `json:"expires_at"`
	Person    PersonView `json:"person"`
	// UnionIDKnown says whether the person's unionid is known: a mini
	// program without it can post open data to /mp/profile.
	UnionIDKnown bool `json:"unionid_known"`
}

// login is a mini program's login: the code from wx.login, exchanged with
// jscode2session.
func (h *Handler) login(ctx context.Context, req events.APIGatewayV2HTTPRequest, app config.App) (any, error) {
	in, tok, err := h.loginRequest(req, "the code from wx.login", "call wx.login again")
	if err != nil {
		return nil, err
	}
	ws, err := h.wechat.Code2Session(ctx, app.AppID, app.Secret, in.Code)
	if err != nil {
		return nil, h.wechatFailure(ctx, "jscode2session", "call wx.login again", err)
	}
	res, err := h.link(ctx, identity.Sighting{
		MP:      &identity.MPSighting{AppID: app.AppID, OpenID: ws.OpenID, SessionKey: ws.SessionKey},
		UnionID: ws.UnionID,
		Source:  identity.SourceLogin,
	}, tok)
	if err != nil {
		return nil, err
	}
	h.metrics.Count("Logins", "outcome", string(res.Outcome))
	h.log.InfoContext(ctx, "login", "outcome", "logged_in", "uid", res.Person.UID, "link", res.Outcome, "unionid_known", ws.UnionID != "", "bound", tok.ExternalID != "")
	return h.issue(app.AppID, ws.OpenID, res.Person)
}

// appLogin is a mobile app's login: the code the WeChat SDK's
// SendAuth.Req answered with, exchanged with sns/oauth2/access_token. The
// grant's access and refresh tokens are WeChat's user tokens for that app:
// neither is kept nor returned.
func (h *Handler) appLogin(ctx context.Context, req events.APIGatewayV2HTTPRequest, app config.App) (any, error) {
	in, tok, err := h.loginRequest(req, "the code from the WeChat SDK's SendAuth", "authorize again in the app")
	if err != nil {
		return nil, err
	}
	wt, err := h.wechat.OAuthToken(ctx, app.AppID, app.Secret, in.Code)
	if err != nil {
		return nil, h.wechatFailure(ctx, "sns/oauth2/access_token", "authorize again in the app", err)
	}
	res, err := h.link(ctx, identity.Sighting{
		Mobile:  &identity.AppSighting{AppID: app.AppID, OpenID: wt.OpenID},
		UnionID: wt.UnionID,
		Source:  identity.SourceAppLogin,
	}, tok)
	if err != nil {
		return nil, err
	}
	h.metrics.Count("AppLogins", "outcome", string(res.Outcome))
	h.log.InfoContext(ctx, "app login", "outcome", "logged_in", "uid", res.Person.UID, "link", res.Outcome, "unionid_known", wt.UnionID != "", "bound", tok.ExternalID != "")
	return h.issue(app.AppID, wt.OpenID, res.Person)
}

// loginRequest reads a login's body and checks its bind_token, if any:
// before the code is spent, so that a bad bind_token does not cost the user
// their login code. what names the code; again says how to get another.
func (h *Handler) loginRequest(req events.APIGatewayV2HTTPRequest, what, again string) (loginRequest, binding.Token, error) {
	var in loginRequest
	if err := httpapi.DecodeJSON(req, MaxBody, &in); err != nil {
		return in, binding.Token{}, err
	}
	if in.Code == "" {
		return in, binding.Token{}, httpapi.Fail(http.StatusBadRequest, "invalid_request", "code is required: %s", what)
	}
	if len(in.Code) > 128 {
		return in, binding.Token{}, httpapi.Fail(http.StatusBadRequest, "invalid_code", "code is not a login code: %s", again)
	}
	if in.BindToken == "" {
		return in, binding.Token{}, nil
	}
	if h.bindings == nil || h.uses == nil {
		return in, binding.Token{}, httpapi.Fail(http.StatusBadRequest, "invalid_bind_token", "business binding is not configured")
	}
	tok, err := h.bindings.Check(in.BindToken)
	if err != nil {
		return in, binding.Token{}, httpapi.Fail(http.StatusBadRequest, "invalid_bind_token", "bind_token is malformed, forged or expired")
	}
	return in, tok, nil
}

// link folds a login's sighting into its person, binding the business
// account tok names, if any.
func (h *Handler) link(ctx context.Context, sighting identity.Sighting, tok binding.Token) (identity.Result, error) {
	// Single use: only the user a token bound first may present it again
	// (a retried login). It is spent before the link, so that two users
	// presenting it at once cannot both be bound.
	first, spender := false, holder(sighting)
	if tok.ExternalID != "" {
		var err error
		if first, err = h.uses.Spend(ctx, tok, spender); err != nil {
			if errors.Is(err, binding.ErrSpent) {
				h.log.WarnContext(ctx, "binding refused", "outcome", "binding_refused", "reason", "token_used")
				h.metrics.Count("BindingsRefused", "source", "login", "reason", "token_used")
				return identity.Result{}, httpapi.Fail(http.StatusBadRequest, "invalid_bind_token", "bind_token has already bound another WeChat user: ask for a new one")
			}
			return identity.Result{}, err
		}
		sighting.ExternalID = tok.ExternalID
	}
	res, err := h.people.Link(ctx, sighting)
	if err != nil {
		if first && errors.Is(err, identity.ErrConflict) {
			// Nothing was bound: the token stays for its rightful user,
			// and the refused login leaves nothing written.
			if uerr := h.uses.Unspend(ctx, tok, spender); uerr != nil {
				h.log.WarnContext(ctx, "give the binding token back", "outcome", "token_kept", "error", uerr)
			}
		}
		return identity.Result{}, h.identityFailure(err)
	}
	return res, nil
}

// issue answers a login with a session for the app's openid.
func (h *Handler) issue(appid, openid string, p identity.Person) (LoginResponse, error) {
	bearer, s, err := h.sessions.Issue(session.Session{AppID: appid, OpenID: openid, UID: p.UID})
	if err != nil {
		return LoginResponse{}, err
	}
	return LoginResponse{Session: bearer, ExpiresAt: s.Expires, Person: viewOf(p), UnionIDKnown: p.UnionID != ""}, nil
}

// holder names the user of a login as binding tokens record who spent
// them: by unionid when the login gave it (the name a QR scan by the same
// user gives), else by the app's openid.
func holder(s identity.Sighting) string {
	switch {
	case s.UnionID != "":
		return identity.UnionKey(s.UnionID).String()
	case s.Mobile != nil:
		return identity.MobileKey(s.Mobile.AppID, s.Mobile.OpenID).String()
	}
	return identity.MPKey(s.MP.AppID, s.MP.OpenID).String()
}

type profileRequest struct {
	EncryptedData string `json:"encrypted_data"`
	IV            string `json:"iv"`
}

// ProfileResponse is the answer to POST /mp/profile.
type ProfileResponse struct {
	Person       PersonView `json:"person"`
	UnionIDKnown bool       `json:"unionid_known"`
}

// profile reads the unionid from a mini program's open data, decrypted
// with the session key of the caller's latest login in that mini program.
func (h *Handler) profile(ctx context.Context, req events.APIGatewayV2HTTPRequest, app config.App) (any, error) {
	s, err := h.callerIn(req, app)
	if err != nil {
		return nil, err
	}
	var in profileRequest
	if err := httpapi.DecodeJSON(req, MaxBody, &in); err != nil {
		return nil, err
	}
	if in.EncryptedData == "" || in.IV == "" {
		return nil, httpapi.Fail(http.StatusBadRequest, "invalid_request", "encrypted_data and iv are required")
	}
	stored, err := h.people.Session(ctx, s.AppID, s.OpenID)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, invalidSession()
	}
	if err != nil {
		return nil, err
	}
	data, err := wechat.DecryptOpenData(stored.SessionKey, in.EncryptedData, in.IV, s.AppID)
	switch {
	case errors.Is(err, wechat.ErrOpenData):
		return nil, httpapi.Fail(http.StatusBadRequest, "stale_session_key", "open data does not decrypt with the latest login's session key: call wx.login and log in again, then get the data again")
	case errors.Is(err, wechat.ErrWatermark):
		return nil, httpapi.Fail(http.StatusBadRequest, "invalid_open_data", "open data was issued for another app")
	case err != nil:
		return nil, err
	case data.OpenID != "" && data.OpenID != s.OpenID:
		return nil, httpapi.Fail(http.StatusBadRequest, "invalid_open_data", "open data belongs to another user")
	}
	if data.UnionID == "" {
		p, err := h.people.Lookup(ctx, identity.MPKey(s.AppID, s.OpenID))
		if err != nil {
			return nil, h.identityFailure(err)
		}
		return ProfileResponse{Person: viewOf(p), UnionIDKnown: p.UnionID != ""}, nil
	}
	res, err := h.people.Link(ctx, identity.Sighting{
		MP:      &identity.MPSighting{AppID: s.AppID, OpenID: s.OpenID},
		UnionID: data.UnionID,
		Source:  identity.SourceOpenData,
	})
	if err != nil {
		return nil, h.identityFailure(err)
	}
	h.metrics.Count("UnionIDReveals", "outcome", string(res.Outcome))
	h.log.InfoContext(ctx, "profile", "outcome", "unionid_revealed", "uid", res.Person.UID, "link", res.Outcome)
	return ProfileResponse{Person: viewOf(res.Person), UnionIDKnown: true}, nil
}
