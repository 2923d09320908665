package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/wechat/push"
)

// What the story checks once the faults have stopped and the queues have
// drained.

// invariant is one promise and what became of it.
type invariant struct {
	name       string
	checked    int
	violations []string
	extra      string // figures to print with it
}

func (inv *invariant) violate(format string, args ...any) {
	inv.violations = append(inv.violations, fmt.Sprintf(format, args...))
}

// queueIDs are the template's queues: the work queues and the dead-letter
// queues.
func (r *chaosRun) queueIDs() (work, dead []string) {
	for _, id := range r.s.tpl.ResourcesOf("AWS::SQS::Queue") {
		if strings.HasSuffix(id, "DLQ") {
			dead = append(dead, id)
		} else {
			work = append(work, id)
		}
	}
	sort.Strings(work)
	sort.Strings(dead)
	return work, dead
}

// quiet is one look at whether anything is still moving.
type quiet struct {
	queued  int // messages visible, in flight or delayed on the work queues
	reports int // delivery reports the sandbox has not pushed yet
	open    int // jobs with no ledger entry, or INPROGRESS
	// pushLeft is the push retry queue's messages, of which unmatched
	// may be delivery reports no ledger entry can match.
	pushLeft, unmatched int
	busy                []string
	key                 string
}

func (r *chaosRun) look(ctx context.Context) quiet {
	var q quiet
	work, _ := r.queueIDs()
	var parts []string
	for _, id := range work {
		if id == outcomeQueue {
			continue // the business's queue: checkOutcomes reads it
		}
		n := r.depth(ctx, id)
		if id == "PushRetryQueue" {
			// Delivery reports of sends whose answer was lost match no
			// ledger entry: the follow-event function retries them for
			// minutes of real time, then drops them. Those are accounted
			// for by count (they are delayed, so they cannot be read).
			q.pushLeft = n
			parts = append(parts, fmt.Sprintf("%s=%d", id, n))
			continue
		}
		q.queued += n
		parts = append(parts, fmt.Sprintf("%s=%d", id, n))
		if n > 0 {
			q.busy = append(q.busy, fmt.Sprintf("%s %d", id, n))
		}
	}
	q.reports = r.s.sb.PendingTemplateReports()
	ledger := notify.NewLedger(r.db, r.s.res.refs["Table"])
	for _, j := range r.jobs {
		if !j.Enqueued {
			continue
		}
		e, found, err := ledger.Get(ctx, j.ID)
		switch {
		case err != nil:
			q.open++
			parts = append(parts, j.Key+"=?")
		case !found || !e.Final():
			q.open++
			parts = append(parts, fmt.Sprintf("%s=%s/%d", j.Key, e.Status, e.Attempts))
		default:
			parts = append(parts, j.Key+"="+string(e.Status))
			if e.Status == notify.Unknown && r.reachedByTemplate(j) {
				q.unmatched++
			}
		}
	}
	q.key = fmt.Sprint(q.reports, parts)
	return q
}

func (r *chaosRun) depth(ctx context.Context, id string) int {
	out, err := r.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(r.s.res.queues[id]), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}})
	if err != nil {
		return 1 // unknown counts as busy
	}
	n := 0
	for _, v := range out.Attributes {
		k, _ := strconv.Atoi(v)
		n += k
	}
	return n
}

// drain waits, at most bound, until the work queues are empty, the sandbox
// has pushed every delivery report and every job is final, three looks in a
// row; or until nothing moves any more: nothing changed for 5 s with the
// queues empty (a job left INPROGRESS with no message to bring it back
// stays so forever), or for longer than a queue's visibility timeout with
// messages on it (a message that fails on every receive, such as a
// delivery report no ledger entry will ever match, which the follow-event
// function retries for minutes of real time). Whatever is left on the
// queues then is accounted for like a dead letter.
func (r *chaosRun) drain(bound time.Duration) (took time.Duration, settled bool, why string) {
	ctx := context.Background()
	start := time.Now()
	calm, lastKey, since := 0, "", time.Now()
	longest := 0
	for _, secs := range lapsedVisibility {
		longest = max(longest, secs)
	}
	var q quiet
	for time.Since(start) < bound {
		q = r.look(ctx)
		idle := q.queued == 0 && q.reports == 0 && q.pushLeft <= q.unmatched
		if idle && q.open == 0 {
			if calm++; calm >= 3 {
				r.left = q
				return time.Since(start), true, ""
			}
		} else {
			calm = 0
		}
		r.left = q
		patience := 5 * time.Second
		if q.queued > 0 || q.pushLeft > 0 {
			patience = time.Duration(longest+6) * time.Second
		}
		if q.key != lastKey {
			lastKey, since = q.key, time.Now()
		} else if q.reports == 0 && time.Since(since) > patience {
			return time.Since(start), false, fmt.Sprintf("; nothing moved for %s: %d queued %v, %d on PushRetryQueue (%d may be reports no ledger entry can match), %d job(s) not final", patience, q.queued, q.busy, q.pushLeft, q.unmatched, q.open)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(start), false, fmt.Sprintf("; gave up after %s: %d queued %v, %d on PushRetryQueue (%d may be reports no ledger entry can match), %d reports waiting, %d job(s) not final", bound, q.queued, q.busy, q.pushLeft, q.unmatched, q.reports, q.open)
}

// reachedByTemplate reports whether job j's template message reached the
// phone (so that the sandbox pushed a delivery report for it).
func (r *chaosRun) reachedByTemplate(j *chaosJob) bool {
	inbox, _ := r.s.sb.Inbox(r.people[j.Person].ID)
	for _, m := range inbox {
		if m.Channel == "template" && m.Data["character_string2"] == j.Key {
			return true
		}
	}
	return false
}

// check verifies every invariant.
func (r *chaosRun) check() []*invariant {
	ctx := context.Background()
	follow := &invariant{name: "follow state as WeChat has it"}
	split := &invariant{name: "nobody split across two people"}
	union := &invariant{name: "every known person has their unionid"}
	outcome := &invariant{name: "every job has one final outcome"}
	twice := &invariant{name: "no phone got a job twice"}
	truth := &invariant{name: "the outcome agrees with the phone"}
	dead := &invariant{name: "every dead or left-over letter accounted for"}

	store := identity.NewStore(r.db, r.s.res.refs["Table"])
	mpApp, oaApp := r.s.apps.MiniProgram.AppID, r.s.apps.OfficialAccount.AppID
	known := map[string]identity.Person{} // by sandbox person id: the person the OA openid names
	unlinkable := 0

	for _, p := range r.people {
		sp, ok := r.s.sb.Person(p.ID)
		if !ok {
			r.fail("sandbox lost person %s", p.ID)
			continue
		}
		uids := map[string][]string{}
		for _, k := range []identity.Key{identity.MPKey(mpApp, p.MPOpenID), identity.OAKey(oaApp, p.OAOpenID), identity.UnionKey(p.UnionID)} {
			found, err := store.Lookup(ctx, k)
			switch {
			case errors.Is(err, identity.ErrNotFound):
				continue
			case err != nil:
				r.fail("lookup %s: %v", k, err)
				continue
			}
			uids[found.UID] = append(uids[found.UID], string(k.Kind))
			if k.Kind == identity.KindOA {
				known[p.ID] = found
			}
		}

		split.checked++
		// An OA openid whose person has no unionid, of someone who does not
		// follow (any more) and never signed in on H5, cannot be linked:
		// user/info tells nothing of a non-follower. Such a follow whose
		// user/info failed until after the unfollow stays apart from the
		// person's mini-program identity, whatever wxbridge does.
		oaUID := known[p.ID].UID
		oaOnly := len(uids) == 2 && slices.Equal(uids[oaUID], []string{string(identity.KindOA)}) &&
			!sp.Following && !p.signedIn && known[p.ID].UnionID == ""
		switch {
		case oaOnly:
			unlinkable++
		case len(uids) > 1:
			split.violate("%s is %d people in wxbridge: %v%s", p.ID, len(uids), uids, r.personTrace(p, keysOf(uids)...))
		}
		// wxbridge can learn the unionid from a login (jscode2session), an
		// H5 sign-in (snsapi_userinfo) or a follower's user/info; of someone
		// who has unfollowed, user/info says nothing more (subscribe 0).
		learnable := sp.Following || p.signedIn || slices.ContainsFunc(keysOf(uids), func(uid string) bool {
			return slices.Contains(uids[uid], string(identity.KindMP))
		})
		if len(uids) > 0 && learnable {
			union.checked++
			hasUnion := false
			for _, kinds := range uids {
				hasUnion = hasUnion || slices.Contains(kinds, string(identity.KindUnion))
			}
			if !hasUnion {
				union.violate("%s is known to wxbridge (%v) without their unionid%s", p.ID, uids, r.personTrace(p, keysOf(uids)...))
			}
		}

		follow.checked++
		wx, ok := known[p.ID]
		follows := ok && wx.OA[oaApp].Subscribed
		if follows != sp.Following {
			how := "acknowledged"
			if !p.lastAcked {
				how = "NOT acknowledged (WeChat gave up on it)"
			}
			oa := wx.OA[oaApp]
			follow.violate("%s follows=%v on WeChat, %v in wxbridge (subscribed_at %s, unsubscribed_at %s; %d follow/unfollow pushes, the last %s)%s",
				p.ID, sp.Following, follows, unixOf(oa.SubscribedAt), unixOf(oa.UnsubscribedAt), p.pushes, how, r.personTrace(p, wx.UID))
		}
	}
	split.extra = fmt.Sprintf("people whose OA openid WeChat never revealed the unionid of (apart, as nothing can link them): %d", unlinkable)
	unacked := 0
	for _, p := range r.people {
		unacked += p.unacked
	}
	follow.extra = fmt.Sprintf("follow/unfollow pushes WeChat gave up on (no success after its retries): %d", unacked)

	// Jobs: the ledger and the phones.
	ledger := notify.NewLedger(r.db, r.s.res.refs["Table"])
	entries := map[string]notify.Entry{}
	statuses := tally{}
	for _, j := range r.jobs {
		if !j.Enqueued {
			continue
		}
		outcome.checked++
		e, found, err := ledger.Get(ctx, j.ID)
		switch {
		case err != nil:
			r.fail("ledger %s: %v", j.ID, err)
		case !found:
			statuses.add("(no entry)")
			outcome.violate("%s has no ledger entry%s", j.ID, r.jobTrace(j))
		case !e.Final():
			statuses.add(string(e.Status))
			outcome.violate("%s is still %s after %d attempt(s) (channel %q, reason %q, lease until %s)%s", j.ID, e.Status, e.Attempts, e.Channel, e.Reason,
				time.UnixMilli(e.LeaseUntil).Format(time.TimeOnly), r.jobTrace(j))
		default:
			statuses.add(string(e.Status))
			entries[j.ID] = e
		}
	}
	outcome.extra = "ledger outcomes:" + statuses.String()

	byKey := map[string]*chaosJob{}
	for _, j := range r.jobs {
		byKey[j.Key] = j
	}
	got := map[string][]string{} // job id -> channels it reached the phone on
	for i, p := range r.people {
		inbox, err := r.s.sb.Inbox(p.ID)
		if err != nil {
			r.fail("inbox of %s: %v", p.ID, err)
			continue
		}
		for _, m := range inbox {
			j := byKey[m.Data["character_string2"]]
			if j == nil {
				twice.violate("%s got a message no job of this story sent: %v", p.ID, m.Data)
				continue
			}
			if j.Person != i {
				twice.violate("%s reached %s, not its addressee %s%s", j.ID, p.ID, r.people[j.Person].ID, r.jobTrace(j))
			}
			got[j.ID] = append(got[j.ID], m.Channel)
		}
	}
	for _, j := range r.jobs {
		if !j.Enqueued {
			continue
		}
		twice.checked++
		if n := len(got[j.ID]); n > 1 {
			twice.violate("%s reached the phone %d times, on %v (ledger: %s)%s", j.ID, n, got[j.ID], describeEntry(entries[j.ID]), r.jobTrace(j))
		}
		e, final := entries[j.ID]
		if !final {
			continue
		}
		truth.checked++
		reached := len(got[j.ID]) > 0
		switch e.Status {
		case notify.Failed, notify.Undeliverable, notify.Expired:
			if reached {
				truth.violate("%s reached the phone (%v) but the ledger says it was not sent: %s%s", j.ID, got[j.ID], describeEntry(e), r.jobTrace(j))
			}
		case notify.Sent, notify.Delivered:
			switch {
			case !reached:
				truth.violate("the ledger says %s was sent (%s) but nothing reached the phone%s", j.ID, describeEntry(e), r.jobTrace(j))
			case e.Channel != "" && !slices.Contains(got[j.ID], string(e.Channel)):
				truth.violate("the ledger says %s went by %s, the phone got it by %v%s", j.ID, e.Channel, got[j.ID], r.jobTrace(j))
			}
		}
	}

	// Dead letters, and whatever the work queues still hold.
	work, dlqs := r.queueIDs()
	letters := tally{}
	for _, id := range append(dlqs, work...) {
		if id == "PushRetryQueue" || id == outcomeQueue {
			continue // counted below; checkOutcomes
		}
		for _, m := range r.drainQueue(ctx, id) {
			dead.checked++
			letters.add(id)
			if why, ok := r.explain(strings.TrimSuffix(strings.TrimSuffix(id, "DLQ"), "Queue"), m, entries, known); !ok {
				dead.violate("%s: %s", id, why)
			}
		}
	}
	if left := r.left.pushLeft; left > 0 {
		dead.checked += left
		for range left {
			letters.add("PushRetryQueue (still retried, by count)")
		}
		if left > r.left.unmatched {
			dead.violate("PushRetryQueue still holds %d message(s); only %d can be delivery reports of sends whose outcome the ledger says is UNKNOWN", left, r.left.unmatched)
		}
	}
	dead.extra = "dead and left-over letters:" + letters.String()
	if letters.total() == 0 {
		dead.extra = "dead and left-over letters: none"
	}
	return []*invariant{follow, split, union, outcome, twice, truth, dead, r.checkOutcomes(ctx, entries, 20*time.Second)}
}

// explain says why a dead letter is harmless, or what it lost.
func (r *chaosRun) explain(queue string, body string, entries map[string]notify.Entry, known map[string]identity.Person) (string, bool) {
	switch queue {
	case "Send":
		job, err := notify.Parse([]byte(body))
		if err != nil && job.ID == "" {
			return fmt.Sprintf("a message that is no job: %.200s", body), false
		}
		if e, ok := entries[job.ID]; ok {
			return fmt.Sprintf("job %s, %s in the ledger", job.ID, e.Status), true
		}
		return fmt.Sprintf("job %s has no final outcome in the ledger", job.ID), false
	case "PushRetry":
		var e push.Event
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			return fmt.Sprintf("a message that is no event: %.200s", body), false
		}
		if e.Event == push.TemplateFinish {
			for id, entry := range entries {
				if entry.MsgID == e.MsgID && (entry.Status == notify.Delivered || entry.Status == notify.Blocked) {
					return fmt.Sprintf("report for %s, %s in the ledger", id, entry.Status), true
				}
			}
			// A report for a message whose send answer was lost: its msgid
			// is unknown to wxbridge, whose ledger must say so.
			for _, j := range r.jobs {
				entry := entries[j.ID]
				if r.people[j.Person].OAOpenID == e.FromUserName && entry.Status == notify.Unknown && (entry.Channel == notify.Template || entry.Trying == notify.Template) {
					return fmt.Sprintf("report for a template message whose send answer was lost (%s is %s)", j.ID, entry.Status), true
				}
			}
			return fmt.Sprintf("delivery report %q for msgid %s lost: no job shows it, nor admits not knowing%s", e.Status, e.MsgID, r.logLines(e.MsgID)), false
		}
		for _, p := range r.people {
			if p.OAOpenID != e.FromUserName {
				continue
			}
			// The event's news arrived some other way (WeChat's retry, or a
			// later event) if wxbridge has a follow change at or after it.
			oa := known[p.ID].OA[r.s.apps.OfficialAccount.AppID]
			for _, t := range []*time.Time{oa.SubscribedAt, oa.UnsubscribedAt} {
				if t != nil && t.Unix() >= e.CreateTime {
					return fmt.Sprintf("%s of %s, superseded in wxbridge", e.Kind(), p.ID), true
				}
			}
			return fmt.Sprintf("%s of %s at %s acknowledged to WeChat and never handled%s", e.Kind(), p.ID,
				time.Unix(e.CreateTime, 0).Format(time.TimeOnly), r.personTrace(p, known[p.ID].UID)), false
		}
		return fmt.Sprintf("%s from an openid of nobody in the story: %.200s", e.Kind(), body), false
	}
	return fmt.Sprintf("unexpected: %.300s", body), false
}

// drainQueue receives every message of a dead-letter queue.
func (r *chaosRun) drainQueue(ctx context.Context, id string) []string {
	var bodies []string
	for empty := 0; empty < 2; {
		out, err := r.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(r.s.res.queues[id]), MaxNumberOfMessages: 10, VisibilityTimeout: 600})
		if err != nil {
			r.fail("read %s: %v", id, err)
			return bodies
		}
		if len(out.Messages) == 0 {
			empty++
			continue
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
		}
	}
	return bodies
}

func describeEntry(e notify.Entry) string {
	if e.Status == "" {
		return "no final entry"
	}
	s := fmt.Sprintf("%s channel=%q attempts=%d", e.Status, e.Channel, e.Attempts)
	if e.ErrCode != 0 {
		s += fmt.Sprintf(" errcode=%d", e.ErrCode)
	}
	if e.Reason != "" {
		s += fmt.Sprintf(" reason=%q", e.Reason)
	}
	return s
}

// personTrace is what a person did, and the functions' log lines that name
// them (by any of ids), for a violation's report.
func (r *chaosRun) personTrace(p *chaosPerson, ids ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n      what %s did (mp %s, oa %s, unionid %s):", p.ID, p.MPOpenID, p.OAOpenID, p.UnionID)
	for _, line := range p.trace {
		b.WriteString("\n        " + line)
	}
	b.WriteString(r.logLines(append(ids, p.MPOpenID, p.OAOpenID, p.UnionID)...))
	return b.String()
}

func (r *chaosRun) jobTrace(j *chaosJob) string {
	p := r.people[j.Person]
	return fmt.Sprintf("\n      job %s (%s) to %s by unionid, channels %v, enqueued at %.2fs", j.ID, j.Key, p.ID, j.Channels, j.At.Seconds()) +
		r.logLines(j.ID)
}

// logLines are the functions' log lines that mention any of ids (at most
// 20, the last ones).
func (r *chaosRun) logLines(ids ...string) string {
	var hits []string
	for line := range strings.SplitSeq(r.logs.String(), "\n") {
		for _, id := range ids {
			if id != "" && strings.Contains(line, id) {
				hits = append(hits, line)
				break
			}
		}
	}
	if len(hits) == 0 {
		return ""
	}
	const most = 20
	var b strings.Builder
	fmt.Fprintf(&b, "\n      log lines (%d, the last %d):", len(hits), min(len(hits), most))
	for _, h := range hits[max(0, len(hits)-most):] {
		b.WriteString("\n        " + h)
	}
	return b.String()
}

// lastTroubles are the functions' latest warnings and errors.
func (r *chaosRun) lastTroubles(most int) string {
	var hits []string
	for line := range strings.SplitSeq(r.logs.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			hits = append(hits, line)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n      the functions' last warnings and errors (%d of %d):", min(len(hits), most), len(hits))
	for _, h := range hits[max(0, len(hits)-most):] {
		b.WriteString("\n        " + h)
	}
	return b.String()
}

// unixOf is a follow time as the push's CreateTime reads (Unix seconds).
func unixOf(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return strconv.FormatInt(t.Unix(), 10)
}

func keysOf(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
