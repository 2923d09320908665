package handler

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/reach"
)

// Consents records subscribe consents (reach.Store).
type Consents interface {
	Consented(ctx context.Context, k reach.Key, cs []reach.Consent) error
}

// WithConsents serves POST /mp/subscribe-consents, recording in consents
// what the caller answered wx.requestSubscribeMessage; lt names the
// templates whose consents are long-term (the answer does not say).
// Without it the route is not found.
func WithConsents(consents Consents, lt reach.LongTerm) Option {
	return func(h *Handler) { h.consents, h.longTerm = consents, lt }
}

// ConsentsResponse is the answer to POST /mp/subscribe-consents.
type ConsentsResponse struct {
	// Recorded counts the templates whose answer was recorded: accept,
	// reject and ban; "filter" (a template the platform left out of the
	// popup) records nothing.
	Recorded int `json:"recorded"`
}

// Limits of a consents body: wx.requestSubscribeMessage asks for at most 3
// templates at once; template ids are 43 characters.
const maxConsents = 20

var templateID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// subscribeConsents records the caller's answers to
// wx.requestSubscribeMessage, sent as the object its success callback got:
// {"<template id>": "accept"|"reject"|"ban"|"filter", "errMsg":
// "requestSubscribeMessage:ok"}. accept adds a one-time consent (or a
// long-term one), reject declines this request (consents given before
// stay), ban (the template is banned by the platform) withdraws it. The
// answer carries no time of its own: the consent is recorded at the
// request's arrival.
func (h *Handler) subscribeConsents(ctx context.Context, req events.APIGatewayV2HTTPRequest, app config.App) (any, error) {
	if h.consents == nil {
		return nil, httpapi.Fail(http.StatusNotFound, "not_found", "no route %s", httpapi.Route(req))
	}
	// Subscribe messages are one mini program's: another app's session
	// has no openid in it to record them for.
	s, err := h.callerIn(req, app)
	if err != nil {
		return nil, err
	}
	var in map[string]json.RawMessage
	if err := httpapi.DecodeJSON(req, MaxBody, &in); err != nil {
		return nil, err
	}
	cs, err := h.consentsOf(in, h.now())
	if err != nil {
		return nil, err
	}
	if err := h.consents.Consented(ctx, reach.Key{AppID: s.AppID, OpenID: s.OpenID}, cs); err != nil {
		return nil, err
	}
	h.log.InfoContext(ctx, "subscribe consents", "outcome", "recorded", "uid", s.UID, "templates", len(cs))
	return ConsentsResponse{Recorded: len(cs)}, nil
}

// consentsOf reads a wx.requestSubscribeMessage result into consent
// events at now, or refuses it (400).
func (h *Handler) consentsOf(in map[string]json.RawMessage, now time.Time) ([]reach.Consent, error) {
	bad := func(format string, args ...any) error {
		return httpapi.Fail(http.StatusBadRequest, "invalid_request", format, args...)
	}
	if msg, ok := in["errMsg"]; ok {
		var s string
		if json.Unmarshal(msg, &s) != nil || !strings.HasSuffix(s, ":ok") {
			return nil, bad("errMsg says wx.requestSubscribeMessage failed: send only the result of a call that succeeded")
		}
	}
	ids := make([]string, 0, len(in))
	for id := range in {
		if id != "errMsg" && id != "errCode" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 || len(ids) > maxConsents {
		return nil, bad(`want the object wx.requestSubscribeMessage resolved with: {"<template id>": "accept", ...}, 1 to %d templates`, maxConsents)
	}
	sort.Strings(ids)
	var cs []reach.Consent
	for _, id := range ids {
		var answer string
		if !templateID.MatchString(id) || json.Unmarshal(in[id], &answer) != nil {
			return nil, bad("%q is not a template id with its answer", clip(id))
		}
		switch answer {
		case "accept":
			cs = append(cs, h.longTerm.Accepted(id, now))
		case "reject":
			cs = append(cs, reach.Consent{TemplateID: id, Declined: true, At: now})
		case "ban":
			cs = append(cs, reach.Consent{TemplateID: id, Rejected: true, At: now})
		case "filter":
		default:
			return nil, bad("template %s: answer %q is not accept, reject, ban or filter", id, clip(answer))
		}
	}
	return cs, nil
}
