package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/observe"
)

// newPerson links a mini-program login of its own and returns the uid.
func newPerson(t *testing.T, st *Store, openid string) string {
	t.Helper()
	res, err := st.Link(context.Background(), Sighting{MP: &MPSighting{AppID: mpApp, OpenID: openid}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Person.UID
}

// holder is the person ByPhone finds for number, "" when nobody.
func holder(t *testing.T, st *Store, number string) string {
	t.Helper()
	p, err := st.ByPhone(context.Background(), number)
	if errors.Is(err, ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.Phone == nil || p.Phone.Number != number {
		t.Fatalf("ByPhone answered %s, who does not hold the number", p.UID)
	}
	return p.UID
}

// phoneOf is the number uid holds and when it was verified.
func phoneOf(t *testing.T, st *Store, uid string) (string, time.Time) {
	t.Helper()
	p, err := st.ByUID(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phone == nil {
		return "", time.Time{}
	}
	return p.Phone.Number, p.Phone.VerifiedAt
}

func TestVerifyPhone(t *testing.T) {
	st, db, table := newStore(t)
	capture := &observe.Capture{}
	st.Metrics = observe.NewMetrics(capture, "test")
	ctx := context.Background()
	t1, t2, t3 := t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	verify := func(uid, number string, at time.Time) Person {
		t.Helper()
		p, err := st.VerifyPhone(ctx, uid, mpApp, number, at)
		if err != nil {
			t.Fatalf("VerifyPhone: %v", err)
		}
		return p
	}
	// want checks who holds number (ByPhone) and that each of uids holds
	// what phones names ("" nothing).
	want := func(number, by string, phones map[string]string) {
		t.Helper()
		if got := holder(t, st, number); got != by {
			t.Errorf("ByPhone = %q, want %q", got, by)
		}
		for uid, n := range phones {
			if got, _ := phoneOf(t, st, uid); got != n {
				t.Errorf("%s holds %q, want %q", uid, got, n)
			}
		}
	}

	t.Run("the_number_moves_to_the_latest_verifier", func(t *testing.T) {
		const n = "+8613800000001"
		a, b := newPerson(t, st, "move-a"), newPerson(t, st, "move-b")
		if p := verify(a, n, t1); p.Phone == nil || p.Phone.Number != n || !p.Phone.VerifiedAt.Equal(t1) || p.Phone.AppID != mpApp {
			t.Fatalf("A verified: %+v", p.Phone)
		}
		want(n, a, map[string]string{a: n, b: ""})
		verify(b, n, t2)
		want(n, b, map[string]string{a: "", b: n})
		verify(a, n, t3)
		want(n, a, map[string]string{a: n, b: ""})
		if got := counted(capture, "PhoneMoves"); got[""] != 2 {
			t.Errorf("PhoneMoves = %v, want 2", got)
		}
	})

	t.Run("an_older_verification_arriving_late_changes_nothing", func(t *testing.T) {
		const n = "+8613800000002"
		a, b := newPerson(t, st, "late-a"), newPerson(t, st, "late-b")
		verify(a, n, t2)
		before := dump(t, db, table)
		if p := verify(b, n, t1); p.Phone != nil {
			t.Errorf("a superseded verification answered %+v", p.Phone)
		}
		// A's own older verification does not move its time back.
		verify(a, n, t1)
		if after := dump(t, db, table); after != before {
			t.Errorf("older verifications wrote:\nbefore %s\nafter  %s", before, after)
		}
		want(n, a, map[string]string{a: n, b: ""})
		// A later one of the same number refreshes it.
		if p := verify(a, n, t3); !p.Phone.VerifiedAt.Equal(t3) {
			t.Errorf("refreshed at %v, want %v", p.Phone.VerifiedAt, t3)
		}
		if _, at := phoneOf(t, st, a); !at.Equal(t3) {
			t.Errorf("stored verified_at %v, want %v", at, t3)
		}
		verify(b, n, t2) // older than the refresh
		want(n, a, map[string]string{a: n, b: ""})
	})

	t.Run("a_new_number_leaves_the_old_one_to_nobody", func(t *testing.T) {
		const old, cur = "+8613800000003", "+8613800000004"
		a, b := newPerson(t, st, "new-a"), newPerson(t, st, "new-b")
		verify(a, old, t1)
		verify(a, cur, t2)
		// old's marker still names A: a stale hint.
		want(old, "", map[string]string{a: cur})
		want(cur, a, nil)
		moves := counted(capture, "PhoneMoves")[""]
		verify(b, old, t3)
		want(old, b, map[string]string{a: cur, b: old})
		if got := counted(capture, "PhoneMoves")[""]; got != moves {
			t.Errorf("taking a number nobody holds counted a move (%d, was %d)", got, moves)
		}
	})

	t.Run("a_merged_away_uid_verifies_for_its_survivor", func(t *testing.T) {
		const n = "+447700900123"
		older := newPerson(t, st, "retired-a")
		res, err := st.Link(ctx, follow("retired-oa", "u-retired", true, t0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Link(ctx, Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "retired-a"}, UnionID: "u-retired"}); err != nil {
			t.Fatal(err)
		}
		p := verify(res.Person.UID, n, t1)
		if p.UID != older || p.Phone == nil || p.Phone.Number != n {
			t.Fatalf("VerifyPhone(retired) = %s %+v, want the survivor %s with the number", p.UID, p.Phone, older)
		}
		want(n, older, map[string]string{older: n})
	})

	t.Run("a_merge_keeps_the_latest_number", func(t *testing.T) {
		const n1, n2 = "+8613800000005", "+8613800000006"
		a := newPerson(t, st, "merge-a") // older: survives the merge
		res, err := st.Link(ctx, follow("merge-oa", "u-merge", true, t0))
		if err != nil {
			t.Fatal(err)
		}
		b := res.Person.UID
		verify(a, n1, t1)
		verify(b, n2, t2)
		merged, err := st.Link(ctx, Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "merge-a"}, UnionID: "u-merge"})
		if err != nil || merged.Outcome != Merged || merged.Person.UID != a {
			t.Fatalf("merge: %s %v", merged.Outcome, err)
		}
		if ph := merged.Person.Phone; ph == nil || ph.Number != n2 || !ph.VerifiedAt.Equal(t2) {
			t.Errorf("merged person's phone = %+v, want the later one", ph)
		}
		want(n2, a, map[string]string{a: n2})
		want(n1, "", nil)
		// Linking more keeps the number.
		if _, err := st.Link(ctx, seen(4, "merge", "u-merge")); err != nil {
			t.Fatal(err)
		}
		want(n2, a, map[string]string{a: n2})
	})

	people := checkInvariants(t, db, table)
	if len(people) != 8 {
		t.Errorf("people = %d, want 8: verifying merged nobody", len(people))
	}
}

func TestVerifyPhoneRefuses(t *testing.T) {
	st, _, _ := newStore(t)
	ctx := context.Background()
	uid := newPerson(t, st, "refused")
	for _, n := range []string{"", "13800000000", "+", "+12345", "+1234567890123456", "+86 13800000000", "+８613800000000", "++8613800000"} {
		_, err := st.VerifyPhone(ctx, uid, mpApp, n, t0)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("VerifyPhone(%q): %v, want ErrInvalid", n, err)
		}
		if _, err := st.ByPhone(ctx, n); !errors.Is(err, ErrInvalid) {
			t.Errorf("ByPhone(%q): %v, want ErrInvalid", n, err)
		}
		if len(n) > 6 && err != nil && strings.Contains(err.Error(), n[len(n)-6:]) {
			t.Errorf("the error names the number: %v", err)
		}
	}
	for _, n := range []string{"+123456", "+123456789012345"} {
		if _, err := st.VerifyPhone(ctx, uid, mpApp, n, t0); err != nil {
			t.Errorf("VerifyPhone(%d digits): %v", len(n)-1, err)
		}
	}
	if _, err := st.VerifyPhone(ctx, "01NOBODY00000000000000000", mpApp, "+8613800000000", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown uid: %v, want ErrNotFound", err)
	}
	if _, err := st.ByPhone(ctx, "+8613800000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown number: %v, want ErrNotFound", err)
	}
}

// TestPhoneIsMasked: printing or logging a person shows only the last four
// digits of their number.
func TestPhoneIsMasked(t *testing.T) {
	p := Person{UID: "u", Phone: &Phone{Number: "+8613812345678", VerifiedAt: t0, AppID: mpApp}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "phone", *p.Phone, "person", p.Phone)
	out := fmt.Sprintf("%v %+v %#v %s", p, p, p, buf.String())
	if strings.Contains(out, "1381234") || !strings.Contains(out, "+****5678") {
		t.Errorf("unmasked: %s", out)
	}
}

// TestVerifyPhoneConcurrent: three people verify one number at once, at
// different times, two of them through a proxy that loses write answers,
// while two others verify a second number and merge. The latest
// verification wins the first number whatever order the writes land in;
// the merged person holds the second at its latest verification.
func TestVerifyPhoneConcurrent(t *testing.T) {
	st, db, table := newStore(t)
	// Fewer lost answers per operation than the SDK's three attempts: no
	// call loses them all.
	lost := awsfault.ForTest(t, awstest.Endpoint(),
		awsfault.Rule{Service: awsfault.DynamoDB, Operation: "TransactWriteItems", Match: "PHONE#", Count: 2, Error: awsfault.LostAnswer})
	lossy := NewStore(dynamodb.NewFromConfig(lost.Config(awstest.Config(nil)), func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
	}), table)
	ctx := context.Background()
	n, m := "+8613800000100", "+8613800000200"
	a := newPerson(t, st, "c-a")
	bRes, err := st.Link(ctx, follow("c-b", "u-c", true, t0))
	if err != nil {
		t.Fatal(err)
	}
	b := bRes.Person.UID
	c, d, e := newPerson(t, st, "c-c"), newPerson(t, st, "c-d"), newPerson(t, st, "c-e")
	type verification struct {
		via    *Store
		uid    string
		number string
		at     time.Time
	}
	vs := []verification{
		{lossy, c, n, t0.Add(3)}, {lossy, d, n, t0}, {st, e, n, t0.Add(2)},
		{lossy, a, m, t0.Add(1)}, {st, b, m, t0.Add(2)},
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, len(vs)+1)
	for _, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := v.via.VerifyPhone(ctx, v.uid, mpApp, v.number, v.at); err != nil {
				errs <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		reveal := Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "c-a"}, UnionID: "u-c"}
		if _, err := st.Link(ctx, reveal); err != nil {
			errs <- err
		}
	}()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := holder(t, st, n); got != c {
		t.Errorf("the number is %q's, want the latest verifier %s", got, c)
	}
	if got, at := phoneOf(t, st, c); got != n || !at.Equal(t0.Add(3)) {
		t.Errorf("the latest verifier holds %q at %v", got, at)
	}
	if got := holder(t, st, m); got != a {
		t.Errorf("the second number is %q's, want the merged person %s", got, a)
	}
	if got, at := phoneOf(t, st, b); got != m || !at.Equal(t0.Add(2)) {
		t.Errorf("the merged person holds %q at %v, want the second number at its latest", got, at)
	}
	for _, loser := range []string{d, e} {
		if got, _ := phoneOf(t, st, loser); got != "" {
			t.Errorf("an earlier verifier holds %q", got)
		}
	}
	fired := 0
	for _, r := range lost.List() {
		fired += r.Fired
	}
	if fired == 0 {
		t.Error("setup: no answer was lost")
	}
	if people := checkInvariants(t, db, table); len(people) != 4 {
		t.Errorf("people = %d, want 4", len(people))
	}
}
