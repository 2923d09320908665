package notify

import (
	"cmp"
	"slices"
	"time"

	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/reach"
)

// option is one channel of a job for one person: the step to call, or
// why wxbridge knows without calling WeChat that it cannot reach them.
type option struct {
	step
	skip string // why the channel cannot reach the person; "" to call it
	// rank orders the channels of a job with "channels": "any", cheapest
	// reachable first (the cost constants below).
	rank cost
	// spend is the one-time consent a send on this channel uses up, as
	// recorded (reach.Use after the send); empty when none is recorded or
	// the consent is long-term.
	spend string
}

// cost is the order in which "channels": "any" tries the channels, lowest
// first: first those wxbridge knows reach the person, cheapest first, then
// those it knows nothing about, likeliest first.
type cost int

const (
	// A customer-service message inside the window (48 hours after the
	// person's message, a minute after a follow, scan or menu click)
	// costs no consent and no quota.
	costWindowOpen cost = iota
	// A long-term OA subscribe consent is not used up by a send.
	costLongTerm
	// A template message needs only the follow, but spends the account's
	// daily template quota (45009 when it runs out).
	costFollower
	// A one-time consent is scarce: the person granted one notification,
	// and the send uses it up.
	costOneTime
	// Nothing recorded: the person may still be reachable (a follow or a
	// consent from before wxbridge saw the account's pushes). A template
	// message first (an OA identity usually comes with a follow), then the
	// consents, and the customer-service window last: wxbridge sees every
	// interaction the account is pushed, so an open window it did not
	// record is the least likely.
	costUnknownFollow
	costUnknownConsent
	costUnknownWindow
)

// reachKeys are the keys of the reach state planning job for p reads: the
// person's identity in the official account the job sends from, for its
// consents and window, and in the mini program, for its consents, when the
// job may use them.
func reachKeys(job Job, from senders, p identity.Person) []reach.Key {
	var oa, mp bool
	for _, ch := range job.Plan() {
		switch ch {
		case OASubscribe, CustomerService:
			oa = true
		case Subscribe:
			mp = true
		}
	}
	var keys []reach.Key
	if id, ok := p.OA[from.oa]; oa && ok && from.oa != "" && id.OpenID != "" {
		keys = append(keys, reach.Key{AppID: from.oa, OpenID: id.OpenID})
	}
	if id, ok := p.MP[from.mp]; mp && ok && from.mp != "" && id.OpenID != "" {
		keys = append(keys, reach.Key{AppID: from.mp, OpenID: id.OpenID})
	}
	return keys
}

// options lists the job's channels for p, sent from the apps from, given
// what the reach store knows (known, by key; missing keys know nothing) at
// now: in the job's
// order, or for "channels": "any" those known not to reach first, then
// the others cheapest first (ties in the order of Job.Plan). The options
// with a skip reason are not to be called.
func options(job Job, from senders, p identity.Person, known map[reach.Key]reach.State, now time.Time) []option {
	var out []option
	for _, ch := range job.Plan() {
		out = append(out, optionFor(job, from, ch, p, known, now))
	}
	if job.Channels.Any() {
		// The channels known not to reach go first: all of them are
		// noted as skipped, whichever channel sends.
		called := func(o option) int {
			if o.skip != "" {
				return 0
			}
			return 1
		}
		slices.SortStableFunc(out, func(a, b option) int {
			return cmp.Or(cmp.Compare(called(a), called(b)), cmp.Compare(a.rank, b.rank))
		})
	}
	return out
}

// optionFor is what wxbridge knows of channel ch for p, sent from the apps
// from: the person's openid there, or why the channel cannot reach them.
func optionFor(job Job, from senders, ch Channel, p identity.Person, known map[reach.Key]reach.State, now time.Time) option {
	o := option{step: step{channel: ch}}
	oa, hasOA := p.OA[from.oa]
	hasOA = hasOA && from.oa != "" && oa.OpenID != ""
	noOA := func() string { // only for a skipped channel: it lists the person's other accounts
		return noIdentity(config.KindOfficialAccount, from.oa, from.oaNamed,
			elsewhere(p.OA, from.oa, func(id identity.OAIdentity) string { return id.OpenID }))
	}
	if !job.Has(ch) { // Validate refuses such a job
		o.skip = "the job has no message for it"
		return o
	}
	switch ch {
	case Template:
		o.step.appid = from.oa
		switch {
		case !hasOA:
			o.skip = noOA()
		case unfollowed(oa):
			o.skip = "does not follow the official account"
		case oa.Subscribed:
			o.rank = costFollower
		default:
			o.rank = costUnknownFollow
		}
		o.step.openid = oa.OpenID
	case Subscribe:
		o.step.appid = from.mp
		id, ok := p.MP[from.mp]
		if from.mp == "" || !ok || id.OpenID == "" {
			o.skip = noIdentity(config.KindMiniProgram, from.mp, from.mpNamed,
				elsewhere(p.MP, from.mp, func(id identity.MPIdentity) string { return id.OpenID }))
			break
		}
		o.step.openid = id.OpenID
		st := known[reach.Key{AppID: from.mp, OpenID: id.OpenID}]
		o.rank, o.spend, o.skip = consent(st, job.Subscribe.TemplateID)
	case OASubscribe:
		o.step.appid = from.oa
		if !hasOA {
			o.skip = noOA()
			break
		}
		o.step.openid = oa.OpenID
		st := known[reach.Key{AppID: from.oa, OpenID: oa.OpenID}]
		o.rank, o.spend, o.skip = consent(st, job.OASubscribe.TemplateID)
	case CustomerService:
		o.step.appid = from.oa
		if !hasOA {
			o.skip = noOA()
			break
		}
		o.step.openid = oa.OpenID
		st := known[reach.Key{AppID: from.oa, OpenID: oa.OpenID}]
		o.rank, o.skip = window(st, oa, now)
	default:
		o.skip = "not a channel this worker sends on"
	}
	return o
}

// consent is what the recorded consents say of a subscribe template (an
// OA subscribe notification's or a mini-program subscribe message's): its
// rank, the one-time consent a send spends, or why it cannot reach
// (WeChat would answer 43101). Nothing recorded may still be a consent
// given before wxbridge saw it.
func consent(st reach.State, templateID string) (rank cost, spend, skip string) {
	c, ok := st.Consents[templateID]
	switch {
	case !ok:
		return costUnknownConsent, "", ""
	case c.Rejected:
		return costUnknownConsent, "", "consent to template " + templateID + " rejected"
	case c.Gone():
		return costUnknownConsent, "", "consents to template " + templateID + " used up"
	case c.LongTerm:
		return costLongTerm, "", ""
	}
	return costOneTime, templateID, ""
}

// window is what the recorded interactions say of the customer-service
// window at now: its rank, or why it cannot reach. The platform opens it
// for 48 hours after a message from the person, and for a minute after a
// follow, a scan or a menu click (reach.State.WindowOpen). Nothing recorded
// may be a message from before wxbridge received the account's pushes,
// unless the person's last recorded event (or follow) is older than the
// 48 hours: a message since would have been recorded. A refusal (45015,
// 45047) recorded after every interaction closes it until the next one.
func window(st reach.State, oa identity.OAIdentity, now time.Time) (cost, string) {
	last := st.LastBrief
	if oa.Subscribed && oa.SubscribedAt != nil && oa.SubscribedAt.After(last) {
		last = *oa.SubscribedAt
	}
	switch {
	case unfollowed(oa):
		return costUnknownWindow, "does not follow the official account"
	case st.WindowOpen(now):
		return costWindowOpen, ""
	case st.WindowSpent():
		return costUnknownWindow, "WeChat refused a customer-service message at " + stamp(st.Refused) + " (45015 or 45047), and the person has not interacted since"
	case st.WindowClosed(now):
		return costUnknownWindow, "window closed: the person's last message was at " + stamp(st.LastInteraction) + ", more than 48 hours ago"
	case st.LastInteraction.IsZero() && !last.IsZero() && now.Sub(last) > reach.Window:
		return costUnknownWindow, "window closed: no message from the person recorded since " + stamp(last) + ", more than 48 hours ago"
	}
	return costUnknownWindow, ""
}

// unfollowed reports whether the person is known not to follow the
// official account: a follow or an unfollow was seen, and the last was an
// unfollow.
func unfollowed(oa identity.OAIdentity) bool {
	return !oa.Subscribed && (oa.SubscribedAt != nil || oa.UnsubscribedAt != nil)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
