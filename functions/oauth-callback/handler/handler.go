// Package handler is the oauth-callback function's HTTP shape: the
// official accounts' web OAuth for H5 pages and the website apps' QR
// login. GET /oauth/authorize sends the browser to the platform's consent
// page; GET /oauth/callback sends it back to the page with a session or an
// error in the URL fragment; /oauth/{appid}/… do the same for any
// configured official account, and /web/authorize, /web/callback and
// /web/{appid}/… for website apps, on the platform's QR connect page. GET
// /<name> serves WeChat's domain verification files. The rules of the
// sign-in are shared/signin's; this package reads API Gateway v2 events
// and answers redirects and error pages, so the same code runs in Lambda,
// the devstack and the tests.
package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/observe"
	"wxbridge/shared/signin"
)

// The routes, as served under the API's base URL. Those without {appid}
// serve the default app of their kind (config.Config.Default); {appid}
// names any configured app of the kind.
const (
	AuthorizePath       = "/oauth/authorize"
	CallbackPath        = "/oauth/callback"
	AppAuthorizePath    = "/oauth/{appid}/authorize"
	AppCallbackPath     = "/oauth/{appid}/callback"
	WebAuthorizePath    = "/web/authorize"
	WebCallbackPath     = "/web/callback"
	WebAppAuthorizePath = "/web/{appid}/authorize"
	WebAppCallbackPath  = "/web/{appid}/callback"
)

// movedParam marks an authorize request that was sent to the public URL
// already, so that it is never sent there twice (a proxy in front that
// rewrites the Host would otherwise make a loop).
const movedParam = "moved"

// Options is the function's own configuration.
type Options struct {
	// Origins are the pages allowed to receive sessions (WXB_H5_ORIGINS,
	// parsed by ParseOrigins). return_to must be on one of them.
	Origins []string
	// PublicURL is the API's public base URL (WXB_PUBLIC_URL), under which
	// the routes are served: a custom domain, with or without a base path.
	// Empty: https:// and the request's domain name.
	PublicURL string
}

// Deps are the parts the handler talks to.
type Deps = signin.Deps

// Handler serves the OAuth routes and the verification files.
type Handler struct {
	// flows holds one sign-in flow per configured app, by kind and appid;
	// defaults names each kind's default app.
	flows    map[config.Kind]map[string]*signin.Flow
	defaults map[config.Kind]string
	site     signin.Site
	files    config.VerifyFiles
	d        Deps
}

// New builds a Handler for every official account and website app of cfg.
// At least one of them, the signing key and at least one origin are
// required.
func New(cfg config.Config, opts Options, d Deps) (*Handler, error) {
	if err := cfg.Check(config.NeedSigningKey); err != nil {
		return nil, err
	}
	oas, webs := cfg.Apps(config.KindOfficialAccount), cfg.Apps(config.KindWebsite)
	if len(oas) == 0 && len(webs) == 0 {
		return nil, fmt.Errorf("%w: oauth-callback needs an official account or a website app (official_account, official_accounts, website_apps)", config.ErrIncomplete)
	}
	// Entries the lists leave out for want of an appid are mistakes, not
	// apps to skip.
	if len(oas) > 0 {
		if err := cfg.Check(config.NeedOfficialAccount); err != nil {
			return nil, err
		}
	}
	for i, a := range cfg.WebsiteApps {
		if a.AppID == "" || a.Secret == "" {
			return nil, fmt.Errorf("%w: website_apps[%d].appid/secret", config.ErrIncomplete, i)
		}
	}
	if len(opts.Origins) == 0 {
		return nil, errors.New("oauth-callback: no H5 origins configured (WXB_H5_ORIGINS): no page could receive a session")
	}
	origins, err := signin.NewOrigins(opts.Origins...)
	if err != nil {
		return nil, err
	}
	site, err := signin.NewSite(opts.PublicURL)
	if err != nil {
		return nil, err
	}
	h := &Handler{flows: map[config.Kind]map[string]*signin.Flow{}, defaults: map[config.Kind]string{}, site: site, files: cfg.VerifyFiles, d: d}
	add := func(k config.Kind, app signin.App) error {
		flow, err := signin.New(app, origins, cfg.SigningKey, cfg.SigningKeyPrevious, d)
		if err != nil {
			return err
		}
		if h.flows[k] == nil {
			h.flows[k], h.defaults[k] = map[string]*signin.Flow{}, app.AppID
		}
		h.flows[k][app.AppID] = flow
		return nil
	}
	for i, a := range oas {
		app := signin.OfficialAccount(a)
		// States issued before they named their app are in flight for ten
		// minutes after the deploy that made them name it; the one app
		// that issued them then was the default official account, so they
		// are accepted there (at /oauth/callback, where they were sent)
		// and refused everywhere else.
		app.LegacyStates = i == 0
		if err := add(config.KindOfficialAccount, app); err != nil {
			return nil, err
		}
	}
	for _, a := range webs {
		if err := add(config.KindWebsite, signin.Website(a)); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// SetClock replaces the clock that states are issued and checked by.
func (h *Handler) SetClock(now func() time.Time) {
	for _, flows := range h.flows {
		for _, f := range flows {
			f.SetClock(now)
		}
	}
}

// ParseOrigins reads a comma-separated list of origins such as
// "https://h5.example.com,https://m.example.com".
func ParseOrigins(list string) ([]string, error) { return signin.ParseOrigins(list) }

// Handle serves one request.
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	route := httpapi.Route(req)
	ctx = observe.With(ctx, "route", route)
	var (
		resp    events.APIGatewayV2HTTPResponse
		outcome []any // attributes of the request's log line
		err     error
	)
	switch ep, ok := parseEndpoint(route, req.PathParameters); {
	case route == "GET "+VerifyPath || route == "HEAD "+VerifyPath:
		resp, outcome = h.verifyFile(req)
	case !ok:
		err = &pageError{http.StatusNotFound, "not_found", "There is no such page."}
	default:
		var flow *signin.Flow
		if flow, ep, err = h.flow(ep); err != nil {
			break
		}
		ctx = observe.With(ctx, "appid", ep.appid)
		if ep.callback {
			resp, outcome, err = h.callback(ctx, req, flow, ep)
		} else {
			resp, outcome, err = h.authorize(ctx, req, flow, ep)
		}
	}
	if err == nil {
		h.d.Log.InfoContext(ctx, "request", outcome...)
		return resp, nil
	}
	var (
		pe *pageError
		rf *signin.Refusal
	)
	switch {
	case errors.As(err, &rf):
		pe = &pageError{http.StatusBadRequest, rf.Reason, rf.Message}
	case errors.As(err, &pe):
	default:
		h.d.Log.ErrorContext(ctx, "request", "outcome", "server_error", "error", err)
		return (&pageError{http.StatusInternalServerError, "server_error", "Something went wrong on our side; it has been logged."}).response(), nil
	}
	h.d.Log.WarnContext(ctx, "request", "outcome", pe.Code, "status", pe.Status)
	h.d.Metrics.Count("OAuthRefused", "reason", pe.Code)
	return pe.response(), nil
}

// endpoint is one sign-in route as a request names it.
type endpoint struct {
	kind     config.Kind // KindOfficialAccount (/oauth) or KindWebsite (/web)
	appid    string      // "" on a default app's route, until flow fills it in
	named    bool        // the path names the app
	callback bool        // the callback, else the authorize route
}

// parseEndpoint reads route ("GET /oauth/{appid}/authorize" as API
// Gateway names the route, with the appid among params; or the raw
// "GET /oauth/wx…/authorize" behind a catch-all route).
func parseEndpoint(route string, params map[string]string) (endpoint, bool) {
	path, ok := strings.CutPrefix(route, "GET /")
	if !ok {
		return endpoint{}, false
	}
	segs := strings.Split(path, "/")
	var ep endpoint
	switch segs[0] {
	case "oauth":
		ep.kind = config.KindOfficialAccount
	case "web":
		ep.kind = config.KindWebsite
	default:
		return endpoint{}, false
	}
	switch len(segs) {
	case 2:
	case 3:
		ep.named, ep.appid = true, segs[1]
		if segs[1] == "{appid}" {
			ep.appid = params["appid"]
		}
		if ep.appid == "" {
			return endpoint{}, false
		}
	default:
		return endpoint{}, false
	}
	switch segs[len(segs)-1] {
	case "authorize":
	case "callback":
		ep.callback = true
	default:
		return endpoint{}, false
	}
	return ep, true
}

// path is ep's route under the base URL, the appid filled in.
func (ep endpoint) path() string {
	p := "/oauth"
	if ep.kind == config.KindWebsite {
		p = "/web"
	}
	if ep.named {
		p += "/" + url.PathEscape(ep.appid)
	}
	if ep.callback {
		return p + "/callback"
	}
	return p + "/authorize"
}

// other is the same app's other step on the same kind of route: the
// callback of an authorize route.
func (ep endpoint) other() endpoint {
	ep.callback = !ep.callback
	return ep
}

// flow finds the sign-in flow of ep's app, and ep with the appid filled
// in.
func (h *Handler) flow(ep endpoint) (*signin.Flow, endpoint, error) {
	name := ep.kind.Name()
	if !ep.named {
		if ep.appid = h.defaults[ep.kind]; ep.appid == "" {
			return nil, ep, &pageError{http.StatusNotFound, "unknown_app", "No " + name + " signs in here."}
		}
	}
	f, ok := h.flows[ep.kind][ep.appid]
	if !ok {
		return nil, ep, &pageError{http.StatusNotFound, "unknown_app", "There is no such " + name + " here."}
	}
	return f, ep, nil
}

func (h *Handler) authorize(ctx context.Context, req events.APIGatewayV2HTTPRequest, flow *signin.Flow, ep endpoint) (events.APIGatewayV2HTTPResponse, []any, error) {
	q, err := query(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, nil, err
	}
	base, elsewhere, err := h.site.Base(arrival(req))
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, nil, err
	}
	if elsewhere {
		if !q.Has(movedParam) {
			// The cookie must be set on the host the callback is served
			// from: start again there.
			q.Set(movedParam, "1")
			return redirect(base + ep.path() + "?" + q.Encode()), []any{"outcome", "moved_to_public_url"}, nil
		}
		// Sent there already, yet the request names another host: a proxy
		// in front (CloudFront) that does not pass the Host on. The
		// browser is where it was sent, so carry on.
		h.d.Log.InfoContext(ctx, "public URL", "outcome", "arrived_under_another_host", "domain", req.RequestContext.DomainName)
	}
	// WeChat comes back to this app's callback: the default app's routes
	// stay among themselves, so that redirect_uri is what it always was.
	start, err := flow.Begin(ctx, q.Get("scope"), q.Get("return_to"), base+ep.other().path())
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, nil, err
	}
	resp := redirect(start.Authorize)
	resp.Cookies = []string{start.Binding.String()}
	return resp, []any{"outcome", "redirect_to_wechat", "scope", start.Scope}, nil
}

// arrival is the base URL the request came in at, as far as API Gateway's
// event tells: https://, the domain name and, on the execute-api host of a
// named stage (not $default), the stage's path segment, which API Gateway
// keeps in rawPath there. Behind a custom domain nothing in the event
// reliably names the API mapping's path (reports differ on rawPath; the
// mapping key is not a field): the public URL is where it is known.
func arrival(req events.APIGatewayV2HTTPRequest) string {
	rc := req.RequestContext
	if rc.DomainName == "" || strings.ContainsAny(rc.DomainName, "/?#@\\ ") {
		return ""
	}
	base := "https://" + rc.DomainName
	if st := rc.Stage; st != "" && st != "$default" && rc.APIID != "" &&
		strings.HasPrefix(rc.DomainName, rc.APIID+".execute-api.") && strings.HasPrefix(req.RawPath, "/"+st+"/") {
		base += "/" + url.PathEscape(st)
	}
	return base
}

func (h *Handler) callback(ctx context.Context, req events.APIGatewayV2HTTPRequest, flow *signin.Flow, ep endpoint) (events.APIGatewayV2HTTPResponse, []any, error) {
	q, err := query(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, nil, err
	}
	// The callback is where the authorize route sent the platform back
	// to: its scheme names the binding cookie to look for.
	callback := ""
	if base, _, err := h.site.Base(arrival(req)); err == nil {
		callback = base + ep.path()
	}
	back, err := flow.Finish(ctx, signin.Return{
		State: q.Get("state"), Code: q.Get("code"), ReturnTo: q.Get("return_to"), Cookies: req.Cookies, Callback: callback,
	})
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, nil, err
	}
	return redirect(back.URL()), []any{"outcome", back.Outcome()}, nil
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
