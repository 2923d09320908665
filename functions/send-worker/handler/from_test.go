package handler

import (
	"context"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
)

// The second official account and mini program of the sandbox's open
// platform account.
var (
	oaApp2 = sandbox.DevOfficialAccount2.AppID
	mpApp2 = sandbox.DevMiniProgram2.AppID
)

// multiApp is the environment's sandbox with every dev app, and a
// configuration with two official accounts and two mini programs.
func multiApp() []testenv.Option {
	return []testenv.Option{
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			c.OfficialAccounts = []config.OfficialAccount{{
				App:   config.App{AppID: oaApp2, Secret: sandbox.DevOfficialAccount2.Secret},
				Token: testenv.PushToken, EncodingAESKey: testenv.EncodingAESKey,
			}}
			c.MiniPrograms = []config.App{{AppID: mpApp2, Secret: sandbox.DevMiniProgram2.Secret}}
		}),
	}
}

// person is someone who follows the official accounts oas (through the
// push, as in production) and has logged in to the mini programs mps.
func (e *env) person(t testing.TB, oas, mps []string) sandbox.Person {
	t.Helper()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	for _, oa := range oas {
		if d, err := e.sb.FollowApp(context.Background(), p.ID, oa, ""); err != nil || !d.Delivered {
			t.Fatalf("follow %s: %v %+v", oa, err, d)
		}
	}
	for _, mp := range mps {
		if _, err := e.store.Link(context.Background(), identity.Sighting{MP: &identity.MPSighting{AppID: mp, OpenID: p.OpenIDs[mp]}, UnionID: p.UnionID}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// from is job with from set.
func from(j notify.Job, appids ...string) notify.Job {
	j.From = appids
	return j
}

// TestSendFromAnyApp: a job's from picks the official account and the mini
// program its channels send from, and to.phone the person who verified the
// number last (one environment with two of each app for both parts).
func TestSendFromAnyApp(t *testing.T) {
	e := newEnv(t, multiApp()...)
	t.Run("from", func(t *testing.T) { sendFrom(t, e) })
	t.Run("to_phone", func(t *testing.T) { sendToPhone(t, e) })
}

// sendFrom: each message lands in the inbox of the app that sent it, the
// ledger notes the app of every try, and a job without from sends from the
// defaults as before. A person without an identity in the app is skipped to
// the next channel; a 43004 marks that app's follow only. A from that names
// an app wxbridge does not have, or two of one kind, is UNDELIVERABLE
// without a call to WeChat.
func sendFrom(t *testing.T, e *env) {
	ctx := context.Background()
	both := e.person(t, []string{oaApp, oaApp2}, []string{mpApp, mpApp2})
	e.consent(t, both)
	e.consent(t, both)
	// Followed the first account only, logged in to the first mini
	// program only.
	first := e.person(t, []string{oaApp}, []string{mpApp})
	e.consent(t, first)
	// Known to the second account (an H5 sign-in) without following it.
	signedIn := e.person(t, []string{oaApp}, nil)
	if _, err := e.store.Link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: oaApp2, OpenID: signedIn.OpenIDs[oaApp2]}, UnionID: signedIn.UnionID}); err != nil {
		t.Fatal(err)
	}

	to := func(p sandbox.Person) notify.Recipient { return notify.Recipient{UnionID: p.UnionID} }
	before := e.calls()
	e.enqueue(t,
		from(job("from-oa2", to(both), notify.Template), oaApp2),
		from(job("from-mp2", to(both), notify.Subscribe), mpApp2),
		job("from-defaults", to(both), notify.Template),
		from(job("from-mp1-named", to(both), notify.Subscribe), mpApp, oaApp2),
		// first has no identity in the second account: template is
		// skipped, subscribe goes out from the default mini program.
		from(job("no-identity-in-oa2", to(first), notify.Template, notify.Subscribe), oaApp2),
		// An openid of the second account names the person there.
		from(job("openid-of-oa2", notify.Recipient{OAOpenID: both.OpenIDs[oaApp2]}, notify.Template), oaApp2),
		// 43004 from the second account marks that account's follow only.
		from(job("not-following-oa2", to(signedIn), notify.Template), oaApp2),
		from(job("unknown-app", to(both), notify.Template), "wx0000000000000fff"),
		from(job("two-oas", to(both), notify.Template), oaApp, oaApp2),
	)
	e.drain(t)

	sentFrom := func(id, channel, appid string) {
		t.Helper()
		got := e.entry(t, id)
		last := got.Tried[len(got.Tried)-1]
		if got.Status != notify.Sent || string(got.Channel) != channel || last.AppID != appid || last.Outcome != contract.TrySent {
			t.Errorf("%s: %+v, tried %+v; want sent on %s from %s", id, got, got.Tried, channel, appid)
		}
	}
	sentFrom("from-oa2", "template", oaApp2)
	sentFrom("from-mp2", "subscribe", mpApp2)
	sentFrom("from-defaults", "template", oaApp)
	sentFrom("from-mp1-named", "subscribe", mpApp)
	sentFrom("no-identity-in-oa2", "subscribe", mpApp)
	sentFrom("openid-of-oa2", "template", oaApp2)
	if got := e.entry(t, "no-identity-in-oa2"); got.Tried[0].Outcome != contract.TrySkipped || got.Tried[0].AppID != oaApp2 ||
		!strings.HasPrefix(got.Tried[0].Reason, notify.NoIdentityInApp) {
		t.Errorf("no identity in %s: tried %+v", oaApp2, got.Tried)
	}
	// The inboxes say which app each message came from.
	var apps []string
	for _, m := range e.inbox(t, both) {
		apps = append(apps, m.Channel+"@"+m.AppID)
	}
	want := map[string]int{"template@" + oaApp2: 2, "subscribe@" + mpApp2: 1, "template@" + oaApp: 1, "subscribe@" + mpApp: 1}
	for _, a := range apps {
		want[a]--
	}
	for a, n := range want {
		if n != 0 {
			t.Errorf("inbox of the person of both apps: %v (%s off by %d)", apps, a, -n)
		}
	}
	if in := e.inbox(t, first); len(in) != 1 || in[0].AppID != mpApp {
		t.Errorf("inbox of the person of the first apps: %+v", in)
	}

	got := e.entry(t, "not-following-oa2")
	if got.Status != notify.Undeliverable || got.ErrCode != 43004 || got.Tried[0].AppID != oaApp2 {
		t.Errorf("not following %s: %+v", oaApp2, got)
	}
	p, err := e.store.Lookup(ctx, identity.UnionKey(signedIn.UnionID))
	if err != nil {
		t.Fatal(err)
	}
	if oa1, oa2 := p.OA[oaApp], p.OA[oaApp2]; !oa1.Subscribed || oa2.Subscribed || oa2.UnsubscribedAt == nil {
		t.Errorf("after 43004 from %s: first account %+v, second %+v", oaApp2, oa1, oa2)
	}

	for id, reason := range map[string]string{"unknown-app": notify.UnknownApp, "two-oas": notify.TwoAppsOfOneKind} {
		if got := e.entry(t, id); got.Status != notify.Undeliverable || !strings.HasPrefix(got.Reason, reason) || len(got.Tried) != 0 {
			t.Errorf("%s: %+v, want UNDELIVERABLE %s", id, got, reason)
		}
	}
	// Every job above but those two called WeChat once, the 43004 too;
	// the skipped template did not.
	if c := e.called(before); c["/cgi-bin/message/template/send"] != 4 || c["/cgi-bin/message/subscribe/send"] != 3 {
		t.Errorf("calls %v", c)
	}
}

// sendToPhone: to.phone goes to whoever verified the number last; a
// number that moved to someone else never reaches its old holder, and one
// nobody holds is UNDELIVERABLE at once. The number is never in a log line
// or the ledger (which outcome events are made of): only its last four
// digits.
func sendToPhone(t *testing.T, e *env) {
	ctx := context.Background()
	old := e.person(t, []string{oaApp}, []string{mpApp})
	holder := e.person(t, []string{oaApp}, []string{mpApp2})
	const number = "+8613900001234"
	now := e.sb.Clock().Now()
	if _, err := e.store.VerifyPhone(ctx, e.uid(t, old), mpApp, number, now.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The number was reassigned: its new holder verified it in the second
	// mini program.
	if _, err := e.store.VerifyPhone(ctx, e.uid(t, holder), mpApp2, number, now); err != nil {
		t.Fatal(err)
	}
	e.enqueue(t,
		job("to-phone", notify.Recipient{Phone: number}, notify.Template),
		job("to-nobody", notify.Recipient{Phone: "+8613900005678"}, notify.Template),
	)
	e.drain(t)
	if got := e.entry(t, "to-phone"); got.Status != notify.Sent || got.UID != e.uid(t, holder) || got.To == nil || got.To.Phone != "+****1234" {
		t.Errorf("to-phone: %+v (to %+v)", got, got.To)
	}
	if in, old := e.inbox(t, holder), e.inbox(t, old); len(in) != 1 || len(old) != 0 {
		t.Errorf("inboxes: holder %+v, old holder %+v", in, old)
	}
	got := e.entry(t, "to-nobody")
	if got.Status != notify.Undeliverable || !strings.HasPrefix(got.Reason, notify.NoPersonWithPhone) || got.To == nil || got.To.Phone != "+****5678" {
		t.Errorf("to-nobody: %+v (to %+v)", got, got.To)
	}
	if logs := e.logs.String(); strings.Contains(logs, "13900001234") || strings.Contains(logs, "13900005678") {
		t.Error("a log line carries a phone number")
	}
}
