// Package handler is the login function's HTTP shape: POST /mp/login,
// POST /mp/profile, POST /mp/subscribe-consents and GET /me, taking and
// returning API Gateway v2 events
// so the same code runs in Lambda, the devstack and the tests.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/smithy-go"

	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/reach"
	"wxbridge/shared/session"
	"wxbridge/shared/wechat"
)

// MaxBody is the largest request body accepted.
const MaxBody = 16 << 10

// WeChat is the platform call login needs.
type WeChat interface {
	Code2Session(ctx context.Context, appid, secret, code string) (wechat.Session, error)
}

// People is the identity store as login uses it.
type People interface {
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
	Lookup(ctx context.Context, k identity.Key) (identity.Person, error)
	Session(ctx context.Context, appid, openid string) (identity.MPSession, error)
}

// TokenUses spends binding tokens (binding.Uses): each binds one WeChat
// user only.
type TokenUses interface {
	Spend(ctx context.Context, t binding.Token, holder string) (first bool, err error)
	Unspend(ctx context.Context, t binding.Token, holder string) error
}

// Handler serves the login routes.
type Handler struct {
	app      config.App
	oaAppID  string // sessions from the OA's web OAuth (oauth-callback) are accepted by GET /me
	wechat   WeChat
	people   People
	sessions *session.Keys
	bindings *binding.Verifier // nil when no bind key is configured
	uses     TokenUses         // nil: bind tokens cannot be made single-use, so none is accepted
	consents Consents          // nil: POST /mp/subscribe-consents is not served
	longTerm reach.LongTerm
	now      func() time.Time // when consents are recorded
	log      *slog.Logger
	metrics  *observe.Metrics
}

// Option adds an optional dependency to a Handler.
type Option func(*Handler)

// WithTokenUses makes bind tokens single-use, recording in uses the WeChat
// user each one bound. Without it, logins that carry a bind_token are
// refused.
func WithTokenUses(uses TokenUses) Option { return func(h *Handler) { h.uses = uses } }

// New builds a Handler from the configuration secret. The mini program's
// credentials and the session key are required; without a bind key (or
// WithTokenUses), logins that carry a bind_token are refused.
func New(cfg config.Config, wc WeChat, people People, log *slog.Logger, metrics *observe.Metrics, opts ...Option) (*Handler, error) {
	if err := cfg.Check(config.NeedMiniProgram, config.NeedSigningKey); err != nil {
		return nil, err
	}
	keys, err := session.NewKeys(cfg.SigningKey, cfg.SigningKeyPrevious, 0)
	if err != nil {
		return nil, err
	}
	h := &Handler{app: cfg.MiniProgram, oaAppID: cfg.OfficialAccount.AppID, wechat: wc, people: people, sessions: keys, log: log, metrics: metrics}
	if cfg.Check(config.NeedBindKey) == nil {
		h.bindings = binding.NewVerifier(cfg.BindKey, cfg.BindKeyPrevious)
	}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// Handle serves one request.
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	route := httpapi.Route(req)
	ctx = observe.With(ctx, "route", route)
	var (
		body any
		err  error
	)
	switch route {
	case "POST /mp/login":
		body, err = h.login(ctx, req)
	case "POST /mp/profile":
		body, err = h.profile(ctx, req)
	case "GET /me":
		body, err = h.me(ctx, req)
	case "POST /mp/subscribe-consents":
		body, err = h.subscribeConsents(ctx, req)
	default:
		err = httpapi.Fail(http.StatusNotFound, "not_found", "no route %s", route)
	}
	if err == nil {
		h.log.InfoContext(ctx, "request", "outcome", "ok")
		return httpapi.JSON(http.StatusOK, body), nil
	}
	var he *httpapi.Error
	var aws *smithy.OperationError
	switch {
	case errors.As(err, &aws):
		// DynamoDB or Secrets Manager failed past the SDK's own retries
		// (throttled, down): nothing was written, and the same request may
		// pass in a moment.
		h.log.ErrorContext(ctx, "request", "outcome", "unavailable", "error", err)
		he = httpapi.Fail(http.StatusServiceUnavailable, "unavailable", "wxbridge's storage is not answering right now: retry shortly (a login with a new code from wx.login: the old one is used)")
		he.RetryAfter = 2
	case !errors.As(err, &he):
		h.log.ErrorContext(ctx, "request", "outcome", "server_error", "error", err)
		he = httpapi.Fail(http.StatusInternalServerError, "server_error", "something went wrong on our side; it has been logged")
	default:
		h.log.WarnContext(ctx, "request", "outcome", he.Code, "status", he.Status)
	}
	return httpapi.Respond(he), nil
}

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

// LoginResponse is the answer to POST /mp/login.
type LoginResponse struct {
	Session   string     `json:"session"`
	ExpiresAt time.Time  `json:"expires_at"`
	Person    PersonView `json:"person"`
}

func (h *Handler) login(ctx context.Context, req events.APIGatewayV2HTTPRequest) (any, error) {
	var in loginRequest
	if err := httpapi.DecodeJSON(req, MaxBody, &in); err != nil {
		return nil, err
	}
	if in.Code == "" {
		return nil, httpapi.Fail(http.StatusBadRequest, "invalid_request", "code is required: the code from wx.login")
	}
	if len(in.Code) > 128 {
		return nil, httpapi.Fail(http.StatusBadRequest, "invalid_code", "code is not a wx.login code: call wx.login again")
	}
	// The binding is checked before the code is spent: a bad bind_token
	// must not cost the user their login code.
	var tok binding.Token
	if in.BindToken != "" {
		if h.bindings == nil || h.uses == nil {
			return nil, httpapi.Fail(http.StatusBadRequest, "invalid_bind_token", "business binding is not configured")
		}
		var err error
		if tok, err = h.bindings.Check(in.BindToken); err != nil {
			return nil, httpapi.Fail(http.StatusBadRequest, "invalid_bind_token", "bind_token is malformed, forged or expired")
		}
	}
	ws, err := h.wechat.Code2Session(ctx, h.app.AppID, h.app.Secret, in.Code)
	if err != nil {
		return nil, h.wechatFailure(ctx, err)
	}
	sighting := identity.Sighting{
		MP:      &identity.MPSighting{AppID: h.app.AppID, OpenID: ws.OpenID, SessionKey: ws.SessionKey},
		UnionID: ws.UnionID,
		Source:  identity.SourceLogin,
	}
	// Single use: only the user a token bound first may present it again
	// (a retried login). It is spent before the link, so that two users
	// presenting it at once cannot both be bound.
	first, spender := false, holder(sighting)
	if tok.ExternalID != "" {
		if first, err = h.uses.Spend(ctx, tok, spender); err != nil {
			if errors.Is(err, binding.ErrSpent) {
				h.log.WarnContext(ctx, "binding refused", "outcome", "binding_refused", "reason", "token_used")
				h.metrics.Count("BindingsRefused", "source", "login", "reason", "token_used")
				return nil, httpapi.Fail(http.StatusBadRequest, "invalid_bind_token", "bind_token has already bound another WeChat user: ask for a new one")
			}
			return nil, err
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
		return nil, h.identityFailure(err)
	}
	h.metrics.Count("Logins", "outcome", string(res.Outcome))
	h.log.InfoContext(ctx, "login", "outcome", "logged_in", "uid", res.Person.UID, "link", res.Outcome, "unionid_known", ws.UnionID != "", "bound", sighting.ExternalID != "")
	bearer, s, err := h.sessions.Issue(session.Session{AppID: h.app.AppID, OpenID: ws.OpenID, UID: res.Person.UID})
	if err != nil {
		return nil, err
	}
	return LoginResponse{Session: bearer, ExpiresAt: s.Expires, Person: viewOf(res.Person)}, nil
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

func (h *Handler) profile(ctx context.Context, req events.APIGatewayV2HTTPRequest) (any, error) {
	s, err := h.caller(req)
	if err != nil {
		return nil, err
	}
	if s.AppID != h.app.AppID {
		// Open data belongs to a mini-program login, not to an H5 session.
		return nil, invalidSession()
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
		return nil, httpapi.Fail(http.StatusBadRequest, "stale_session_key", "open data does not decrypt with the latest login's session key: call wx.login and POST /mp/login, then get the data again")
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

// MeResponse is the answer to GET /me: the caller's identities and links.
type MeResponse struct {
	PersonView
	MiniProgram     *AppIdentity `json:"mini_program,omitempty"`
	OfficialAccount *AppIdentity `json:"official_account,omitempty"`
	UnionIDKnown    bool         `json:"unionid_known"`
	ExternalID      string       `json:"external_id,omitempty"`
}

// AppIdentity is the caller's identity in one app.
type AppIdentity struct {
	AppID          string     `json:"appid"`
	OpenID         string     `json:"openid"`
	Subscribed     *bool      `json:"subscribed,omitempty"`
	SubscribedAt   *time.Time `json:"subscribed_at,omitempty"`
	UnsubscribedAt *time.Time `json:"unsubscribed_at,omitempty"`
}

func (h *Handler) me(ctx context.Context, req events.APIGatewayV2HTTPRequest) (any, error) {
	s, err := h.caller(req)
	if err != nil {
		return nil, err
	}
	key := identity.MPKey(s.AppID, s.OpenID)
	if s.AppID != h.app.AppID {
		key = identity.OAKey(s.AppID, s.OpenID) // an H5 session from web OAuth
	}
	p, err := h.people.Lookup(ctx, key)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, invalidSession()
	}
	if err != nil {
		return nil, h.identityFailure(err)
	}
	out := MeResponse{PersonView: viewOf(p), UnionIDKnown: p.UnionID != "", ExternalID: p.ExternalID}
	if mp, ok := p.MP[h.app.AppID]; ok {
		out.MiniProgram = &AppIdentity{AppID: h.app.AppID, OpenID: mp.OpenID}
	}
	for appid, oa := range p.OA {
		known := oa.SubscribedAt != nil || oa.UnsubscribedAt != nil
		id := &AppIdentity{AppID: appid, OpenID: oa.OpenID, SubscribedAt: oa.SubscribedAt, UnsubscribedAt: oa.UnsubscribedAt}
		if known {
			id.Subscribed = &oa.Subscribed
		}
		out.OfficialAccount = id
	}
	return out, nil
}

// caller verifies the bearer session.
func (h *Handler) caller(req events.APIGatewayV2HTTPRequest) (session.Session, error) {
	tok, ok := httpapi.Bearer(req)
	if !ok {
		return session.Session{}, httpapi.Fail(http.StatusUnauthorized, "invalid_session", "send the session from POST /mp/login as a bearer token")
	}
	s, err := h.sessions.Verify(tok)
	if err != nil || (s.AppID != h.app.AppID && (h.oaAppID == "" || s.AppID != h.oaAppID)) {
		return session.Session{}, invalidSession()
	}
	return s, nil
}

func invalidSession() *httpapi.Error {
	return httpapi.Fail(http.StatusUnauthorized, "invalid_session", "the session is invalid or expired: log in again")
}

// holder names the user of a login as binding tokens record who spent
// them: by unionid when jscode2session gave it (the name a QR scan by the
// same user gives), else by the mini-program openid.
func holder(s identity.Sighting) string {
	if s.UnionID != "" {
		return identity.UnionKey(s.UnionID).String()
	}
	return identity.MPKey(s.MP.AppID, s.MP.OpenID).String()
}

// wechatFailure maps a failed jscode2session to an answer by its class.
func (h *Handler) wechatFailure(ctx context.Context, err error) error {
	// The client counts WeChatErrors by api and errcode.
	class := wechat.ClassOf(err)
	h.log.WarnContext(ctx, "jscode2session failed", "outcome", "wechat_error", "class", class.String(), "error", err, "rid", wechat.RID(err))
	switch class {
	case wechat.ClassCode:
		return httpapi.Fail(http.StatusBadRequest, "invalid_code", "the login code is invalid, expired or already used: call wx.login again")
	case wechat.ClassTransient, wechat.ClassQuota:
		e := httpapi.Fail(http.StatusServiceUnavailable, "wechat_unavailable", "WeChat is not answering right now: retry shortly")
		e.RetryAfter = 2
		return e
	case wechat.ClassUserState:
		return httpapi.Fail(http.StatusForbidden, "login_blocked", "WeChat refused this user's login")
	}
	// Configuration, token or unknown errors are ours to fix, not the user's.
	return fmt.Errorf("jscode2session: %w", err)
}

// identityFailure maps identity store errors to answers.
func (h *Handler) identityFailure(err error) error {
	switch {
	case errors.Is(err, identity.ErrConflict):
		return httpapi.Fail(http.StatusConflict, "binding_conflict", "this WeChat user is already bound to another account, or the account to another WeChat user")
	case errors.Is(err, identity.ErrContention):
		e := httpapi.Fail(http.StatusServiceUnavailable, "busy", "too many concurrent updates to this person: retry")
		e.RetryAfter = 1
		return e
	case errors.Is(err, identity.ErrNotFound):
		return invalidSession()
	}
	return err
}
