package handler

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/config"
	"wxbridge/shared/identity"
)

// MeResponse is the answer to GET /me: the caller's identities and links.
type MeResponse struct {
	PersonView
	// MiniProgram and OfficialAccount are the identities in the default
	// mini program and official account (else the first by appid), as
	// before there were several apps of a kind; Identities lists them all.
	MiniProgram     *AppIdentity `json:"mini_program,omitempty"`
	OfficialAccount *AppIdentity `json:"official_account,omitempty"`
	Identities      []Identity   `json:"identities"`
	UnionIDKnown    bool         `json:"unionid_known"`
	ExternalID      string       `json:"external_id,omitempty"`
	Phone           *PhoneView   `json:"phone,omitempty"`
}

// AppIdentity is the caller's identity in one app; the follow state only
// for an official account, and only when known.
type AppIdentity struct {
	AppID          string     `json:"appid"`
	OpenID         string     `json:"openid"`
	Subscribed     *bool      `json:"subscribed,omitempty"`
	SubscribedAt   *time.Time `json:"subscribed_at,omitempty"`
	UnsubscribedAt *time.Time `json:"unsubscribed_at,omitempty"`
}

// Identity is one entry of GET /me's identities: the app's kind, the
// identity, and when wxbridge first saw it.
type Identity struct {
	Kind config.Kind `json:"kind"`
	AppIdentity
	FirstSeen time.Time `json:"first_seen"`
}

// me answers who the caller is, for a session of any configured app: a
// mini program's or mobile app's login, an official account's web OAuth or
// a website app's QR login (oauth-callback).
func (h *Handler) me(ctx context.Context, req events.APIGatewayV2HTTPRequest, _ config.App) (any, error) {
	s, kind, err := h.caller(req)
	if err != nil {
		return nil, err
	}
	p, err := h.people.Lookup(ctx, keyOf(kind, s.AppID, s.OpenID))
	if errors.Is(err, identity.ErrNotFound) {
		return nil, invalidSession()
	}
	if err != nil {
		return nil, h.identityFailure(err)
	}
	out := MeResponse{
		PersonView: viewOf(p), Identities: identitiesOf(p),
		UnionIDKnown: p.UnionID != "", ExternalID: p.ExternalID, Phone: phoneViewOf(p.Phone),
	}
	out.MiniProgram = h.compatible(out.Identities, config.KindMiniProgram)
	out.OfficialAccount = h.compatible(out.Identities, config.KindOfficialAccount)
	return out, nil
}

// keyOf is the identity key of an openid in an app of kind k.
func keyOf(k config.Kind, appid, openid string) identity.Key {
	switch k {
	case config.KindOfficialAccount:
		return identity.OAKey(appid, openid)
	case config.KindWebsite:
		return identity.WebKey(appid, openid)
	case config.KindMobile:
		return identity.MobileKey(appid, openid)
	}
	return identity.MPKey(appid, openid)
}

// identitiesOf lists p's identities by kind (in config.Kinds' order: mini
// programs, official accounts, website apps, mobile apps), then appid.
func identitiesOf(p identity.Person) []Identity {
	out := []Identity{}
	for appid, id := range p.MP {
		out = append(out, Identity{Kind: config.KindMiniProgram, AppIdentity: AppIdentity{AppID: appid, OpenID: id.OpenID}, FirstSeen: id.FirstSeen})
	}
	for appid, id := range p.OA {
		ai := AppIdentity{AppID: appid, OpenID: id.OpenID, SubscribedAt: id.SubscribedAt, UnsubscribedAt: id.UnsubscribedAt}
		if id.SubscribedAt != nil || id.UnsubscribedAt != nil {
			ai.Subscribed = &id.Subscribed
		}
		out = append(out, Identity{Kind: config.KindOfficialAccount, AppIdentity: ai, FirstSeen: id.FirstSeen})
	}
	for kind, ids := range map[config.Kind]map[string]identity.AppIdentity{config.KindWebsite: p.Web, config.KindMobile: p.Mobile} {
		for appid, id := range ids {
			out = append(out, Identity{Kind: kind, AppIdentity: AppIdentity{AppID: appid, OpenID: id.OpenID}, FirstSeen: id.FirstSeen})
		}
	}
	slices.SortFunc(out, func(a, b Identity) int {
		return cmp.Or(cmp.Compare(slices.Index(config.Kinds, a.Kind), slices.Index(config.Kinds, b.Kind)), cmp.Compare(a.AppID, b.AppID))
	})
	return out
}

// compatible picks the identity of kind k for GET /me's single-app field:
// the default app's, else the first of the kind.
func (h *Handler) compatible(ids []Identity, k config.Kind) *AppIdentity {
	var first *AppIdentity
	for i := range ids {
		if ids[i].Kind != k {
			continue
		}
		if ids[i].AppID == h.defaults[k] {
			return &ids[i].AppIdentity
		}
		if first == nil {
			first = &ids[i].AppIdentity
		}
	}
	return first
}
