package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/wechat"
)

// People is the identity store as sending uses it.
type People interface {
	Lookup(ctx context.Context, k identity.Key) (identity.Person, error)
	ByUID(ctx context.Context, uid string) (identity.Person, error)
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
}

// WeChat is the platform's send APIs.
type WeChat interface {
	SendTemplate(ctx context.Context, appid string, m wechat.TemplateMessage) (string, error)
	SendSubscribe(ctx context.Context, appid string, m wechat.SubscribeMessage) error
}

// Sender sends jobs: it resolves the recipient, claims the job in the
// ledger, tries the channels in order and records the outcome.
type Sender struct {
	People People
	Ledger *Ledger
	WeChat WeChat
	// The apps the channels send from; an empty appid disables its channel.
	OfficialAccount string
	MiniProgram     string
	Log             *slog.Logger
	Metrics         *observe.Metrics
	Now             func() time.Time
}

// Retry says whether and when a job goes back to the queue.
type Retry int

// Retry kinds; the worker turns them into visibility delays (RetryDelay).
const (
	NoRetry    Retry = iota // settled (or dropped): delete the message
	RetrySoon               // a transient failure: again after a growing delay
	RetryLater              // the daily quota is used up: again in hours
	RetryLease              // another worker holds the job: again once its lease ends
)

// Result is what became of one job.
type Result struct {
	JobID     string
	Status    Status // as recorded, or as found for a duplicate; "" when retrying
	Duplicate bool   // the job id was settled already: nothing was sent
	Retry     Retry
	Wait      time.Duration // RetryLease: until the other worker's lease ends
	UID       string
	Channel   Channel
	MsgID     string
	Class     string // error class of the failure, or "invalid", "expired"
	ErrCode   int
	RID       string
	Reason    string // why it failed, or was undeliverable
	Err       error  // an error to log (store failures included)
}

// Attempt is one delivery of a job by the queue.
type Attempt struct {
	// Lease is how long the claim holds: the invocation's deadline, after
	// which nothing can still be sending.
	Lease time.Time
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
func (s *Sender) Reject(ctx context.Context, jobID string, why error) Result {
	return s.record(ctx, jobID, "", result{Status: Failed, Class: "invalid", Reason: why.Error()})
}

// Send sends one valid job.
func (s *Sender) Send(ctx context.Context, job Job, at Attempt) Result {
	if job.ExpiresAt != nil && !s.now().Before(*job.ExpiresAt) {
		return s.record(ctx, job.ID, "", result{Status: Expired, Class: "expired", Reason: "expired at " + job.ExpiresAt.UTC().Format(time.RFC3339)})
	}
	p, err := s.resolve(ctx, job.To)
	switch {
	case errors.Is(err, identity.ErrNotFound):
		return s.record(ctx, job.ID, "", result{Status: Undeliverable, Reason: "recipient unknown to wxbridge"})
	case err != nil:
		return Result{JobID: job.ID, Retry: RetrySoon, Class: "store", Err: err}
	}
	steps, why := s.plan(job, p)
	if len(steps) == 0 {
		return s.record(ctx, job.ID, p.UID, result{Status: Undeliverable, Reason: strings.Join(why, "; ")})
	}
	c, err := s.Ledger.Claim(ctx, job.ID, p.UID, at.Lease)
	switch {
	case err != nil:
		return Result{JobID: job.ID, UID: p.UID, Retry: RetrySoon, Class: "store", Err: err}
	case c.State == Settled:
		return Result{JobID: job.ID, UID: p.UID, Status: c.Existing.Status, Duplicate: true}
	case c.State == InFlight:
		return Result{JobID: job.ID, UID: p.UID, Retry: RetryLease, Wait: time.Until(time.UnixMilli(c.Existing.LeaseUntil))}
	}
	var last error
	for _, st := range steps {
		msgid, err := s.sendOn(ctx, job, st)
		if err == nil {
			r := result{Status: Sent, Channel: st.channel, MsgID: msgid}
			if st.channel == Template {
				r.MsgKey = msgKey(st.appid, msgid)
			}
			return s.settle(ctx, job.ID, p.UID, c, r)
		}
		class := wechat.ClassOf(err)
		failure := result{Channel: st.channel, ErrCode: errCode(err), RID: wechat.RID(err), Class: class.String(), Reason: string(st.channel) + ": " + describe(err)}
		switch class {
		case wechat.ClassUserState:
			why = append(why, failure.Reason)
			last = err
			if failure.ErrCode == 43004 && p.UID != "" {
				s.unfollowed(ctx, st.openid)
			}
			// A 43101 after an interrupted attempt may mean that attempt
			// used the consent (and sent): falling back could send twice.
			if c.Takeover && st.channel == Subscribe && failure.ErrCode == 43101 {
				failure.Status = Undeliverable
				failure.Reason = strings.Join(append(why, "not falling back: an interrupted earlier attempt may have used the consent"), "; ")
				return s.settle(ctx, job.ID, p.UID, c, failure)
			}
			continue
		case wechat.ClassTransient, wechat.ClassToken, wechat.ClassConfig, wechat.ClassQuota:
			retry := RetrySoon
			switch class {
			case wechat.ClassQuota:
				retry = RetryLater
				s.alarm(ctx, job.ID, "quota", failure)
			case wechat.ClassConfig:
				s.alarm(ctx, job.ID, "config", failure)
			}
			if at.Last {
				failure.Status = Failed
				failure.Reason += " (gave up after the last attempt)"
				return s.settle(ctx, job.ID, p.UID, c, failure)
			}
			res := s.release(ctx, job.ID, c, failure)
			res.UID, res.Retry, res.Err = p.UID, retry, errors.Join(err, res.Err)
			return res
		}
		// The sender's mistake (template, data, page), or an answer nobody
		// knows: resending cannot help, and someone has to look.
		s.alarm(ctx, job.ID, class.String(), failure)
		failure.Status = Failed
		return s.settle(ctx, job.ID, p.UID, c, failure)
	}
	return s.settle(ctx, job.ID, p.UID, c, result{
		Status: Undeliverable, ErrCode: errCode(last), RID: wechat.RID(last), Class: wechat.ClassUserState.String(),
		Reason: strings.Join(why, "; "),
	})
}

// resolve finds the person a recipient names. An openid wxbridge has not
// met yet is still a person to send to on that channel.
func (s *Sender) resolve(ctx context.Context, to Recipient) (identity.Person, error) {
	var p identity.Person
	var err error
	switch {
	case to.UID != "":
		return s.People.ByUID(ctx, to.UID)
	case to.ExternalID != "":
		return s.People.Lookup(ctx, identity.ExternalKey(to.ExternalID))
	case to.UnionID != "":
		return s.People.Lookup(ctx, identity.UnionKey(to.UnionID))
	case to.OAOpenID != "" && s.OfficialAccount != "":
		p, err = s.People.Lookup(ctx, identity.OAKey(s.OfficialAccount, to.OAOpenID))
		if errors.Is(err, identity.ErrNotFound) {
			return identity.Person{OA: map[string]identity.OAIdentity{s.OfficialAccount: {OpenID: to.OAOpenID}}}, nil
		}
	case to.MPOpenID != "" && s.MiniProgram != "":
		p, err = s.People.Lookup(ctx, identity.MPKey(s.MiniProgram, to.MPOpenID))
		if errors.Is(err, identity.ErrNotFound) {
			return identity.Person{MP: map[string]identity.MPIdentity{s.MiniProgram: {OpenID: to.MPOpenID}}}, nil
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

// plan lists the channels that can reach p, in the job's order, and why the
// others cannot. A person known to have unfollowed the official account is
// not sent template messages (WeChat would answer 43004).
func (s *Sender) plan(job Job, p identity.Person) ([]step, []string) {
	var steps []step
	var why []string
	for _, ch := range job.Plan() {
		switch ch {
		case Template:
			id, ok := p.OA[s.OfficialAccount]
			switch {
			case s.OfficialAccount == "" || !ok || id.OpenID == "":
				why = append(why, "template: no official-account identity")
			case !id.Subscribed && (id.SubscribedAt != nil || id.UnsubscribedAt != nil):
				why = append(why, "template: does not follow the official account")
			default:
				steps = append(steps, step{Template, s.OfficialAccount, id.OpenID})
			}
		case Subscribe:
			id, ok := p.MP[s.MiniProgram]
			if s.MiniProgram == "" || !ok || id.OpenID == "" {
				why = append(why, "subscribe: no mini-program identity")
				continue
			}
			steps = append(steps, step{Subscribe, s.MiniProgram, id.OpenID})
		}
	}
	return steps, why
}

// clientMsgID derives template/send's client_msg_id from the job id: a
// resend of the same job within WeChat's 10-minute window (after a crash
// between WeChat's answer and the ledger write) sends nothing new.
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
	}
	return "", fmt.Errorf("notify: unknown channel %q", st.channel)
}

// unfollowed records what a 43004 says: the person does not follow the
// official account (any more). A failure only costs a wasted call next time.
func (s *Sender) unfollowed(ctx context.Context, openid string) {
	_, err := s.People.Link(ctx, identity.Sighting{OA: &identity.OASighting{
		AppID: s.OfficialAccount, OpenID: openid, Follow: &identity.Follow{Subscribed: false, At: s.now()},
	}})
	if err != nil {
		s.Log.Warn("follow state not updated after 43004", "request_id", observe.RequestID(ctx), "outcome", "not_updated", "error", err)
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

// alarm reports a failure someone has to act on (SendAlarm by reason, which
// template.yaml alarms on). The job's own line follows with its outcome.
func (s *Sender) alarm(ctx context.Context, jobID, reason string, r result) {
	s.Log.Error("send alarm", "request_id", observe.RequestID(ctx), "job_id", jobID, "outcome", "alarm", "alarm", reason,
		"channel", r.Channel, "errcode", r.ErrCode, "rid", r.RID, "class", r.Class)
	s.Metrics.Count("SendAlarm", "reason", reason)
}

func (r result) outcome(jobID, uid string) Result {
	return Result{JobID: jobID, Status: r.Status, UID: uid, Channel: r.Channel, MsgID: r.MsgID, Class: r.Class, ErrCode: r.ErrCode, RID: r.RID, Reason: r.Reason}
}

// record settles an unclaimed job; a job settled or held elsewhere is left
// alone (a duplicate, or a worker that will settle it).
func (s *Sender) record(ctx context.Context, jobID, uid string, r result) Result {
	old, wrote, err := s.Ledger.Record(ctx, jobID, uid, r)
	switch {
	case err != nil:
		return Result{JobID: jobID, UID: uid, Retry: RetrySoon, Class: "store", Err: err}
	case !wrote && old.Final():
		return Result{JobID: jobID, UID: uid, Status: old.Status, Duplicate: true}
	case !wrote:
		return Result{JobID: jobID, UID: uid, Retry: RetryLease, Wait: time.Until(time.UnixMilli(old.LeaseUntil))}
	}
	return r.outcome(jobID, uid)
}

// settleAttempts bounds the retries of the write that records an outcome:
// after a send, losing that write would leave the job INPROGRESS.
const settleAttempts = 3

func (s *Sender) settle(ctx context.Context, jobID, uid string, c Claim, r result) Result {
	out := r.outcome(jobID, uid)
	var err error
	for i := range settleAttempts {
		if err = s.Ledger.Settle(ctx, jobID, c, r); err == nil || errors.Is(err, ErrClaimLost) {
			break
		}
		time.Sleep(time.Duration(50<<i) * time.Millisecond)
	}
	if err != nil {
		// The outcome stands (a message may be out); the ledger could not
		// say so. Logged and counted for an operator to reconcile.
		s.Metrics.Count("LedgerWriteFailed", "status", string(r.Status))
		out.Err = err
	}
	return out
}

func (s *Sender) release(ctx context.Context, jobID string, c Claim, r result) Result {
	out := Result{JobID: jobID, Channel: r.Channel, Class: r.Class, ErrCode: r.ErrCode, RID: r.RID, Reason: r.Reason}
	if err := s.Ledger.Release(ctx, jobID, c, r); err != nil {
		// The lease runs out by itself; the retry is then a takeover.
		out.Err = err
	}
	return out
}
