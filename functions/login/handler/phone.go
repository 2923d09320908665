package handler

import (
	"context"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat"
)

// PhoneView is a verified phone number as clients see it: masked, never
// the number itself.
type PhoneView struct {
	Masked     string    `json:"masked"` // "+****0000"
	VerifiedAt time.Time `json:"verified_at"`
}

func phoneViewOf(p *identity.Phone) *PhoneView {
	if p == nil {
		return nil
	}
	return &PhoneView{Masked: wechat.MaskPhone(p.Number), VerifiedAt: p.VerifiedAt}
}

// PhoneResponse is the answer to POST /mp/phone.
type PhoneResponse struct {
	Phone PhoneView `json:"phone"`
}

// phone records the number the caller verified with the mini program's
// getPhoneNumber button: the button's code, exchanged with
// wxa/business/getuserphonenumber, becomes the person's phone number, taken
// from whoever verified it before. A code works once: when the answer to a
// request that stored the number is lost, the retry is 400 invalid_code,
// and GET /me shows the number stored.
func (h *Handler) phone(ctx context.Context, req events.APIGatewayV2HTTPRequest, app config.App) (any, error) {
	s, err := h.callerIn(req, app)
	if err != nil {
		return nil, err
	}
	var in struct {
		Code string `json:"code"`
	}
	if err := httpapi.DecodeJSON(req, MaxBody, &in); err != nil {
		return nil, err
	}
	if in.Code == "" {
		return nil, httpapi.Fail(http.StatusBadRequest, "invalid_request", "code is required: the code getPhoneNumber's bindgetphonenumber event carries")
	}
	if len(in.Code) > 128 {
		return nil, h.phoneRefused("invalid_code", httpapi.Fail(http.StatusBadRequest, "invalid_code", "code is not a getPhoneNumber code"))
	}
	// The person first: a session whose person is gone must not spend the
	// user's code.
	p, err := h.people.Lookup(ctx, identity.MPKey(app.AppID, s.OpenID))
	if err != nil {
		return nil, h.identityFailure(err)
	}
	ph, err := h.wechat.PhoneNumber(ctx, app.AppID, in.Code)
	if err != nil {
		reason := "failed"
		switch wechat.ClassOf(err) {
		case wechat.ClassCode:
			reason = "invalid_code"
		case wechat.ClassTransient, wechat.ClassQuota, wechat.ClassToken:
			reason = "wechat_unavailable"
		}
		return nil, h.phoneRefused(reason, h.wechatFailure(ctx, "getuserphonenumber", "tap the getPhoneNumber button again", err))
	}
	if ph.WatermarkAppID != app.AppID {
		// The platform vouches for the number in the app of the watermark
		// only: a code from another mini program is not this one's to use.
		return nil, h.phoneRefused("foreign_app", httpapi.Fail(http.StatusBadRequest, "invalid_code", "the code was issued in another mini program"))
	}
	number := ph.E164()
	person, err := h.people.VerifyPhone(ctx, p.UID, app.AppID, number, h.now())
	if err != nil {
		// identity.ErrInvalid (not an E.164 number) is the platform's
		// answer we cannot read: ours to look at, a server error.
		return nil, h.phoneRefused("failed", h.identityFailure(err))
	}
	if person.Phone == nil || person.Phone.Number != number {
		// A more recent verification landed while this request ran:
		// someone else's of this number (it is theirs), or the caller's
		// own of another number (the person keeps that one).
		return nil, h.phoneRefused("superseded", httpapi.Fail(http.StatusConflict, "phone_superseded", "a more recent verification came first: another person's of this number, or your own of another number"))
	}
	h.metrics.Count("PhoneVerifications", "outcome", "verified")
	h.log.InfoContext(ctx, "phone", "outcome", "verified", "uid", person.UID)
	return PhoneResponse{Phone: *phoneViewOf(person.Phone)}, nil
}

// phoneRefused counts a verification that did not record a number, and
// returns err.
func (h *Handler) phoneRefused(reason string, err error) error {
	h.metrics.Count("PhoneVerifications", "outcome", reason)
	return err
}
