package identity

// Issue 14 attacks on the identity hub: a person's own verifications of
// two numbers arriving out of order, and people split across apps merging
// at once while their numbers move.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
)

// TestVerifyPhoneOwnVerificationsOutOfOrder: a person verifies one number,
// then another; the older verification's write lands last (two taps, the
// first request slower). The person keeps the number verified last, as if
// the two had landed in order: the older number is nobody's, and whoever
// held it before the late verification has lost it all the same.
func TestVerifyPhoneOwnVerificationsOutOfOrder(t *testing.T) {
	st, db, table := newStore(t)
	ctx := context.Background()
	const old, cur = "+8613800001401", "+8613800001402"
	t1, t2, t3 := t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	a, b := newPerson(t, st, "ooo-a"), newPerson(t, st, "ooo-b")
	if _, err := st.VerifyPhone(ctx, b, mpApp, old, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.VerifyPhone(ctx, a, mpApp, cur, t2); err != nil {
		t.Fatal(err)
	}
	p, err := st.VerifyPhone(ctx, a, mpApp, old, t1) // late
	if err != nil {
		t.Fatal(err)
	}
	if p.Phone == nil || p.Phone.Number != cur || !p.Phone.VerifiedAt.Equal(t2) {
		t.Errorf("late verification answered %v, want the later number kept", p.Phone)
	}
	if got, at := phoneOf(t, st, a); got != cur || !at.Equal(t2) {
		t.Errorf("A holds %q at %v, want %q at %v", got, at, cur, t2)
	}
	if got, _ := phoneOf(t, st, b); got != "" {
		t.Errorf("B still holds %q: A verified it after B", got)
	}
	if got := holder(t, st, old); got != "" {
		t.Errorf("ByPhone(old) = %q, want nobody", got)
	}
	if got := holder(t, st, cur); got != a {
		t.Errorf("ByPhone(cur) = %q, want A", got)
	}
	// A later verification of the old number by someone takes it.
	if _, err := st.VerifyPhone(ctx, b, mpApp, old, t3); err != nil {
		t.Fatal(err)
	}
	if got := holder(t, st, old); got != b {
		t.Errorf("ByPhone(old) after B's = %q, want B", got)
	}
	if people := checkInvariants(t, db, table); len(people) != 2 {
		t.Errorf("people = %d, want 2", len(people))
	}
}

// TestSplitPeopleMergeAcrossAppsAtOnce: one human is three people, each
// seen in one app without the unionid (a login in the second mini program,
// a website QR login, a follow of the second official account), two of
// them with a verified number. The unionid then arrives from all three
// apps at once, some writes losing their answers, while a stranger
// verifies one of the two numbers. One person ends with every identity
// and the later of the two numbers; the stranger holds the other; no
// marker names a retired person.
func TestSplitPeopleMergeAcrossAppsAtOnce(t *testing.T) {
	st, db, table := newStore(t)
	lost := awsfault.ForTest(t, awstest.Endpoint(),
		awsfault.Rule{Service: awsfault.DynamoDB, Operation: "TransactWriteItems", Count: 2, Error: awsfault.LostAnswer})
	lossy := NewStore(dynamodb.NewFromConfig(lost.Config(awstest.Config(nil)), func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
	}), table)
	ctx := context.Background()
	const n1, n2 = "+8613800001411", "+8613800001412"
	const mp2, web, oa2 = 1, 4, 3 // apps
	uid := func(s Sighting) string {
		t.Helper()
		res, err := st.Link(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return res.Person.UID
	}
	x, _, z := uid(seen(mp2, "split", "")), uid(seen(web, "split", "")), uid(seen(oa2, "split", ""))
	stranger := newPerson(t, st, "split-stranger")
	for _, v := range []struct {
		uid, number string
		at          time.Time
	}{{x, n1, t0.Add(time.Second)}, {z, n2, t0.Add(2 * time.Second)}} {
		if _, err := st.VerifyPhone(ctx, v.uid, mpApp, v.number, v.at); err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 8)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := f(); err != nil {
				errs <- err
			}
		}()
	}
	for n, app := range []int{mp2, web, oa2, web} {
		via := st
		if n%2 == 0 {
			via = lossy
		}
		run(func() error { _, err := via.Link(ctx, seen(app, "split", "u-split")); return err })
	}
	run(func() error {
		_, err := lossy.VerifyPhone(ctx, stranger, mpApp, n1, t0.Add(3*time.Second))
		return err
	})
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	p, err := st.Lookup(ctx, UnionKey("u-split"))
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []int{mp2, web, oa2} {
		if _, openid, ok := p.OpenID(apps[app].appid); !ok || openid != openidIn(app, "split") {
			t.Errorf("merged person lacks %s: %+v", apps[app].appid, p)
		}
	}
	if p.UID != x || len(p.MergedFrom) != 2 {
		t.Errorf("survivor %s merged from %v, want the oldest (%s) from the two others", p.UID, p.MergedFrom, x)
	}
	if p.Phone == nil || p.Phone.Number != n2 {
		t.Errorf("merged person's number = %v, want the later one", p.Phone)
	}
	if got := holder(t, st, n1); got != stranger {
		t.Errorf("ByPhone(n1) = %q, want the stranger", got)
	}
	if got := holder(t, st, n2); got != x {
		t.Errorf("ByPhone(n2) = %q, want the merged person", got)
	}
	if q, err := st.ByUID(ctx, z); err != nil || q.UID != x {
		t.Errorf("retired %s resolves to %q %v", z, q.UID, err)
	}
	fired := 0
	for _, r := range lost.List() {
		fired += r.Fired
	}
	if fired == 0 {
		t.Error("setup: no answer was lost")
	}
	if people := checkInvariants(t, db, table); len(people) != 2 {
		t.Errorf("people = %d, want the merged one and the stranger", len(people))
	}
}
