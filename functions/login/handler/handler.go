// Package handler is the login function's HTTP shape, taking and returning
// API Gateway v2 events so the same code runs in Lambda, the devstack and
// the tests. It serves every configured mini program and mobile app:
//
//   - POST /mp/login, /mp/profile, /mp/phone, /mp/subscribe-consents for the
//     default mini program, and the same under /mp/{appid}/ for any of them;
//   - POST /app/login for the default mobile app, /app/{appid}/login for any;
//   - GET /me, for a session of any configured app.
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

// WeChat is the platform calls login needs.
type WeChat interface {
	Code2Session(ctx context.Context, appid, secret, code string) (wechat.Session, error)
	OAuthToken(ctx context.Context, appid, secret, code string) (wechat.WebToken, error)
	PhoneNumber(ctx context.Context, appid, code string) (wechat.Phone, error)
}

// People is the identity store as login uses it.
type People interface {
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
	Lookup(ctx context.Context, k identity.Key) (identity.Person, error)
	Session(ctx context.Context, appid, openid string) (identity.MPSession, error)
	VerifyPhone(ctx context.Context, uid, appid, number string, at time.Time) (identity.Person, error)
}

// TokenUses spends binding tokens (binding.Uses): each binds one WeChat
// user only.
type TokenUses interface {
	Spend(ctx context.Context, t binding.Token, holder string) (first bool, err error)
	Unspend(ctx context.Context, t binding.Token, holder string) error
}

// Handler serves the login routes.
type Handler struct {
	apps     map[config.Kind][]config.App // the mini programs and mobile apps served, each kind's default first
	kinds    map[string]config.Kind       // every configured app by appid: whose sessions GET /me accepts
	defaults map[config.Kind]string       // the default app of each kind: /me's compatibility fields
	wechat   WeChat
	people   People
	sessions *session.Keys
	bindings *binding.Verifier // nil when no bind key is configured
	uses     TokenUses         // nil: bind tokens cannot be made single-use, so none is accepted
	consents Consents          // nil: POST /mp/subscribe-consents is not served
	longTerm reach.LongTerm
	now      func() time.Time // when consents and phone numbers are recorded
	log      *slog.Logger
	metrics  *observe.Metrics
}

// Option adds an optional dependency to a Handler.
type Option func(*Handler)

// WithTokenUses makes bind tokens single-use, recording in uses the WeChat
// user each one bound. Without it, logins that carry a bind_token are
// refused.
func WithTokenUses(uses TokenUses) Option { return func(h *Handler) { h.uses = uses } }

// New builds a Handler from the configuration secret. The session key and
// at least one mini program or mobile app are required, each with its
// secret; without a bind key (or WithTokenUses), logins that carry a
// bind_token are refused.
func New(cfg config.Config, wc WeChat, people People, log *slog.Logger, metrics *observe.Metrics, opts ...Option) (*Handler, error) {
	mps, mobiles := cfg.Apps(config.KindMiniProgram), cfg.Apps(config.KindMobile)
	needs := []config.Need{config.NeedSigningKey}
	if len(mps) > 0 || len(mobiles) == 0 {
		// A deployment with mobile apps only has no mini program to check;
		// one with neither is told the mini program is missing.
		needs = append(needs, config.NeedMiniProgram)
	}
	if err := cfg.Check(needs...); err != nil {
		return nil, err
	}
	for _, a := range mobiles {
		if a.Secret == "" {
			return nil, fmt.Errorf("%w: mobile app %s has no secret", config.ErrIncomplete, a.AppID)
		}
	}
	keys, err := session.NewKeys(cfg.SigningKey, cfg.SigningKeyPrevious, 0)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		apps:     map[config.Kind][]config.App{config.KindMiniProgram: mps, config.KindMobile: mobiles},
		kinds:    map[string]config.Kind{},
		defaults: map[config.Kind]string{},
		wechat:   wc, people: people, sessions: keys, now: time.Now, log: log, metrics: metrics,
	}
	for _, ref := range cfg.AllApps() {
		h.kinds[ref.AppID] = ref.Kind
		if _, ok := h.defaults[ref.Kind]; !ok {
			h.defaults[ref.Kind] = ref.AppID
		}
	}
	if cfg.Check(config.NeedBindKey) == nil {
		h.bindings = binding.NewVerifier(cfg.BindKey, cfg.BindKeyPrevious)
	}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// endpoint is what one route serves, and for which kind of app: the
// default one, or the one its {appid} names.
type endpoint struct {
	kind    config.Kind // "" for a route of no app (GET /me)
	byAppID bool
	serve   func(h *Handler, ctx context.Context, req events.APIGatewayV2HTTPRequest, app config.App) (any, error)
}

var endpoints = map[string]endpoint{
	"POST /mp/login":                      {config.KindMiniProgram, false, (*Handler).login},
	"POST /mp/{appid}/login":              {config.KindMiniProgram, true, (*Handler).login},
	"POST /mp/profile":                    {config.KindMiniProgram, false, (*Handler).profile},
	"POST /mp/{appid}/profile":            {config.KindMiniProgram, true, (*Handler).profile},
	"POST /mp/phone":                      {config.KindMiniProgram, false, (*Handler).phone},
	"POST /mp/{appid}/phone":              {config.KindMiniProgram, true, (*Handler).phone},
	"POST /mp/subscribe-consents":         {config.KindMiniProgram, false, (*Handler).subscribeConsents},
	"POST /mp/{appid}/subscribe-consents": {config.KindMiniProgram, true, (*Handler).subscribeConsents},
	"POST /app/login":                     {config.KindMobile, false, (*Handler).appLogin},
	"POST /app/{appid}/login":             {config.KindMobile, true, (*Handler).appLogin},
	"GET /me":                             {"", false, (*Handler).me},
}

// Handle serves one request.
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	route := httpapi.Route(req)
	ctx = observe.With(ctx, "route", route)
	var (
		body any
		err  error
	)
	if ep, ok := endpoints[route]; !ok {
		err = httpapi.Fail(http.StatusNotFound, "not_found", "no route %s", route)
	} else {
		var app config.App
		if ep.kind != "" {
			if app, err = h.app(ep.kind, ep.byAppID, req); err == nil {
				ctx = observe.With(ctx, "appid", app.AppID)
			}
		}
		if err == nil {
			body, err = ep.serve(h, ctx, req, app)
		}
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
		// (throttled, down): the same request may pass in a moment.
		h.log.ErrorContext(ctx, "request", "outcome", "unavailable", "error", err)
		he = httpapi.Fail(http.StatusServiceUnavailable, "unavailable", "wxbridge's storage is not answering right now: retry shortly (a login or a phone number with a new code: the old one may be used)")
		he.RetryAfter = 2
	case !errors.As(err, &he):
		h.log.ErrorContext(ctx, "request", "outcome", "server_error", "error", err)
		he = httpapi.Fail(http.StatusInternalServerError, "server_error", "something went wrong on our side; it has been logged")
	default:
		h.log.WarnContext(ctx, "request", "outcome", he.Code, "status", he.Status)
	}
	return httpapi.Respond(he), nil
}

// app is the app of kind k a request is for: the one its path's {appid}
// names, or the kind's default. An appid not configured as that kind is
// 404 unknown_app, before anything is read or called.
func (h *Handler) app(k config.Kind, byAppID bool, req events.APIGatewayV2HTTPRequest) (config.App, error) {
	apps := h.apps[k]
	if !byAppID {
		if len(apps) == 0 {
			return config.App{}, httpapi.Fail(http.StatusNotFound, "unknown_app", "no %s is configured", k.Name())
		}
		return apps[0], nil
	}
	appid := req.PathParameters["appid"]
	for _, a := range apps {
		if a.AppID == appid {
			return a, nil
		}
	}
	return config.App{}, httpapi.Fail(http.StatusNotFound, "unknown_app", "%q is not a configured %s", clip(appid), k.Name())
}

// caller verifies the bearer session: one of any configured app, whose
// kind it returns.
func (h *Handler) caller(req events.APIGatewayV2HTTPRequest) (session.Session, config.Kind, error) {
	tok, ok := httpapi.Bearer(req)
	if !ok {
		return session.Session{}, "", httpapi.Fail(http.StatusUnauthorized, "invalid_session", "send the session from a login as a bearer token")
	}
	s, err := h.sessions.Verify(tok)
	if err != nil {
		return session.Session{}, "", invalidSession()
	}
	k, ok := h.kinds[s.AppID]
	if !ok {
		return session.Session{}, "", invalidSession()
	}
	return s, k, nil
}

// callerIn verifies that the bearer session is one of app: open data,
// phone numbers and subscribe consents belong to one mini program's login,
// not to another app's session.
func (h *Handler) callerIn(req events.APIGatewayV2HTTPRequest, app config.App) (session.Session, error) {
	s, _, err := h.caller(req)
	if err != nil {
		return session.Session{}, err
	}
	if s.AppID != app.AppID {
		return session.Session{}, invalidSession()
	}
	return s, nil
}

func invalidSession() *httpapi.Error {
	return httpapi.Fail(http.StatusUnauthorized, "invalid_session", "the session is invalid or expired: log in again")
}

// wechatFailure maps a failed exchange of a user's code (api) to an answer
// by its class; again says how the client gets a new code.
func (h *Handler) wechatFailure(ctx context.Context, api, again string, err error) error {
	// The client counts WeChatErrors by api and errcode.
	class := wechat.ClassOf(err)
	h.log.WarnContext(ctx, api+" failed", "outcome", "wechat_error", "class", class.String(), "error", err, "rid", wechat.RID(err))
	switch class {
	case wechat.ClassCode:
		return httpapi.Fail(http.StatusBadRequest, "invalid_code", "the code is invalid, expired or already used: %s", again)
	case wechat.ClassTransient, wechat.ClassQuota, wechat.ClassToken:
		// ClassToken: the access token was refused even after a fresh one
		// was asked for; the token-refresher catches up within minutes.
		e := httpapi.Fail(http.StatusServiceUnavailable, "wechat_unavailable", "WeChat is not answering right now: retry shortly")
		e.RetryAfter = 2
		return e
	case wechat.ClassUserState:
		return httpapi.Fail(http.StatusForbidden, "login_blocked", "WeChat refused this user's login")
	}
	// Configuration, infrastructure or unknown errors are ours to fix, not
	// the user's.
	return fmt.Errorf("%s: %w", api, err)
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

// clip shortens a client's string for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
