package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"wxbridge/shared/backoff"
	"wxbridge/shared/config"
	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/queue"
	"wxbridge/shared/reach"
	"wxbridge/shared/wechat"
)

// People is the identity store as sending uses it.
type People interface {
	Lookup(ctx context.Context, k identity.Key) (identity.Person, error)
	ByUID(ctx context.Context, uid string) (identity.Person, error)
	ByPhone(ctx context.Context, number string) (identity.Person, error)
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
}

// Apps says which kind of app each configured appid is (config.Config is
// one): the apps a job's from may name.
type Apps interface {
	KindOf(appid string) (config.Kind, bool)
}

// WeChat is the platform's send APIs.
type WeChat interface {
	SendTemplate(ctx context.Context, appid string, m wechat.TemplateMessage) (string, error)
	SendSubscribe(ctx context.Context, appid string, m wechat.SubscribeMessage) error
	SendOASubscribe(ctx context.Context, appid string, m wechat.OASubscribeMessage) (string, error)
	SendCustom(ctx context.Context, appid string, m wechat.CustomMessage) error
}

// Reach is what wxbridge knows of how each person can be reached
// (shared/reach): consents and the customer-service window.
type Reach interface {
	Get(ctx context.Context, keys ...reach.Key) (map[reach.Key]reach.State, error)
	Use(ctx context.Context, k reach.Key, templateID string) error
	Lost(ctx context.Context, k reach.Key, templateID string) error
	WindowRefused(ctx context.Context, k reach.Key, at time.Time) error
}

// DefaultRecipientWait is how long a job addressed to someone wxbridge has
// not linked yet keeps coming back before it is UNDELIVERABLE: long enough
// for a follow held in the push retry queue (WeChat slow, a token being
// fixed) to be linked.
const DefaultRecipientWait = 15 * time.Minute

// Sender sends jobs: it resolves the recipient, claims the job in the
// ledger, tries the channels in order and records the outcome. A channel
// wxbridge knows cannot reach the person (not following, no consent left,
// the customer-service window closed) is skipped without calling WeChat;
// with "channels": "any" the cheapest reachable channel goes first
// (plan.go).
//
// A job is delivered at most once, on at most one channel. When an attempt
// gets no answer (a timeout, a dropped connection: WeChat may have sent
// it), the job never moves to another channel: a template message is sent
// again on the same channel while WeChat's client_msg_id still deduplicates
// it (10 minutes), and is otherwise settled UNKNOWN; a message of the other
// channels, which have no such dedup, is settled UNKNOWN at once.
type Sender struct {
	People People
	Ledger *Ledger
	WeChat WeChat
	// Reach knows consents and interactions; nil knows nothing (every
	// channel the person has an identity for is tried).
	Reach Reach
	// The default apps the channels send from (those of a job without
	// from); an empty appid disables its channels for such jobs.
	OfficialAccount string
	MiniProgram     string
	// Apps are the apps a job's from may name; nil knows only the two
	// defaults above.
	Apps Apps
	// RecipientWait bounds how long a job whose recipient wxbridge does not
	// know yet is retried before it is UNDELIVERABLE (counted from the
	// message's first receive); DefaultRecipientWait when zero.
	RecipientWait time.Duration
	// Unrecorded keeps outcomes the ledger could not take, for the job's
	// next delivery to this worker (NewUnrecorded). Nil: nothing is kept,
	// and that delivery takes the job over once its lease runs out.
	Unrecorded *Unrecorded
	Log        *slog.Logger
	Metrics    *observe.Metrics
	Now        func() time.Time
}

// Result is what became of one job.
type Result struct {
	JobID     string
	Status    Status // as recorded, or as found for a duplicate; "" when retrying
	Duplicate bool   // the job id was settled already: nothing was sent
	// Retry, when not nil, asks for the job's message back after
	// Retry.After; Retry.Err says why.
	Retry   *queue.Retry
	UID     string
	Channel Channel
	MsgID   string
	Class   string // error class of the failure, or "invalid", "expired", "store", "recipient", "interrupted"
	ErrCode int
	RID     string
	Reason  string // why it failed, is unknown, or was undeliverable
	Err     error  // an error to log (store failures included)
}

// Attempt is one delivery of a job by the queue.
type Attempt struct {
	// Lease is how long the claim holds: the invocation's deadline, after
	// which nothing can still be sending.
	Lease time.Time
	// Receives counts the deliveries of the job's message, this one
	// included (it sets the retry delays).
	Receives int
	// FirstReceived is when the message was first delivered; zero when
	// unknown (it bounds the wait for an unknown recipient).
	FirstReceived time.Time
	// Last means no more retries: a transient failure is recorded FAILED.
	Last bool
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Reject records a job that broke the contract as FAILED (class
// "invalid"), unless its id is settled or in flight already.
func (s *Sender) Reject(ctx context.Context, jobID string, why error, at Attempt) Result {
	ctx = observe.With(ctx, "job_id", jobID)
	return s.record(ctx, jobID, "", nil, result{Status: Failed, Class: "invalid", Reason: why.Error()}, at)
}

// Send sends one valid job.
func (s *Sender) Send(ctx context.Context, job Job, at Attempt) Result {
	ctx = observe.With(ctx, "job_id", job.ID)
	if res, done := s.writeUnrecorded(ctx, job.ID, at); done {
		return res
	}
	now := s.now()
	if job.ExpiresAt != nil && !now.Before(*job.ExpiresAt) {
		return s.record(ctx, job.ID, "", recorded(job.To), result{Status: Expired, Class: "expired", Reason: "expired at " + job.ExpiresAt.UTC().Format(time.RFC3339)}, at)
	}
	to := recorded(job.To)
	from, why := s.sendersOf(job)
	if why != "" {
		// Nothing can send it until the job or the configuration changes.
		return s.record(ctx, job.ID, "", to, result{Status: Undeliverable, Reason: why}, at)
	}
	p, err := s.resolve(ctx, job.To, from)
	switch {
	case errors.Is(err, identity.ErrNotFound) && job.To.Phone != "":
		// Numbers are verified at login, before any job can name them:
		// there is nothing to wait for.
		return s.record(ctx, job.ID, "", to, result{Status: Undeliverable, Reason: NoPersonWithPhone + ": nobody has verified this phone number in a mini program"}, at)
	case errors.Is(err, identity.ErrNotFound):
		// Their follow may still be on its way (in the push retry queue
		// while WeChat or a token is being fixed): wait for it a while.
		if wait := s.recipientWait(); !at.Last && (at.FirstReceived.IsZero() || now.Sub(at.FirstReceived) < wait) {
			return Result{JobID: job.ID, Class: "recipient", Reason: "recipient unknown to wxbridge (not linked yet)",
				Retry: &queue.Retry{After: RetryDelay(at.Receives), Err: err}}
		}
		return s.record(ctx, job.ID, "", to, result{Status: Undeliverable, Reason: "recipient unknown to wxbridge"}, at)
	case err != nil:
		return s.storeRetry(job.ID, "", at, err)
	}
	opts := options(job, from, p, s.known(ctx, job, from, p), now)
	first := slices.IndexFunc(opts, func(o option) bool { return o.skip == "" })
	if first < 0 {
		r := result{Status: Undeliverable, Reason: strings.Join(skipReasons(opts), "; ")}
		for _, o := range opts {
			r.tries = append(r.tries, o.skipped())
		}
		return s.record(ctx, job.ID, p.UID, to, r, at)
	}
	c, err := s.Ledger.claim(ctx, job.ID, p.UID, at.Lease, opts[first].channel, opts[first].via(), to)
	if res, ok := s.notClaimed(job.ID, p.UID, c, err, at); !ok {
		return res
	}
	if c.Uncertain != "" {
		return s.resume(ctx, job, p.UID, c, opts, at)
	}
	return s.attempt(ctx, job, p.UID, c, opts, at)
}

// known is what the reach store knows of p for job: nothing when there is
// no store, or when it cannot be read (every channel is then tried, and
// WeChat's answers say what the store would have).
func (s *Sender) known(ctx context.Context, job Job, from senders, p identity.Person) map[reach.Key]reach.State {
	keys := reachKeys(job, from, p)
	if s.Reach == nil || len(keys) == 0 {
		return nil
	}
	known, err := s.Reach.Get(ctx, keys...)
	if err != nil {
		s.Log.WarnContext(ctx, "reach state not read: trying every channel", "outcome", "not_read", "error", err)
		return nil
	}
	return known
}

// skipReasons lists why the options skipped cannot reach the person.
func skipReasons(opts []option) []string {
	var why []string
	for _, o := range opts {
		if o.skip != "" {
			why = append(why, string(o.channel)+": "+o.skip)
		}
	}
	return why
}

// skipped is the Try of a channel not called.
func (o option) skipped() contract.Try {
	return contract.Try{Channel: o.channel, AppID: o.appid, Outcome: contract.TrySkipped, Reason: o.skip}
}

// notClaimed is the result of a claim that did not give the caller the
// job, and ok true when it did.
func (s *Sender) notClaimed(jobID, uid string, c Claim, err error, at Attempt) (Result, bool) {
	switch {
	case err != nil:
		return s.storeRetry(jobID, uid, at, err), false
	case c.State == Settled:
		return Result{JobID: jobID, UID: uid, Status: c.Existing.Status, Duplicate: true}, false
	case c.State == InFlight:
		wait := leaseDelay(time.UnixMilli(c.Existing.LeaseUntil), s.now())
		return Result{JobID: jobID, UID: uid, Reason: "held by another worker", Retry: &queue.Retry{After: wait}}, false
	}
	return Result{}, true
}

func (s *Sender) recipientWait() time.Duration {
	if s.RecipientWait > 0 {
		return s.RecipientWait
	}
	return DefaultRecipientWait
}

// storeRetry is a job put off because DynamoDB failed before anything was
// sent.
func (s *Sender) storeRetry(jobID, uid string, at Attempt, err error) Result {
	return Result{JobID: jobID, UID: uid, Class: "store", Err: err, Retry: &queue.Retry{After: RetryDelay(at.Receives), Err: err}}
}

// resume continues a job whose earlier attempt on c.Uncertain got no
// answer: that attempt may have sent it, so no other channel is tried. A
// template message goes out again with the same client_msg_id while WeChat
// still deduplicates it (if the earlier one was sent, WeChat sends nothing
// new and answers its msgid); the other channels have no such dedup and
// would reach the person twice, so the job is settled UNKNOWN. So is a
// template message that would now go to another app or openid than the
// earlier attempt's (a copy of the job naming another app, a phone number
// that moved): WeChat deduplicates per openid, which is per app.
func (s *Sender) resume(ctx context.Context, job Job, uid string, c Claim, opts []option, at Attempt) Result {
	unknown := result{Status: Unknown, Channel: c.Uncertain, Class: "interrupted",
		Reason: string(c.Uncertain) + ": an earlier attempt was interrupted before WeChat's answer (lost, or its worker stopped); it may have sent the message"}
	unknown.AppID = appOf(c.UncertainVia)
	if k := slices.IndexFunc(opts, func(o option) bool { return o.channel == c.Uncertain }); k >= 0 && unknown.AppID == "" {
		unknown.AppID = opts[k].appid
	}
	i := slices.IndexFunc(opts, func(o option) bool { return o.channel == c.Uncertain && o.skip == "" })
	switch {
	case c.Uncertain != Template:
		unknown.Reason += "; a " + string(c.Uncertain) + " message cannot be sent again safely"
	case i < 0:
		unknown.Reason += "; the template channel no longer reaches the person"
	case c.UncertainVia != "" && opts[i].via() != c.UncertainVia:
		unknown.Reason += "; it went through " + unknown.AppID + ", and this delivery of the job would send from another app or to another openid (its from or its recipient changed), which client_msg_id does not deduplicate"
	case !s.canResend(c.UncertainSince):
		unknown.Reason += "; past WeChat's 10-minute client_msg_id window"
	default:
		return s.attempt(ctx, job, uid, c, opts[i:i+1], at)
	}
	return s.settle(ctx, job.ID, uid, c, unknown.after(nil, contract.TryUnknown), at)
}

// attempt calls the options in order under claim c, skipping those that
// cannot reach the person, and settles or releases the job. Every write
// notes the answers of the channels passed so far (result.tries): each
// called channel's, and why each skipped one was not called (unless an
// earlier attempt's answer on it is on the entry: that says more).
func (s *Sender) attempt(ctx context.Context, job Job, uid string, c Claim, opts []option, at Attempt) Result {
	since := c.At // when the current channel may first have sent
	if c.Uncertain != "" {
		since = c.UncertainSince
	}
	var last error
	var why []string
	var tries []contract.Try // the channels passed, with their answers
	called := 0
	notFollowing := "" // the official account a channel's 43004 came from in this attempt
	for _, o := range opts {
		if o.skip == "" && notFollowing != "" && needsFollow(o.channel) && o.appid == notFollowing {
			// Only followers receive these (43004): the answer is known.
			o.skip = "does not follow the official account (43004 to an earlier channel)"
		}
		if o.skip != "" {
			why = append(why, string(o.channel)+": "+o.skip)
			if !slices.ContainsFunc(c.tried, func(t contract.Try) bool { return t.Channel == o.channel }) {
				tries = append(tries, o.skipped())
			}
			continue
		}
		st := o.step
		if called > 0 {
			// Falling back: the entry must name the channel that may
			// send before it may (it named the previous one).
			t, err := s.Ledger.try(ctx, job.ID, c, st.channel, st.via(), tries)
			if errors.Is(err, ErrClaimLost) {
				return Result{JobID: job.ID, UID: uid, Duplicate: true, Err: err}
			}
			if err != nil {
				// st.channel was not called: only the earlier ones' answers go.
				failure := result{Channel: st.channel, Class: "store", Reason: strings.Join(why, "; "), tries: tries}
				return s.release(ctx, job.ID, uid, c, failure, false, RetryDelay(at.Receives), err)
			}
			since = t
		}
		called++
		asked := s.now()
		msgid, err := s.sendOn(ctx, job, st)
		if err == nil {
			r := result{Status: Sent, Channel: st.channel, AppID: st.appid, MsgID: msgid}
			if msgid != "" {
				// The delivery report (TEMPLATESENDJOBFINISH,
				// subscribe_msg_sent_event) finds the entry by it.
				r.MsgKey = msgKey(st.appid, msgid)
			}
			if o.spend != "" {
				s.spent(ctx, o)
			}
			return s.settle(ctx, job.ID, uid, c, r.after(tries, contract.TrySent), at)
		}
		class := wechat.ClassOf(err)
		failure := result{Channel: st.channel, AppID: st.appid, ErrCode: errCode(err), RID: wechat.RID(err), Class: class.String(), Reason: string(st.channel) + ": " + describe(err)}
		if outcomeUnknown(err) {
			failure.Reason = string(st.channel) + ": no answer from WeChat, the message may have been sent: " + describe(err)
			return s.unanswered(ctx, job.ID, uid, c, failure, tries, since, at, err)
		}
		s.alarmFor(ctx, class, failure)
		if c.Uncertain != "" {
			// The resend was answered, but the earlier attempt's outcome
			// is still unknown: it may have delivered the message.
			failure.Reason = "an earlier attempt got no answer and may have sent the message; the resend answered " + describe(err)
			return s.unanswered(ctx, job.ID, uid, c, failure, tries, since, at, err)
		}
		s.learn(ctx, job, o, err, uid, asked)
		switch {
		case class == wechat.ClassUserState:
			// Not this person on this channel (43004 not following, 43101
			// no consent, 43019 blocked, 40003, 45015 window closed, 45047
			// customer-service limit): try the next one.
			why = append(why, failure.Reason)
			tries = append(tries, failure.try(contract.TryFailed))
			last = err
			if errors.Is(err, wechat.ErrNotFollowing) {
				notFollowing = st.appid
			}
			continue
		case !wechat.Retryable(err):
			// The sender's mistake (template, data, page): resending
			// cannot help, and someone has to look.
			failure.Status = Failed
			return s.settle(ctx, job.ID, uid, c, failure.after(tries, contract.TryFailed), at)
		case at.Last:
			failure.Status = Failed
			failure.Reason += " (gave up after the last attempt)"
			return s.settle(ctx, job.ID, uid, c, failure.after(tries, contract.TryFailed), at)
		}
		delay := RetryDelay(at.Receives)
		if errors.Is(err, wechat.ErrQuota) {
			delay = QuotaDelay(s.now())
		}
		return s.release(ctx, job.ID, uid, c, failure.after(tries, contract.TryFailed), false, delay, err)
	}
	r := result{Status: Undeliverable, ErrCode: errCode(last), RID: wechat.RID(last), Reason: strings.Join(why, "; "), tries: tries}
	if last != nil {
		r.Class = wechat.ClassUserState.String()
	}
	return s.settle(ctx, job.ID, uid, c, r, at)
}

// learn records what a WeChat answer (err, to a call made at asked on o)
// says of the person: 43004, that they do not follow the official account
// the call went through;
// 43101, that they hold no consent to the template any more; 45015 or
// 45047, that their interactions so far allow no more customer-service
// messages. A failure to record only costs a wasted call next time.
func (s *Sender) learn(ctx context.Context, job Job, o option, err error, uid string, asked time.Time) {
	switch {
	case errors.Is(err, wechat.ErrNotFollowing) && uid != "" && o.appid != "" && o.channel != Subscribe:
		s.unfollowed(ctx, o.appid, o.openid, asked)
	case errors.Is(err, wechat.ErrNoConsent) && s.Reach != nil:
		tid := templateOf(job, o.channel)
		if tid == "" {
			return
		}
		if err := s.Reach.Lost(ctx, reach.Key{AppID: o.appid, OpenID: o.openid}, tid); err != nil {
			s.Log.WarnContext(ctx, "consent not marked lost after 43101", "outcome", "not_updated", "channel", o.channel, "error", err)
		}
	case (errors.Is(err, wechat.ErrWindowClosed) || errors.Is(err, wechat.ErrResponseLimit)) && s.Reach != nil:
		if err := s.Reach.WindowRefused(ctx, reach.Key{AppID: o.appid, OpenID: o.openid}, asked); err != nil {
			s.Log.WarnContext(ctx, "customer-service refusal not recorded", "outcome", "not_updated", "channel", o.channel, "error", err)
		}
	}
}

// spent records that a send on o used up one of the person's one-time
// consents.
func (s *Sender) spent(ctx context.Context, o option) {
	if s.Reach == nil {
		return
	}
	if err := s.Reach.Use(ctx, reach.Key{AppID: o.appid, OpenID: o.openid}, o.spend); err != nil {
		s.Log.WarnContext(ctx, "one-time consent not marked used", "outcome", "not_updated", "channel", o.channel, "error", err)
	}
}

// needsFollow reports whether channel ch reaches only the official
// account's followers (43004 otherwise).
func needsFollow(ch Channel) bool { return ch == Template || ch == CustomerService }

// templateOf is the template id of the job's message for a subscribe
// channel.
func templateOf(job Job, ch Channel) string {
	switch {
	case ch == Subscribe && job.Subscribe != nil:
		return job.Subscribe.TemplateID
	case ch == OASubscribe && job.OASubscribe != nil:
		return job.OASubscribe.TemplateID
	}
	return ""
}

// unanswered handles an attempt that may have sent the message (failure
// says why; tries are the channels called before it): a template message
// is retried on the same channel while a resend is still deduplicated and
// the failure may pass; anything else is settled UNKNOWN.
func (s *Sender) unanswered(ctx context.Context, jobID, uid string, c Claim, failure result, tries []contract.Try, since time.Time, at Attempt, err error) Result {
	if failure.Channel == Template && !at.Last && wechat.Retryable(err) {
		if d, ok := s.resendIn(since, at.Receives); ok {
			return s.release(ctx, jobID, uid, c, failure.after(tries, contract.TryUnknown), true, d, err)
		}
		failure.Reason += "; past WeChat's 10-minute client_msg_id window"
	}
	failure.Status = Unknown
	failure.Reason += "; not sent again, on no channel"
	return s.settle(ctx, jobID, uid, c, failure.after(tries, contract.TryUnknown), at)
}

// clientMsgWindow is how long template/send sends one message per openid
// and client_msg_id: a resend within it sends nothing new and answers the
// first send's msgid.
const clientMsgWindow = 10 * time.Minute

// resendLead is the part of that window a resend leaves unused: it must
// reach WeChat before the window closes, whatever the clocks say.
const resendLead = time.Minute

// canResend reports whether a template message that may have gone out at
// since can be sent again now without reaching the person twice.
func (s *Sender) canResend(since time.Time) bool {
	return s.now().Before(since.Add(clientMsgWindow - resendLead))
}

// resendIn is the retry delay for a template resend whose first send may
// have gone out at since: the usual delay, but at most half the time left
// in the window; ok false when too little is left.
func (s *Sender) resendIn(since time.Time, receives int) (time.Duration, bool) {
	left := since.Add(clientMsgWindow - resendLead).Sub(s.now())
	d := min(RetryDelay(receives), left/2)
	return d, d >= time.Second
}

// outcomeUnknown reports whether err leaves open whether WeChat performed
// the send: the request may have reached the platform, but no answer came
// back (a timeout, a dropped connection, an unreadable or incomplete
// answer). A WeChat errcode answer (even -1, "busy") and a failure before
// the request left the process (no access token, a connection never made:
// wechat.ErrNotSent) are known to have sent nothing.
func outcomeUnknown(err error) bool {
	if wechat.ClassOf(err) != wechat.ClassTransient || errors.Is(err, wechat.ErrNotSent) {
		return false
	}
	var we *wechat.Error
	return !errors.As(err, &we)
}

// resolve finds the person a recipient names. An openid is one in the app
// the job sends from; an openid wxbridge has not met yet is still a person
// to send to on that channel.
func (s *Sender) resolve(ctx context.Context, to Recipient, from senders) (identity.Person, error) {
	var p identity.Person
	var err error
	switch {
	case to.UID != "":
		return s.People.ByUID(ctx, to.UID)
	case to.ExternalID != "":
		return s.People.Lookup(ctx, identity.ExternalKey(to.ExternalID))
	case to.UnionID != "":
		return s.People.Lookup(ctx, identity.UnionKey(to.UnionID))
	case to.Phone != "":
		return s.People.ByPhone(ctx, to.Phone)
	case to.OAOpenID != "" && from.oa != "":
		p, err = s.People.Lookup(ctx, identity.OAKey(from.oa, to.OAOpenID))
		if errors.Is(err, identity.ErrNotFound) {
			return identity.Person{OA: map[string]identity.OAIdentity{from.oa: {OpenID: to.OAOpenID}}}, nil
		}
	case to.MPOpenID != "" && from.mp != "":
		p, err = s.People.Lookup(ctx, identity.MPKey(from.mp, to.MPOpenID))
		if errors.Is(err, identity.ErrNotFound) {
			return identity.Person{MP: map[string]identity.MPIdentity{from.mp: {OpenID: to.MPOpenID}}}, nil
		}
	default:
		err = identity.ErrNotFound
	}
	return p, err
}

// step is one channel to try, with the app and openid it goes through.
type step struct {
	channel       Channel
	appid, openid string
}

// via is where the step's message goes, as the ledger notes an attempt
// whose outcome may stay unknown: "<appid>#<openid>".
func (st step) via() string { return st.appid + "#" + st.openid }

// appOf is the appid of a via.
func appOf(via string) string {
	appid, _, _ := strings.Cut(via, "#")
	return appid
}

// clientMsgID derives template/send's client_msg_id from the job id: a
// resend of the same job within WeChat's 10-minute window (after a lost
// answer, a crash or a lost ledger write) sends nothing new.
func clientMsgID(jobID string) string {
	sum := sha256.Sum256([]byte("wxbridge-send\n" + jobID))
	return hex.EncodeToString(sum[:16])
}

func (s *Sender) sendOn(ctx context.Context, job Job, st step) (string, error) {
	switch st.channel {
	case Template:
		m := job.Template
		msg := wechat.TemplateMessage{ToUser: st.openid, TemplateID: m.TemplateID, URL: m.URL, ClientMsgID: clientMsgID(job.ID), Data: m.Data}
		if m.MiniProgram != nil {
			msg.MiniProgram = &wechat.MiniProgram{AppID: m.MiniProgram.AppID, PagePath: m.MiniProgram.PagePath}
		}
		return s.WeChat.SendTemplate(ctx, st.appid, msg)
	case Subscribe:
		m := job.Subscribe
		return "", s.WeChat.SendSubscribe(ctx, st.appid, wechat.SubscribeMessage{
			ToUser: st.openid, TemplateID: m.TemplateID, Page: m.Page, MiniProgramState: m.MiniProgramState, Lang: m.Lang, Data: m.Data,
		})
	case OASubscribe:
		m := job.OASubscribe
		msg := wechat.OASubscribeMessage{ToUser: st.openid, TemplateID: m.TemplateID, Page: m.Page, Data: m.Data}
		if m.MiniProgram != nil {
			msg.MiniProgram = &wechat.MiniProgram{AppID: m.MiniProgram.AppID, PagePath: m.MiniProgram.PagePath}
		}
		return s.WeChat.SendOASubscribe(ctx, st.appid, msg)
	case CustomerService:
		return "", s.WeChat.SendCustom(ctx, st.appid, customMessage(st.openid, job.CustomerService))
	}
	return "", fmt.Errorf("notify: unknown channel %q", st.channel)
}

// customMessage is the job's customer-service message to openid.
func customMessage(openid string, m *CustomerServiceMessage) wechat.CustomMessage {
	out := wechat.CustomMessage{ToUser: openid, Text: m.Text}
	if c := m.MiniProgramPage; c != nil {
		out.MiniProgramPage = &wechat.MiniProgramPage{Title: c.Title, AppID: c.AppID, PagePath: c.PagePath, ThumbMediaID: c.ThumbMediaID}
	}
	return out
}

// unfollowed records what a 43004 to a send through official account
// appid made at asked says: the person does not follow that account (any
// more). It is the platform's answer to a call made at asked
// (identity.Follow.Seen), so it outranks a follow of the same second
// recorded before the call. A failure only costs a wasted call next time.
func (s *Sender) unfollowed(ctx context.Context, appid, openid string, asked time.Time) {
	_, err := s.People.Link(ctx, identity.Sighting{OA: &identity.OASighting{
		AppID: appid, OpenID: openid, Follow: &identity.Follow{Subscribed: false, At: asked, Seen: asked},
	}})
	if err != nil {
		s.Log.WarnContext(ctx, "follow state not updated after 43004", "outcome", "not_updated", "error", err)
		return
	}
	s.Metrics.Count("FollowStateCorrected", "source", "43004")
}

func errCode(err error) int {
	var we *wechat.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

// describe is a failure as the ledger keeps it: the errcode and WeChat's
// message (which names a bad field, never its value), or the error.
func describe(err error) string {
	var we *wechat.Error
	if errors.As(err, &we) {
		return fmt.Sprintf("errcode %d %s", we.Code, we.Message)
	}
	return err.Error()
}

// alarmFor reports a failure someone has to act on (SendAlarm by reason,
// which template.yaml alarms on): the sender's mistakes and answers nobody
// knows (sender, code, unknown), and what stops a whole channel (config,
// quota). The job's own line follows with its outcome.
func (s *Sender) alarmFor(ctx context.Context, class wechat.Class, r result) {
	switch class {
	case wechat.ClassSender, wechat.ClassCode, wechat.ClassUnknown, wechat.ClassConfig, wechat.ClassQuota:
	default:
		return
	}
	s.Log.ErrorContext(ctx, "send alarm", "outcome", "alarm", "alarm", class.String(),
		"channel", r.Channel, "errcode", r.ErrCode, "rid", r.RID, "class", r.Class)
	s.Metrics.Count("SendAlarm", "reason", class.String())
}

func (r result) outcome(jobID, uid string) Result {
	return Result{JobID: jobID, Status: r.Status, UID: uid, Channel: r.Channel, MsgID: r.MsgID, Class: r.Class, ErrCode: r.ErrCode, RID: r.RID, Reason: r.Reason}
}

// record settles an unclaimed job (to: its recipient, when it has a valid
// one); a job settled or held elsewhere is left alone (a duplicate, or a
// worker that will settle it). A job whose earlier attempt may have sent it
// is settled UNKNOWN instead: that stays the ledger's answer, whatever this
// delivery found.
func (s *Sender) record(ctx context.Context, jobID, uid string, to *Recipient, r result, at Attempt) Result {
	old, wrote, err := s.Ledger.Record(ctx, jobID, uid, to, r)
	switch {
	case err != nil:
		return s.storeRetry(jobID, uid, at, err)
	case wrote:
		return r.outcome(jobID, uid)
	case old.Final():
		return Result{JobID: jobID, UID: uid, Status: old.Status, Duplicate: true}
	case old.Trying == "" || old.LeaseUntil > s.now().UnixMilli():
		return Result{JobID: jobID, UID: uid, Reason: "held by another worker", Retry: &queue.Retry{After: leaseDelay(time.UnixMilli(old.LeaseUntil), s.now())}}
	}
	c, err := s.Ledger.claim(ctx, jobID, old.UID, at.Lease, "", "", to)
	if res, ok := s.notClaimed(jobID, old.UID, c, err, at); !ok {
		return res
	}
	if c.Uncertain == "" { // a worker settled that attempt meanwhile
		// Its answers say more than a skip of the same channel.
		r.tries = slices.DeleteFunc(slices.Clone(r.tries), func(t contract.Try) bool {
			return slices.ContainsFunc(c.tried, func(o contract.Try) bool { return o.Channel == t.Channel })
		})
		return s.settle(ctx, jobID, uid, c, r, at)
	}
	const interrupted = "an earlier attempt was interrupted before WeChat's answer; it may have sent the message"
	unknown := result{Status: Unknown, Channel: c.Uncertain, AppID: appOf(c.UncertainVia), Class: "interrupted", Reason: string(c.Uncertain) + ": " + interrupted}
	unknown = unknown.after(nil, contract.TryUnknown)
	unknown.Reason += "; then: " + r.Reason
	return s.settle(ctx, jobID, old.UID, c, unknown, at)
}

// writeAttempts bounds the tries of a ledger write that follows a send
// (the SDK retries each try as well): DynamoDB that fails them all keeps
// the job's message on the queue (see Unrecorded).
const writeAttempts = 3

// persist runs write until it succeeds, the claim is lost, or
// writeAttempts tries failed.
func persist(ctx context.Context, write func() error) error {
	var err error
	for i := range writeAttempts {
		if err = write(); err == nil || errors.Is(err, ErrClaimLost) {
			return err
		}
		if i < writeAttempts-1 && backoff.Sleep(ctx, backoff.Full(backoff.Exp(50*time.Millisecond, time.Second, i+1))) != nil {
			break
		}
	}
	return err
}

// settle records r as the job's outcome. When the ledger cannot take it,
// the outcome is not lost: it is kept for the next delivery of the job's
// message, which stays on the queue (a LedgerWriteFailed to alarm on).
func (s *Sender) settle(ctx context.Context, jobID, uid string, c Claim, r result, at Attempt) Result {
	out := r.outcome(jobID, uid)
	err := persist(ctx, func() error { return s.Ledger.Settle(ctx, jobID, c, r) })
	switch {
	case errors.Is(err, ErrClaimLost):
		// Our lease ran out and another worker took the job over (this
		// one was too slow): that worker decides what the ledger says.
		out.Err = err
	case err != nil:
		return s.unrecorded(jobID, unrecorded{uid: uid, claim: c, r: r}, at, err)
	}
	return out
}

// release gives the job back for a retry after delay, with failure noted
// on the entry (uncertain: an attempt may have sent it, and the entry keeps
// saying so). When the ledger cannot take that, it is kept like an outcome.
func (s *Sender) release(ctx context.Context, jobID, uid string, c Claim, failure result, uncertain bool, delay time.Duration, cause error) Result {
	out := Result{JobID: jobID, UID: uid, Channel: failure.Channel, Class: failure.Class, ErrCode: failure.ErrCode, RID: failure.RID, Reason: failure.Reason,
		Retry: &queue.Retry{After: delay, Err: cause}}
	err := persist(ctx, func() error { return s.Ledger.release(ctx, jobID, c, failure, uncertain) })
	if err != nil && !errors.Is(err, ErrClaimLost) {
		s.keep(jobID, unrecorded{uid: uid, claim: c, r: failure, release: true, uncertain: uncertain})
		out.Err = err
	}
	return out
}

// keep holds w, which the ledger could not take, for the job's next
// delivery (LedgerWriteFailed counts it, by the status it records).
func (s *Sender) keep(jobID string, w unrecorded) {
	s.Metrics.Count("LedgerWriteFailed", "status", string(w.status()))
	s.Unrecorded.keep(jobID, w)
}

// unrecorded keeps the outcome w and asks for the message back, for its
// next delivery to write w.
func (s *Sender) unrecorded(jobID string, w unrecorded, at Attempt, err error) Result {
	s.keep(jobID, w)
	return Result{JobID: jobID, UID: w.uid, Channel: w.r.Channel, MsgID: w.r.MsgID, Class: "store", ErrCode: w.r.ErrCode, RID: w.r.RID,
		Reason: fmt.Sprintf("%s not recorded yet (%s)", w.status(), w.r.Reason), Err: err,
		Retry: &queue.Retry{After: RetryDelay(at.Receives), Err: err}}
}

// write applies w to the ledger.
func (s *Sender) write(ctx context.Context, jobID string, w unrecorded) error {
	return persist(ctx, func() error {
		if w.release {
			return s.Ledger.release(ctx, jobID, w.claim, w.r, w.uncertain)
		}
		return s.Ledger.Settle(ctx, jobID, w.claim, w.r)
	})
}

// writeUnrecorded writes what an earlier delivery of the job to this worker
// could not. done is false when the job is still to be sent (nothing was
// kept, or a release was written): Send goes on.
func (s *Sender) writeUnrecorded(ctx context.Context, jobID string, at Attempt) (res Result, done bool) {
	w, ok := s.Unrecorded.take(jobID)
	if !ok {
		return Result{}, false
	}
	err := s.write(ctx, jobID, w)
	switch {
	case err != nil && !errors.Is(err, ErrClaimLost):
		return s.unrecorded(jobID, w, at, err), true
	case w.release:
		return Result{}, false
	case err != nil:
		// Another worker took the job over meanwhile and settled it.
		return Result{JobID: jobID, UID: w.uid, Duplicate: true, Err: err}, true
	}
	return w.r.outcome(jobID, w.uid), true
}
