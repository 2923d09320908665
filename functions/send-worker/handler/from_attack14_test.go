package handler

// Attacks on issue 14's sending: jobs that name the apps to send from
// ("from") and jobs addressed to a phone number, under lost answers,
// crashes, copies of one job naming other apps, numbers that move while a
// job is on its way, and hostile "from" values. One environment with two
// official accounts, two mini programs, a website app and a mobile app
// serves every attack (each its own people and job ids).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/reach"
)

// The open platform's website and mobile apps: a job's from may name them,
// but no channel sends from them.
var (
	webApp    = sandbox.DevWebsite.AppID
	mobileApp = sandbox.DevMobile.AppID
)

func TestAttack14Sending(t *testing.T) {
	e := newEnv(t, append(multiApp(), testenv.Configure(func(c *config.Config) {
		c.WebsiteApps = []config.App{{AppID: webApp, Secret: sandbox.DevWebsite.Secret}}
		c.MobileApps = []config.App{{AppID: mobileApp, Secret: sandbox.DevMobile.Secret}}
	}))...)
	t.Cleanup(e.sb.ClearFaults)
	for _, a := range []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"lost_answer_on_the_second_account", lostAnswerOnOA2},
		{"crash_after_the_send_then_a_copy_from_the_default", crashThenCopy},
		{"an_entry_from_before_trying_via_resends_as_before", legacyEntry},
		{"copies_naming_three_apps_at_once", copiesAtOnce},
		{"hostile_from", hostileFrom},
		{"identity_in_the_second_mini_program_only", secondMiniProgramOnly},
		{"43004_and_43101_mark_their_own_app_only", perAppState},
		{"phone_moved_merged_or_stale", phoneMoved},
		{"phone_moved_while_an_answer_was_lost", phoneMovedAfterLostAnswer},
		{"phone_verified_while_jobs_resolve", phoneRace},
	} {
		e.sb.ClearFaults()
		t.Run(a.name, func(t *testing.T) { a.run(t, e) })
	}
	// Run last, over every job above: a number is never in a log line, a
	// ledger item or an outcome event, only its last four digits.
	t.Run("numbers_only_masked", func(t *testing.T) { numbersMasked(t, e) })
}

// to is the recipient naming p by unionid.
func to(p sandbox.Person) notify.Recipient { return notify.Recipient{UnionID: p.UnionID} }

// sentFrom lists the messages in p's inbox as channel@appid.
func (e *env) sentFrom(t *testing.T, p sandbox.Person) []string {
	t.Helper()
	var out []string
	for _, m := range e.inbox(t, p) {
		out = append(out, m.Channel+"@"+m.AppID)
	}
	return out
}

// lostAnswerOnOA2: template messages from the second account whose
// answers are lost are resent from that account only, within
// client_msg_id's window, and never fall back. A copy of a job naming the
// default account that comes first sends nothing from it: the earlier
// attempt went through the second, where a resend from the first is not
// deduplicated.
func lostAnswerOnOA2(t *testing.T, e *env) {
	p := e.person(t, []string{oaApp, oaApp2}, []string{mpApp})
	e.consent(t, p)
	resent := from(job("a14-lost-oa2", to(p), notify.Template, notify.Subscribe), oaApp2)
	copied := from(job("a14-lost-oa2-copied", to(p), notify.Template, notify.Subscribe), oaApp2)
	before := e.calls()
	e.sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 2, LostAnswer: true})
	e.enqueue(t, resent, copied)
	r := e.poll(t)
	if len(r.failed) != 2 || e.entry(t, resent.ID).Trying != notify.Template || e.entry(t, copied.ID).Trying != notify.Template {
		t.Fatalf("after the lost answers: failed %d, %+v", len(r.failed), e.entry(t, resent.ID))
	}
	e.enqueue(t, from(copied, oaApp))
	e.drain(t)
	e.later(t, r.failed)
	e.settleAll(t)
	if in := e.sentFrom(t, p); len(in) != 2 || in[0] != "template@"+oaApp2 || in[1] != in[0] {
		t.Errorf("inbox %v, want two templates from %s", in, oaApp2)
	}
	if c := e.called(before); c[subscribePath] != 0 {
		t.Errorf("fell back to subscribe: %v", c)
	}
	got := e.entry(t, resent.ID)
	if last := got.Tried[len(got.Tried)-1]; got.Status != notify.Sent || last.AppID != oaApp2 {
		t.Errorf("resent: %+v, tried %+v; want SENT from %s", got, got.Tried, oaApp2)
	}
	got = e.entry(t, copied.ID)
	if last := got.Tried[len(got.Tried)-1]; got.Status != notify.Unknown || got.Channel != notify.Template || last.AppID != oaApp2 {
		t.Errorf("copied: %+v, tried %+v; want UNKNOWN on the template from %s", got, got.Tried, oaApp2)
	}
}

// crashThenCopy: the worker dies right after the second account accepted
// the template message (nothing recorded, the claim held). A copy of the
// job without from (the default account) takes the job over once the
// lease is out: it must not send from the default account.
func crashThenCopy(t *testing.T, e *env) {
	p := e.person(t, []string{oaApp, oaApp2}, nil)
	j := from(job("a14-crash-oa2", to(p), notify.Template), oaApp2)
	e.h.Sender = crashing(e, &crashAfterSend{path: templatePath})
	e.enqueue(t, j)
	r := e.poll(t)
	e.h.Sender = e.sender
	if len(r.failed) != 1 || len(e.inbox(t, p)) != 1 {
		t.Fatalf("crash round: failed %d, inbox %d", len(r.failed), len(e.inbox(t, p)))
	}
	e.sb.Clock().Advance(DefaultLease + time.Minute)
	e.enqueue(t, from(j))
	e.drain(t)
	e.later(t, r.failed)
	e.settleAll(t)
	if in := e.sentFrom(t, p); len(in) != 1 || in[0] != "template@"+oaApp2 {
		t.Errorf("inbox %v, want the one template from %s", in, oaApp2)
	}
	got := e.entry(t, "a14-crash-oa2")
	if got.Status != notify.Unknown || got.Tried[len(got.Tried)-1].AppID != oaApp2 {
		t.Errorf("ledger %+v, tried %+v; want UNKNOWN naming %s", got, got.Tried, oaApp2)
	}
}

// legacyEntry: a template message whose answer was lost before wxbridge
// noted where an uncertain attempt went (an entry without trying_via,
// written before issue 14): its job, which has no from, is resent as it
// always was, deduplicated by client_msg_id.
func legacyEntry(t *testing.T, e *env) {
	p := e.follower(t)
	e.sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, LostAnswer: true})
	e.enqueue(t, job("a14-legacy", to(p), notify.Template))
	r := e.poll(t)
	_, err := e.te.DB.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{TableName: &e.table, Key: ddb.Key(notify.LedgerPrefix + "a14-legacy"),
		UpdateExpression: aws.String("REMOVE trying_via")})
	if err != nil || len(r.failed) != 1 {
		t.Fatalf("setup: %v, %d failed", err, len(r.failed))
	}
	e.later(t, r.failed)
	e.settleAll(t)
	if got := e.entry(t, "a14-legacy"); got.Status != notify.Sent || len(e.inbox(t, p)) != 1 {
		t.Errorf("ledger %+v, inbox %d; want SENT once", got, len(e.inbox(t, p)))
	}
}

// copiesAtOnce: three copies of one job, each naming another official
// account (or none), in one batch while WeChat is slow: one is sent, from
// the app the ledger names; a copy enqueued after it is a duplicate.
func copiesAtOnce(t *testing.T, e *env) {
	p := e.person(t, []string{oaApp, oaApp2}, nil)
	j := job("a14-copies", to(p), notify.Template)
	before := e.calls()
	e.sb.InjectFault(sandbox.Fault{Path: templatePath, Latency: 30 * time.Millisecond})
	e.enqueue(t, from(j, oaApp2), from(j, oaApp), j)
	e.settleAll(t)
	e.sb.ClearFaults()
	e.enqueue(t, from(j, oaApp2))
	e.settleAll(t)
	got := e.entry(t, "a14-copies")
	in := e.sentFrom(t, p)
	if c := e.called(before); c[templatePath] != 1 || len(in) != 1 || got.Status != notify.Sent || in[0] != "template@"+got.Tried[0].AppID {
		t.Errorf("calls %v, inbox %v, ledger %+v tried %+v: want one send, from the app the ledger names", c, in, got, got.Tried)
	}
}

// rawJob is a template job to p as JSON, with "from" set to from (left out
// when nil).
func rawJob(t *testing.T, id string, p sandbox.Person, from any) string {
	t.Helper()
	b, err := json.Marshal(job(id, to(p), notify.Template))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if from != nil {
		m["from"] = from
	}
	b, _ = json.Marshal(m)
	return string(b)
}

// hostileFrom: from values the contract refuses are FAILED "invalid"
// without a call (contract's tests hold every shape; these reach the
// worker); a website or mobile app, or the defaults named explicitly, send
// exactly as a job without from does, skip reasons included; an app
// wxbridge does not have is UNDELIVERABLE.
func hostileFrom(t *testing.T, e *env) {
	p := e.person(t, []string{oaApp, oaApp2}, []string{mpApp})
	nobody := e.person(t, nil, []string{mpApp2})
	before := e.calls()
	invalid := map[string]string{
		"a14-upper":       `"` + strings.ToUpper(oaApp2) + `"`,
		"a14-five":        `["` + oaApp + `","` + oaApp2 + `","` + mpApp + `","` + webApp + `","` + mobileApp + `"]`,
		"a14-number-list": `["` + oaApp2 + `",7]`,
	}
	for id, from := range invalid {
		e.enqueueRaw(t, rawJob(t, id, p, json.RawMessage(from)))
	}
	// Each sends its template from the default account, as without from.
	asDefault := map[string]any{
		"a14-web":        webApp,
		"a14-mobile-web": []string{mobileApp, webApp},
		"a14-defaults":   []string{mpApp, oaApp},
	}
	for id, from := range asDefault {
		e.enqueueRaw(t, rawJob(t, id, p, from))
	}
	e.enqueueRaw(t, rawJob(t, "a14-unknown-web", p, []string{mobileApp, sandbox.DevWebsite2.AppID}))
	// Someone nothing reaches: the defaults named explicitly give the
	// same outcome as no from, reasons and all.
	e.enqueue(t, job("a14-nobody", to(nobody), notify.Template, notify.Subscribe),
		from(job("a14-nobody-named", to(nobody), notify.Template, notify.Subscribe), oaApp, mpApp))
	e.settleAll(t)

	for id := range invalid {
		if got := e.entry(t, id); got.Status != notify.Failed || got.Class != "invalid" || !strings.Contains(got.Reason, "from") {
			t.Errorf("%s (from %s): %+v, want FAILED invalid naming from", id, invalid[id], got)
		}
	}
	if c := e.called(before); c[templatePath] != len(asDefault) || len(c) != 1 {
		t.Errorf("calls %v, want one template per job sent as without from", c)
	}
	for id := range asDefault {
		got := e.entry(t, id)
		if got.Status != notify.Sent || len(got.Tried) != 1 || got.Tried[0].AppID != oaApp {
			t.Errorf("%s: %+v tried %+v, want SENT from %s", id, got, got.Tried, oaApp)
		}
	}
	if got := e.entry(t, "a14-unknown-web"); got.Status != notify.Undeliverable || !strings.HasPrefix(got.Reason, notify.UnknownApp) {
		t.Errorf("a website app not configured: %+v", got)
	}
	plain, named := e.entry(t, "a14-nobody"), e.entry(t, "a14-nobody-named")
	if plain.Status != notify.Undeliverable || plain.Reason != named.Reason || fmt.Sprint(plain.Tried) != fmt.Sprint(named.Tried) {
		t.Errorf("defaults named explicitly differ from none:\n none:  %s %q %+v\n named: %s %q %+v",
			plain.Status, plain.Reason, plain.Tried, named.Status, named.Reason, named.Tried)
	}
}

// secondMiniProgramOnly: someone who uses the second mini program only. A
// subscribe job without from cannot reach them from the default one: it is
// UNDELIVERABLE, without a call, and says where they are; the same job
// from the second mini program is sent there.
func secondMiniProgramOnly(t *testing.T, e *env) {
	p := e.person(t, nil, []string{mpApp2})
	e.consent(t, p)
	before := e.calls()
	e.enqueue(t, job("a14-mp2-only", to(p), notify.Subscribe), from(job("a14-mp2-named", to(p), notify.Subscribe), mpApp2))
	e.settleAll(t)
	got := e.entry(t, "a14-mp2-only")
	if c := e.called(before); c[subscribePath] != 1 || len(c) != 1 {
		t.Errorf("calls %v, want the second mini program's only", c)
	}
	if got.Status != notify.Undeliverable || !strings.HasPrefix(got.Reason, "subscribe: no mini-program identity") || !strings.Contains(got.Reason, mpApp2) {
		t.Errorf("ledger %+v: want UNDELIVERABLE saying the person is in %s", got, mpApp2)
	}
	if in := e.sentFrom(t, p); len(in) != 1 || in[0] != "subscribe@"+mpApp2 {
		t.Errorf("inbox %v", in)
	}
}

// perAppState: the table says the person follows the second account, but
// they never did (a stale follow): its 43004 marks the second account
// unfollowed, skips its customer-service message, leaves the first
// account's follow alone and falls back to the mini program. A 43101 from
// the second mini program spends its consents only.
func perAppState(t *testing.T, e *env) {
	ctx := context.Background()
	p := e.person(t, []string{oaApp}, []string{mpApp, mpApp2})
	now := e.sb.Clock().Now()
	if _, err := e.store.Link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: oaApp2, OpenID: p.OpenIDs[oaApp2],
		Follow: &identity.Follow{Subscribed: true, At: now.Add(-time.Hour), Seen: now.Add(-time.Hour)}}, UnionID: p.UnionID}); err != nil {
		t.Fatal(err)
	}
	e.consent(t, p)
	// A consent recorded in the first mini program for a template the
	// person gave the second none for (the sandbox keeps consents by
	// template, not by app: another template keeps the two apart).
	other := "mpTemplateOther" + strings.Repeat("0", 28)
	view := e.reachView()
	k1 := reach.Key{AppID: mpApp, OpenID: p.OpenIDs[mpApp]}
	k2 := reach.Key{AppID: mpApp2, OpenID: p.OpenIDs[mpApp2]}
	if err := view.Consented(ctx, k1, []reach.Consent{{TemplateID: other, At: now}}); err != nil {
		t.Fatal(err)
	}
	lost := from(job("a14-43101-mp2", to(p), notify.Subscribe), mpApp2)
	lost.Subscribe.TemplateID = other
	e.enqueue(t, from(allChannels("a14-43004-oa2", p, notify.Template, notify.CustomerService, notify.Subscribe), oaApp2), lost)
	e.settleAll(t)

	got := e.entry(t, "a14-43004-oa2")
	if got.Status != notify.Sent || got.Channel != notify.Subscribe || len(got.Tried) != 3 ||
		got.Tried[0].ErrCode != 43004 || got.Tried[0].AppID != oaApp2 ||
		got.Tried[1].Outcome != contract.TrySkipped || got.Tried[1].AppID != oaApp2 || got.Tried[2].AppID != mpApp {
		t.Errorf("ledger %+v tried %+v", got, got.Tried)
	}
	person, err := e.store.Lookup(ctx, identity.UnionKey(p.UnionID))
	if err != nil {
		t.Fatal(err)
	}
	if oa1, oa2 := person.OA[oaApp], person.OA[oaApp2]; !oa1.Subscribed || oa1.UnsubscribedAt != nil || oa2.Subscribed || oa2.UnsubscribedAt == nil {
		t.Errorf("after 43004 from %s: first account %+v, second %+v", oaApp2, oa1, oa2)
	}
	if got := e.entry(t, "a14-43101-mp2"); got.Status != notify.Undeliverable || got.ErrCode != 43101 || got.Tried[0].AppID != mpApp2 {
		t.Errorf("43101 from %s: %+v", mpApp2, got)
	}
	st, err := view.Get(ctx, k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	if c1, c2 := st[k1].Consents[other], st[k2].Consents[other]; c1.Left != 1 || !c2.Gone() {
		t.Errorf("consents after 43101 from %s: first %+v, second %+v", mpApp2, c1, c2)
	}
}

// verify records that the person of p verified number at at.
func (e *env) verify(t *testing.T, uid, number string, at time.Time) {
	t.Helper()
	if _, err := e.store.VerifyPhone(context.Background(), uid, mpApp, number, at); err != nil {
		t.Fatal(err)
	}
}

// The numbers of the phone attacks, each someone's only once.
const (
	numMoved  = "+8613911110001"
	numMerged = "+8613911110002"
	numKept   = "+8613911110003"
	numStale  = "+8613911110004"
	numLost   = "+8613911110005"
	numRace   = "+8613911110006"
)

// phoneMoved: a number that moved reaches its new holder only; one whose
// holder was merged into someone who kept another number, or whose marker
// names someone who no longer holds it, reaches nobody.
func phoneMoved(t *testing.T, e *env) {
	ctx := context.Background()
	now := e.sb.Clock().Now()
	// Those who must get nothing are mini-program users only: a job
	// resolved to them would be UNDELIVERABLE for another reason.
	old, holder := e.person(t, nil, []string{mpApp}), e.person(t, []string{oaApp}, []string{mpApp})
	e.verify(t, e.uid(t, old), numMoved, now.Add(-3*time.Hour))
	e.verify(t, e.uid(t, holder), numMoved, now.Add(-2*time.Hour))

	// Known twice: by the second account's openid alone (an OAuth visit
	// without unionid), and by the mini program; each verified a number,
	// the mini-program self later. A sighting of the visit's openid with
	// the unionid merges them: the later number stays.
	s := e.person(t, []string{oaApp}, []string{mpApp})
	visit, err := e.store.Link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: oaApp2, OpenID: s.OpenIDs[oaApp2]}})
	if err != nil {
		t.Fatal(err)
	}
	e.verify(t, visit.Person.UID, numMerged, now.Add(-2*time.Hour))
	e.verify(t, e.uid(t, s), numKept, now.Add(-time.Hour))
	if _, err := e.store.Link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: oaApp2, OpenID: s.OpenIDs[oaApp2]}, UnionID: s.UnionID}); err != nil {
		t.Fatal(err)
	}
	if merged, err := e.store.ByUID(ctx, visit.Person.UID); err != nil || merged.UID != e.uid(t, s) || merged.Phone == nil || merged.Phone.Number != numKept {
		t.Fatalf("the merge: %v %+v", err, merged)
	}

	// A marker left naming someone who does not hold the number.
	stale := e.person(t, nil, []string{mpApp})
	item, err := attributevalue.MarshalMap(map[string]any{"pk": "PHONE#" + numStale, "uid": e.uid(t, stale), "verified_at": now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.te.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &e.table, Item: item}); err != nil {
		t.Fatal(err)
	}

	e.enqueue(t,
		job("a14-phone-moved", notify.Recipient{Phone: numMoved}, notify.Template),
		job("a14-phone-merged", notify.Recipient{Phone: numMerged}, notify.Template),
		job("a14-phone-kept", notify.Recipient{Phone: numKept}, notify.Template),
		job("a14-phone-stale", notify.Recipient{Phone: numStale}, notify.Template))
	e.settleAll(t)
	if got := e.entry(t, "a14-phone-moved"); got.Status != notify.Sent || got.UID != e.uid(t, holder) {
		t.Errorf("moved: %+v", got)
	}
	for _, id := range []string{"a14-phone-merged", "a14-phone-stale"} {
		if got := e.entry(t, id); got.Status != notify.Undeliverable || !strings.HasPrefix(got.Reason, notify.NoPersonWithPhone) {
			t.Errorf("%s: %+v, want UNDELIVERABLE %s", id, got, notify.NoPersonWithPhone)
		}
	}
	if got := e.entry(t, "a14-phone-kept"); got.Status != notify.Sent {
		t.Errorf("the merged person's own number: %+v", got)
	}
	if a, b, c, d := len(e.inbox(t, old)), len(e.inbox(t, holder)), len(e.inbox(t, s)), len(e.inbox(t, stale)); a != 0 || b != 1 || c != 1 || d != 0 {
		t.Errorf("inboxes: old holder %d, holder %d, merged %d, stale marker's %d; want 0 1 1 0", a, b, c, d)
	}
}

// phoneMovedAfterLostAnswer: the template to a number's holder loses its
// answer (it may have reached them); before the job comes back, the number
// moves to someone else. The resend would reach that other person, whom
// client_msg_id does not cover: the job is UNKNOWN, and the new holder
// gets nothing.
func phoneMovedAfterLostAnswer(t *testing.T, e *env) {
	first, next := e.person(t, []string{oaApp}, []string{mpApp}), e.person(t, []string{oaApp}, []string{mpApp})
	now := e.sb.Clock().Now()
	e.verify(t, e.uid(t, first), numLost, now.Add(-time.Hour))
	e.sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, LostAnswer: true})
	e.enqueue(t, job("a14-phone-lost", notify.Recipient{Phone: numLost}, notify.Template))
	r := e.poll(t)
	if len(r.failed) != 1 {
		t.Fatalf("the job was not kept for a resend: %+v", r)
	}
	e.verify(t, e.uid(t, next), numLost, now)
	e.later(t, r.failed)
	e.settleAll(t)
	if a, b := len(e.inbox(t, first)), len(e.inbox(t, next)); a != 1 || b != 0 {
		t.Errorf("inboxes: first holder %d, next %d; want 1 and 0", a, b)
	}
	if got := e.entry(t, "a14-phone-lost"); got.Status != notify.Unknown {
		t.Errorf("ledger %+v, want UNKNOWN", got)
	}
}

// phoneRace: the number moves while jobs to it resolve: each job reaches
// exactly one of the two, the one its ledger entry names.
func phoneRace(t *testing.T, e *env) {
	a, b := e.person(t, []string{oaApp}, []string{mpApp}), e.person(t, []string{oaApp}, []string{mpApp})
	uids := map[string]sandbox.Person{e.uid(t, a): a, e.uid(t, b): b}
	now := e.sb.Clock().Now()
	e.verify(t, e.uid(t, a), numRace, now.Add(-time.Hour))
	var jobs []notify.Job
	for i := range 3 {
		j := job(fmt.Sprintf("a14-phone-race-%d", i), notify.Recipient{Phone: numRace}, notify.Template)
		j.Template.Data = map[string]string{"thing1": j.ID}
		jobs = append(jobs, j)
	}
	e.enqueue(t, jobs...)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := e.store.VerifyPhone(context.Background(), e.uid(t, b), mpApp2, numRace, now); err != nil {
			t.Error(err)
		}
	})
	e.settleAll(t)
	wg.Wait()
	got := map[string]string{} // job id -> the person it reached
	for _, p := range []sandbox.Person{a, b} {
		for _, m := range e.inbox(t, p) {
			if _, twice := got[m.Data["thing1"]]; twice {
				t.Errorf("%s reached both", m.Data["thing1"])
			}
			got[m.Data["thing1"]] = p.ID
		}
	}
	for _, j := range jobs {
		entry := e.entry(t, j.ID)
		if entry.Status != notify.Sent || uids[entry.UID].ID != got[j.ID] {
			t.Errorf("%s: ledger %+v names %s, the message reached %q", j.ID, entry, uids[entry.UID].ID, got[j.ID])
		}
	}
}

// numbersMasked: no number of the attacks above, whole or without its
// country code, is in a log line, a ledger item or an outcome event; the
// ledger's to holds the masked one.
func numbersMasked(t *testing.T, e *env) {
	ctx := context.Background()
	numbers := []string{numMoved, numMerged, numKept, numStale, numLost, numRace}
	leaks := func(where, s string) {
		for _, n := range numbers {
			if strings.Contains(s, n[3:]) {
				t.Errorf("%s carries %s", where, n)
			}
		}
	}
	leaks("the logs", e.logs.String())
	out, err := e.te.DB.Scan(ctx, &dynamodb.ScanInput{TableName: &e.table})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, item := range out.Items {
		entry, ok, err := notify.EntryOf(ddb.Item(item))
		if err != nil || !ok || entry.To == nil || entry.To.Phone == "" {
			continue
		}
		n++
		var raw map[string]any
		if err := attributevalue.UnmarshalMap(item, &raw); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(raw)
		leaks("ledger item "+entry.JobID, string(b))
		ev, _ := notify.Outcome(notify.Entry{}, entry)
		b, _ = json.Marshal(ev)
		leaks("the outcome event of "+entry.JobID, string(b))
		if !strings.HasPrefix(entry.To.Phone, "+****") {
			t.Errorf("%s: to.phone %q", entry.JobID, entry.To.Phone)
		}
	}
	if n < 8 {
		t.Errorf("%d ledger entries addressed to a number, want the 8 above", n)
	}
}
