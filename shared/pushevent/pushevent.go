// Package pushevent applies the official account's server-push events: a
// follow links the follower (by unionid from user/info) and marks them
// subscribed, an unfollow marks them unsubscribed and keeps the link, a
// parametric QR scene carrying a binding token binds the business's
// external_id, and a delivery report (TEMPLATESENDJOBFINISH for a template
// message, subscribe_msg_sent_event for a subscribe notification) settles
// its send-ledger entry. The person's answers to the subscribe-notification
// popup and their withdrawals (subscribe_msg_popup_event,
// subscribe_msg_change_event) are recorded as consents, and every
// interaction that opens the customer-service window (a message; a follow,
// a scan or a menu click, for a minute) as such (shared/reach). Everything
// else is acknowledged and ignored.
//
// A follower is never recorded without their unionid because user/info was
// unavailable: such an event fails retryably and waits (in follow-event's
// retry queue) until user/info answers. Only an answer about the openid
// itself (40003) records the follow without it.
//
// Follow state ends where the platform says, whatever the order pushes
// arrive in. Push times have whole seconds, so a follow, an unfollow and a
// follow again can share one; the identity store then takes a different
// state of that second only from a user/info answer asked after the
// recorded state was last known to hold (identity.Follow.Seen). An event
// whose change lost such a tie asks user/info again and records its
// answer; one that cannot ask (user/info down) waits in the retry queue,
// and one that user/info will not answer about (40003) changes nothing it
// cannot confirm.
package pushevent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"wxbridge/shared/binding"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/reach"
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

// Reach records what the pushes say about reaching the person
// (reach.Store): their consents and interactions.
type Reach interface {
	Interacted(ctx context.Context, k reach.Key, at time.Time) error
	InteractedBriefly(ctx context.Context, k reach.Key, at time.Time) error
	Consented(ctx context.Context, k reach.Key, cs []reach.Consent) error
}

// People is the identity store as push events use it.
type People interface {
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
}

// TokenUses spends binding tokens (binding.Uses): each binds one WeChat
// user only.
type TokenUses interface {
	Spend(ctx context.Context, t binding.Token, holder string) (first bool, err error)
	Unspend(ctx context.Context, t binding.Token, holder string) error
}

// Processor applies events for one official account.
type Processor struct {
	AppID    string // the official account's appid
	WeChat   WeChat
	People   People
	Bindings *binding.Verifier // nil: scenes never bind
	Uses     TokenUses         // nil: scenes never bind (a token must be single-use)
	Reports  Reports           // nil: delivery reports are ignored
	Reach    Reach             // nil: consents and interactions are not recorded
	// LongTerm names the templates whose consents are long-term: the
	// popup event does not say.
	LongTerm reach.LongTerm
	Log      *slog.Logger
	Metrics  *observe.Metrics
}

// Result says what an event did.
type Result struct {
	Action string // "linked", "unsubscribed", "bound", "reported", "consented", "interacted", "ignored"
	UID    string
	// Follow is the follow state a subscribe or unsubscribe recorded
	// (push.Subscribe or push.Unsubscribe): the platform's, when it
	// settled the order of events within one second.
	Follow string
}

// Process applies one event as it is pushed. Events wxbridge does not act
// on are ignored (and counted), never refused. Process is idempotent: the
// same event twice changes nothing the second time.
func (p *Processor) Process(ctx context.Context, e push.Event) (Result, error) {
	return p.apply(ctx, e, false)
}

// ProcessLate applies an event that may be out of order with the
// follower's other events of the same second: one from the retry queue, or
// a follow-state event whose second has seen another already. The
// platform's current state (user/info's subscribe) decides instead of the
// event, and the event waits (fails retryably) while user/info cannot say.
func (p *Processor) ProcessLate(ctx context.Context, e push.Event) (Result, error) {
	return p.apply(ctx, e, true)
}

func (p *Processor) apply(ctx context.Context, e push.Event, late bool) (Result, error) {
	p.Metrics.Count("PushEvents", "kind", e.Kind())
	// The interaction is recorded first: the event's own handling may
	// be retried, and recording it again changes nothing.
	interacted, err := p.interaction(ctx, e)
	if err != nil {
		return Result{}, err
	}
	switch e.Kind() {
	case push.Subscribe, push.Unsubscribe:
		return p.followState(ctx, e, late)
	case push.Scan:
		return p.scan(ctx, e)
	case push.SubscribePopup, push.SubscribeChange:
		if p.Reach != nil {
			return p.consent(ctx, e)
		}
	case push.SubscribeSent:
		if p.Reports != nil {
			return p.sent(ctx, e)
		}
	case push.TemplateFinish:
		if p.Reports != nil && e.MsgID != "" {
			return p.report(ctx, e, []delivery{{e.MsgID, e.Status}})
		}
	}
	if interacted {
		return Result{Action: "interacted"}, nil
	}
	// Other events are not ours.
	p.Metrics.Count("PushIgnored", "kind", e.Kind())
	return Result{Action: "ignored"}, nil
}

// interaction records a push that opens the customer-service window
// (custom/send): any message the person sends opens it for 48 hours; a
// follow, a scan of a parametric code, or a click of a menu that pushes
// (CLICK, scancode_push, scancode_waitmsg: not VIEW) for a minute. It
// reports whether e was one.
func (p *Processor) interaction(ctx context.Context, e push.Event) (bool, error) {
	if p.Reach == nil {
		return false, nil
	}
	k := reach.Key{AppID: p.AppID, OpenID: e.FromUserName}
	if e.MsgType != "event" {
		return true, p.Reach.Interacted(ctx, k, e.At())
	}
	switch e.Event {
	case push.Subscribe, push.Scan, "CLICK", "scancode_push", "scancode_waitmsg":
		return true, p.Reach.InteractedBriefly(ctx, k, e.At())
	}
	return false, nil
}

// consent records the person's answers to the subscribe-notification
// popup, or their withdrawals in the account's notification settings (a
// change event only ever rejects). A popup's "reject" declines that
// request only: consents given before stay.
func (p *Processor) consent(ctx context.Context, e push.Event) (Result, error) {
	var cs []reach.Consent
	for _, t := range e.Templates {
		switch {
		case t.Status == "accept":
			cs = append(cs, p.LongTerm.Accepted(t.TemplateID, e.At()))
		case t.Status == "reject" && e.Event == push.SubscribeChange:
			cs = append(cs, reach.Consent{TemplateID: t.TemplateID, Rejected: true, At: e.At()})
		case t.Status == "reject":
			cs = append(cs, reach.Consent{TemplateID: t.TemplateID, Declined: true, At: e.At()})
		}
	}
	if err := p.Reach.Consented(ctx, reach.Key{AppID: p.AppID, OpenID: e.FromUserName}, cs); err != nil {
		return Result{}, err
	}
	return Result{Action: "consented"}, nil
}

// sent records a subscribe_msg_sent_event: each notification's delivery
// report, as for template messages. "failed:user block" is the person
// refusing the template's notifications, which is also recorded as a
// rejection: the next send skips the template until they accept it again.
func (p *Processor) sent(ctx context.Context, e push.Event) (Result, error) {
	var ds []delivery
	var refused []reach.Consent
	for _, t := range e.Templates {
		status := t.ErrorStatus
		if status == "" && t.ErrorCode == "0" {
			status = "success"
		}
		if t.MsgID != "" {
			ds = append(ds, delivery{t.MsgID, status})
		}
		if status == "failed:user block" || status == "failed: user block" {
			refused = append(refused, reach.Consent{TemplateID: t.TemplateID, Rejected: true, At: e.At()})
		}
	}
	if len(refused) > 0 && p.Reach != nil {
		if err := p.Reach.Consented(ctx, reach.Key{AppID: p.AppID, OpenID: e.FromUserName}, refused); err != nil {
			return Result{}, err
		}
	}
	if len(ds) == 0 {
		p.Metrics.Count("PushIgnored", "kind", e.Kind())
		return Result{Action: "ignored"}, nil
	}
	return p.report(ctx, e, ds)
}

// delivery is one message's delivery report.
type delivery struct{ msgid, status string }

// report records delivery reports in the send ledger. A msgid the ledger
// does not know (sent by another system on the same account) is ignored;
// a ledger outage is retried like any store outage.
func (p *Processor) report(ctx context.Context, e push.Event, ds []delivery) (Result, error) {
	matched := true
	for _, d := range ds {
		ok, err := p.Reports.Report(ctx, p.AppID, d.msgid, d.status)
		if err != nil {
			return Result{}, err
		}
		if ok {
			p.Metrics.Count("DeliveryReports", "status", d.status)
		}
		matched = matched && ok
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
	return Result{Action: "reported"}, nil
}

// follower asks user/info about the event's follower, and says when it
// asked: the answer is the platform's state at that time or later. seen is
// zero when the platform answered about the openid itself (40003, class
// user_state): asking again will not help, and the event is applied on its
// own word. Any other failure is returned, to be retried: a follow applied
// without the unionid would make the follower a second, unlinked person.
func (p *Processor) follower(ctx context.Context, e push.Event) (info wechat.Follower, seen time.Time, err error) {
	seen = time.Now()
	info, err = p.WeChat.Follower(ctx, p.AppID, e.FromUserName)
	switch {
	case err == nil:
		return info, seen, nil
	case wechat.ClassOf(err) == wechat.ClassUserState:
		p.Log.ErrorContext(ctx, "user/info refused the openid, event applied without it", "outcome", "degraded", "error", err, "rid", wechat.RID(err))
		p.Metrics.Count("PushDegraded", "kind", e.Kind())
		return wechat.Follower{}, time.Time{}, nil
	}
	return wechat.Follower{}, time.Time{}, fmt.Errorf("user/info: %w", err)
}

// settleAttempts bounds how often a follow-state event asks user/info
// again because its change lost its second to one recorded meanwhile.
const settleAttempts = 3

// followState applies a subscribe or an unsubscribe. A follow always asks
// user/info (for the unionid), and so does a late event; an unfollow in
// order is taken on its own word. user/info's subscribe=0 (without
// unionid) for a follow means the follower has unfollowed since: the
// follow is recorded as the state the platform ends in.
//
// When the change loses a tie within its second (another state of that
// second was recorded, and this one cannot be shown to be newer), the
// event asks user/info again and records that answer, which is newer than
// anything recorded before it was asked.
func (p *Processor) followState(ctx context.Context, e push.Event, late bool) (Result, error) {
	scene := strings.TrimPrefix(e.EventKey, "qrscene_")
	ask := late || e.Kind() == push.Subscribe
	bound := false
	for attempt := 1; ; attempt++ {
		var info wechat.Follower
		var seen time.Time
		if ask {
			var err error
			if info, seen, err = p.follower(ctx, e); err != nil {
				return Result{}, err
			}
		}
		following := info.Follows()
		if seen.IsZero() {
			following = e.Kind() == push.Subscribe // the event's own word
		}
		s := identity.Sighting{
			OA:      &identity.OASighting{AppID: p.AppID, OpenID: e.FromUserName, Follow: &identity.Follow{Subscribed: following, At: e.At(), Scene: info.SubscribeScene, Seen: seen}},
			UnionID: info.UnionID,
			Source:  identity.SourcePush,
		}
		res, person, err := p.record(ctx, e, s, scene)
		if err != nil {
			return Result{}, err
		}
		res.Follow = followState(following)
		if bound = bound || res.Action == "bound"; bound {
			res.Action = "bound"
		}
		switch {
		case !tieLost(person, s):
			return res, nil
		case ask && seen.IsZero():
			// user/info will not answer about this openid: nothing can
			// confirm the event, so it changes nothing recorded.
			return res, nil
		case attempt == settleAttempts:
			return Result{}, errUnsettled
		}
		p.Log.InfoContext(ctx, "follow state of this second recorded meanwhile, asking user/info", "outcome", "settling_tie", "attempt", attempt)
		// The binding, if any, was recorded the first time.
		ask, scene = true, ""
	}
}

// record links the sighting of a follow-state event: a follow through
// link (it may carry a binding scene), an unfollow as it is.
func (p *Processor) record(ctx context.Context, e push.Event, s identity.Sighting, scene string) (Result, identity.Person, error) {
	if e.Kind() == push.Subscribe {
		return p.link(ctx, s, scene)
	}
	res, err := p.People.Link(ctx, s)
	if err != nil {
		return Result{}, identity.Person{}, err
	}
	action := "unsubscribed"
	if s.OA.Follow.Subscribed {
		action = "linked"
	}
	return Result{Action: action, UID: res.Person.UID}, res.Person, nil
}

// tieLost reports whether the follow change of s lost a tie: person holds
// a different follow state changed in the same second.
func tieLost(person identity.Person, s identity.Sighting) bool {
	oa, ok := person.OA[s.OA.AppID]
	if !ok || oa.Subscribed == s.OA.Follow.Subscribed {
		return false
	}
	for _, t := range []*time.Time{oa.SubscribedAt, oa.UnsubscribedAt} {
		if t != nil && t.Unix() > s.OA.Follow.At.Unix() {
			return false // a later second: the event is simply old
		}
	}
	return true
}

// errUnsettled is a follow-state event whose change kept losing its second
// to changes recorded while user/info was being asked: it waits and tries
// again from the retry queue.
var errUnsettled error = unsettledError{}

type unsettledError struct{}

func (unsettledError) Error() string {
	return "pushevent: the follower's state of this second keeps changing; try again later"
}

// Class makes the wait transient for wechat.Retryable and the alarms.
func (unsettledError) Class() wechat.Class { return wechat.ClassTransient }

func followState(following bool) string {
	if following {
		return push.Subscribe
	}
	return push.Unsubscribe
}

// scan is a follower scanning a parametric code: only a binding scene
// matters, and it also links the follower if wxbridge had not met them yet.
func (p *Processor) scan(ctx context.Context, e push.Event) (Result, error) {
	if _, ok := p.bindingOf(e.EventKey); !ok {
		p.Metrics.Count("PushIgnored", "kind", e.Kind())
		return Result{Action: "ignored"}, nil
	}
	info, err := p.WeChat.Follower(ctx, p.AppID, e.FromUserName)
	if err != nil {
		return Result{}, fmt.Errorf("user/info: %w", err)
	}
	res, _, err := p.link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: p.AppID, OpenID: e.FromUserName}, UnionID: info.UnionID, Source: identity.SourcePush}, e.EventKey)
	return res, err
}

// link links s, binding the external_id scene carries if it is a valid
// binding token this follower may spend, and returns the person as
// recorded. A binding that is refused is logged and counted, and the
// follow itself is still recorded.
func (p *Processor) link(ctx context.Context, s identity.Sighting, scene string) (Result, identity.Person, error) {
	tok, binds := p.bindingOf(scene)
	first := false
	if binds {
		var err error
		if s.ExternalID, first, err = p.bind(ctx, tok, s); err != nil {
			return Result{}, identity.Person{}, err
		}
	}
	res, err := p.People.Link(ctx, s)
	if errors.Is(err, identity.ErrConflict) && s.ExternalID != "" {
		p.Log.WarnContext(ctx, "binding refused", "outcome", "binding_refused", "reason", "conflict", "error", err)
		if first {
			// Nothing was bound: the token stays for its rightful user.
			if uerr := p.Uses.Unspend(ctx, tok, holder(s)); uerr != nil {
				p.Log.WarnContext(ctx, "give the binding token back", "outcome", "token_kept", "error", uerr)
			}
		}
		s.ExternalID = ""
		res, err = p.People.Link(ctx, s)
	}
	if err != nil {
		return Result{}, identity.Person{}, err
	}
	p.Metrics.Count("Links", "source", "push", "outcome", string(res.Outcome))
	action := "linked"
	if s.ExternalID != "" {
		action = "bound"
	}
	return Result{Action: action, UID: res.Person.UID}, res.Person, nil
}

// bind spends tok for the follower of s and returns the external_id it
// binds (and whether this was the token's first use), or "" when it binds
// nobody: a follower whose unionid is unknown (the person would be split
// from their mini-program identity, and could not be told from anyone
// else who scanned the code), or a token that already bound someone else.
func (p *Processor) bind(ctx context.Context, tok binding.Token, s identity.Sighting) (externalID string, first bool, err error) {
	if s.UnionID == "" {
		p.Log.WarnContext(ctx, "binding refused", "outcome", "binding_refused", "reason", "unionid_unknown")
		p.Metrics.Count("BindingsRefused", "source", "qrscene", "reason", "unionid_unknown")
		return "", false, nil
	}
	first, err = p.Uses.Spend(ctx, tok, holder(s))
	switch {
	case errors.Is(err, binding.ErrSpent):
		p.Log.WarnContext(ctx, "binding refused", "outcome", "binding_refused", "reason", "token_used")
		p.Metrics.Count("BindingsRefused", "source", "qrscene", "reason", "token_used")
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	return tok.ExternalID, first, nil
}

// holder names the follower of s as binding tokens record who spent them:
// by unionid, the same wherever they present the token.
func holder(s identity.Sighting) string { return identity.UnionKey(s.UnionID).String() }

// bindingOf returns the binding token a scene carries, if it is a valid
// one (most scenes are plain marketing codes).
func (p *Processor) bindingOf(scene string) (binding.Token, bool) {
	if p.Bindings == nil || p.Uses == nil || scene == "" {
		return binding.Token{}, false
	}
	tok, err := p.Bindings.Check(scene)
	return tok, err == nil
}

// reportPatience is how long a delivery report that matches no send is
// retried before it is taken for someone else's.
const reportPatience = 2 * time.Minute

// errReportEarly is a delivery report that matched no send yet.
var errReportEarly = errors.New("pushevent: delivery report matches no send yet")

// Retryable reports whether an event that failed with err may succeed
// later: wechat.Retryable's one answer, except that a sighting the identity
// store refuses (invalid or conflicting identities) stays refused.
func Retryable(err error) bool {
	return !identity.Refused(err) && wechat.Retryable(err)
}
