// Package pushevent applies the official account's pushed events to the
// identity store: a follow links the follower (by unionid from user/info)
// and marks them subscribed, an unfollow marks them unsubscribed and keeps
// the link, and a parametric QR scene carrying a binding token binds the
// business's external_id.
package pushevent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"wxbridge/shared/binding"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// WeChat is the platform call a follow needs.
type WeChat interface {
	Follower(ctx context.Context, appid, openid string) (wechat.Follower, error)
}

// Reports records template-message delivery reports in the send ledger
// (notify.Ledger), reporting whether the msgid was one of wxbridge's.
type Reports interface {
	Report(ctx context.Context, appid, msgid, status string) (bool, error)
}

// People is the identity store as follow events use it.
type People interface {
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
}

// Processor applies events for one official account.
type Processor struct {
	AppID    string // the official account's appid
	WeChat   WeChat
	People   People
	Bindings *binding.Verifier // nil: scenes never bind
	Reports  Reports           // nil: delivery reports are ignored
	Log      *slog.Logger
	Metrics  *observe.Metrics
}

// Result says what an event did.
type Result struct {
	Action string // "linked", "unsubscribed", "bound", "reported", "ignored"
	UID    string
}

// Process applies one event. Events wxbridge does not act on are ignored
// (and counted), never refused. Process is idempotent: the same event twice
// changes nothing the second time.
func (p *Processor) Process(ctx context.Context, e push.Event) (Result, error) {
	p.Metrics.Count("PushEvents", "kind", e.Kind())
	switch e.Kind() {
	case push.Subscribe:
		return p.subscribe(ctx, e, strings.TrimPrefix(e.EventKey, "qrscene_"))
	case push.Scan:
		return p.scan(ctx, e)
	case push.Unsubscribe:
		res, err := p.People.Link(ctx, identity.Sighting{
			OA: &identity.OASighting{AppID: p.AppID, OpenID: e.FromUserName, Follow: &identity.Follow{Subscribed: false, At: e.At()}},
		})
		return Result{Action: "unsubscribed", UID: res.Person.UID}, err
	}
	if e.Kind() == push.TemplateFinish && p.Reports != nil && e.MsgID != "" {
		return p.report(ctx, e)
	}
	// Messages and menu events are not ours.
	p.Metrics.Count("PushIgnored", "kind", e.Kind())
	return Result{Action: "ignored"}, nil
}

// report records a template message's delivery report in the send ledger.
// A msgid the ledger does not know (sent by another system on the same
// account) is ignored; a ledger outage is retried like any store outage.
func (p *Processor) report(ctx context.Context, e push.Event) (Result, error) {
	matched, err := p.Reports.Report(ctx, p.AppID, e.MsgID, e.Status)
	if err != nil {
		return Result{}, err
	}
	if !matched {
		// The ledger finds the job through an index that is only
		// eventually consistent and written when the send is settled: a
		// report that arrives early goes through the retry queue until it
		// is a while old; then it is not one of ours.
		if time.Since(e.At()) < reportPatience {
			return Result{}, errReportEarly
		}
		p.Metrics.Count("PushIgnored", "kind", e.Kind())
		return Result{Action: "ignored"}, nil
	}
	p.Metrics.Count("DeliveryReports", "status", e.Status)
	return Result{Action: "reported"}, nil
}

func (p *Processor) subscribe(ctx context.Context, e push.Event, scene string) (Result, error) {
	info, err := p.WeChat.Follower(ctx, p.AppID, e.FromUserName)
	switch {
	case err == nil:
	case wechat.Retryable(err):
		return Result{}, err // worth retrying: the queue brings it back
	default:
		// user/info will not answer this follower (a configuration or
		// user-state error): record the follow without the unionid rather
		// than lose it; a login, OAuth or backfill can link them later.
		p.Log.Error("user/info failed, follow recorded without unionid", "error", err, "rid", wechat.RID(err), "outcome", "degraded")
		info = wechat.Follower{}
	}
	s := identity.Sighting{
		OA:      &identity.OASighting{AppID: p.AppID, OpenID: e.FromUserName, Follow: &identity.Follow{Subscribed: true, At: e.At(), Scene: info.SubscribeScene}},
		UnionID: info.UnionID,
	}
	// user/info answers subscribe=0, without unionid, when the follower has
	// unfollowed since: the follow still happened at its time.
	return p.link(ctx, s, scene)
}

// scan is a follower scanning a parametric code: only a binding scene
// matters, and it also links the follower if wxbridge had not met them yet.
func (p *Processor) scan(ctx context.Context, e push.Event) (Result, error) {
	if p.bindingOf(e.EventKey) == "" {
		p.Metrics.Count("PushIgnored", "kind", e.Kind())
		return Result{Action: "ignored"}, nil
	}
	info, err := p.WeChat.Follower(ctx, p.AppID, e.FromUserName)
	if err != nil {
		return Result{}, err
	}
	return p.link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: p.AppID, OpenID: e.FromUserName}, UnionID: info.UnionID}, e.EventKey)
}

// link links s, binding the external_id scene carries if it is a valid
// binding token. A binding that conflicts is reported and dropped, and the
// follow itself is still recorded.
func (p *Processor) link(ctx context.Context, s identity.Sighting, scene string) (Result, error) {
	s.ExternalID = p.bindingOf(scene)
	res, err := p.People.Link(ctx, s)
	if errors.Is(err, identity.ErrConflict) && s.ExternalID != "" {
		p.Log.Warn("binding refused", "request_id", observe.RequestID(ctx), "outcome", "binding_refused", "error", err)
		p.Metrics.Count("LinkConflicts", "source", "qrscene")
		s.ExternalID = ""
		res, err = p.People.Link(ctx, s)
	}
	if err != nil {
		return Result{}, err
	}
	p.Metrics.Count("Links", "source", "push", "outcome", string(res.Outcome))
	action := "linked"
	if s.ExternalID != "" {
		action = "bound"
	}
	return Result{Action: action, UID: res.Person.UID}, nil
}

// bindingOf returns the external_id a scene binds, or "" when the scene is
// not a valid binding token (most scenes are plain marketing codes).
func (p *Processor) bindingOf(scene string) string {
	if p.Bindings == nil || scene == "" {
		return ""
	}
	id, err := p.Bindings.Verify(scene)
	if err != nil {
		return ""
	}
	return id
}

// reportPatience is how long a delivery report that matches no send is
// retried before it is taken for someone else's.
const reportPatience = 2 * time.Minute

// errReportEarly is a delivery report that matched no send yet.
var errReportEarly = errors.New("follow: delivery report matches no send yet")

// Retryable reports whether an event that failed with err may succeed
// later: platform hiccups, token and quota trouble, store outages and lost
// races may; invalid identities, conflicts and errors about the user or our
// request will not.
func Retryable(err error) bool {
	if errors.Is(err, identity.ErrInvalid) || errors.Is(err, identity.ErrConflict) {
		return false
	}
	switch wechat.ClassOf(err) {
	case wechat.ClassUserState, wechat.ClassSender:
		return false
	}
	return true
}
