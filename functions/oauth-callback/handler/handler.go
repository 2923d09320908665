// Package handler is the oauth-callback function's HTTP shape: the
// official account's web OAuth for H5 pages. GET /oauth/authorize sends the
// browser to the platform's consent page; GET /oauth/callback sends it
// back to the page with a session or an error in the URL fragment; GET
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

// The routes, as served under the API's base URL.
const (
	AuthorizePath = "/oauth/authorize"
	CallbackPath  = "/oauth/callback"
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
	flow  *signin.Flow
	site  signin.Site
	files config.VerifyFiles
	d     Deps
}

// New builds a Handler. The official account's credentials, the signing
// key and at least one origin are required.
func New(cfg config.Config, opts Options, d Deps) (*Handler, error) {
	if err := cfg.Check(config.NeedOfficialAccount, config.NeedSigningKey); err != nil {
		return nil, err
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
	flow, err := signin.New(signin.OfficialAccount(cfg.OfficialAccount.App), origins, cfg.SigningKey, cfg.SigningKeyPrevious, d)
	if err != nil {
		return nil, err
	}
	return &Handler{flow: flow, site: site, files: cfg.VerifyFiles, d: d}, nil
}

// SetClock replaces the clock that states are issued and checked by.
func (h *Handler) SetClock(now func() time.Time) { h.flow.SetClock(now) }

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
	switch route {
	case "GET " + AuthorizePath:
		resp, outcome, err = h.authorize(ctx, req)
	case "GET " + CallbackPath:
		resp, outcome, err = h.callback(ctx, req)
	case "GET " + VerifyPath, "HEAD " + VerifyPath:
		resp, outcome = h.verifyFile(req)
	default:
		err = &pageError{http.StatusNotFound, "not_found", "There is no such page."}
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

func (h *Handler) authorize(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, []any, error) {
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
			return redirect(base + AuthorizePath + "?" + q.Encode()), []any{"outcome", "moved_to_public_url"}, nil
		}
		// Sent there already, yet the request names another host: a proxy
		// in front (CloudFront) that does not pass the Host on. The
		// browser is where it was sent, so carry on.
		h.d.Log.InfoContext(ctx, "public URL", "outcome", "arrived_under_another_host", "domain", req.RequestContext.DomainName)
	}
	start, err := h.flow.Begin(ctx, q.Get("scope"), q.Get("return_to"), base+CallbackPath)
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

func (h *Handler) callback(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, []any, error) {
	q, err := query(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, nil, err
	}
	// The callback is where /oauth/authorize sent the platform back to:
	// its scheme names the binding cookie to look for.
	callback := ""
	if base, _, err := h.site.Base(arrival(req)); err == nil {
		callback = base + CallbackPath
	}
	back, err := h.flow.Finish(ctx, signin.Return{
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
