package reach

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// Attacks on the reach store: races between consents and sends, pushes
// twice and out of order, WeChat's refusals racing the person's new
// answers, and template ids built to confuse the item's attribute names.

// TestAttackConcurrentUsesNeverGoBelowZero: ten sends race for three
// one-time consents: three are spent, the count ends at zero, not below.
func TestAttackConcurrentUsesNeverGoBelowZero(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-race"}
	if err := s.Consented(ctx, k, []Consent{{TemplateID: "T", At: at(1)}, {TemplateID: "T", At: at(2)}, {TemplateID: "T", At: at(3)}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if err := s.Use(ctx, k, "T"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c := consent(t, s, k, "T"); c.Left != 0 || !c.Gone() {
		t.Fatalf("after ten uses of three: %+v", c)
	}
}

// TestAttackAcceptancesRacing: ten different acceptances recorded at once
// all count; the same acceptance pushed five times at once counts once,
// and pushed again after it was spent does not come back.
func TestAttackAcceptancesRacing(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	var wg sync.WaitGroup
	distinct, same := Key{"wxoa", "o-distinct"}, Key{"wxoa", "o-same"}
	for i := range 10 {
		wg.Go(func() {
			if err := s.Consented(ctx, distinct, []Consent{{TemplateID: "T", At: at(i)}}); err != nil {
				t.Error(err)
			}
		})
		if i < 5 {
			wg.Go(func() {
				if err := s.Consented(ctx, same, []Consent{{TemplateID: "T", At: at(7)}}); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if c := consent(t, s, distinct, "T"); c.Left != 10 {
		t.Fatalf("ten acceptances at once: %+v", c)
	}
	if c := consent(t, s, same, "T"); c.Left != 1 {
		t.Fatalf("one acceptance pushed five times at once: %+v", c)
	}
	if err := s.Use(ctx, same, "T"); err != nil {
		t.Fatal(err)
	}
	// WeChat pushes it again once the dedup record is gone.
	if err := s.Consented(ctx, same, []Consent{{TemplateID: "T", At: at(7)}}); err != nil {
		t.Fatal(err)
	}
	if c := consent(t, s, same, "T"); c.Left != 0 || !c.Gone() {
		t.Fatalf("a spent acceptance pushed again: %+v", c)
	}
}

// TestAttackWithdrawalBeforeTheAcceptanceItFollows: the person accepts at
// 1 and turns the template off at 2; the pushes arrive reversed and
// repeated. The withdrawal stands until a newer acceptance, which a
// replay of the old one does not disturb.
func TestAttackWithdrawalBeforeTheAcceptanceItFollows(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-order"}
	accept := func(sec int, long bool) Consent { return Consent{TemplateID: "T", LongTerm: long, At: at(sec)} }
	reject := Consent{TemplateID: "T", Rejected: true, At: at(2)}
	for _, c := range []Consent{reject, accept(1, false), accept(1, true), accept(1, false), reject} {
		if err := s.Consented(ctx, k, []Consent{c}); err != nil {
			t.Fatal(err)
		}
	}
	if c := consent(t, s, k, "T"); !c.Rejected || c.Left != 0 || c.LongTerm || !c.Gone() {
		t.Fatalf("after the reversed pushes: %+v", c)
	}
	for _, c := range []Consent{accept(3, false), accept(1, false), reject, accept(3, false)} {
		if err := s.Consented(ctx, k, []Consent{c}); err != nil {
			t.Fatal(err)
		}
	}
	if c := consent(t, s, k, "T"); c.Rejected || c.Left != 1 || !c.At.Equal(at(3)) {
		t.Fatalf("after a newer acceptance and replays: %+v", c)
	}
}

// TestAttackLostRacesANewAcceptance: a send refused with 43101 while the
// person was accepting the popup. The acceptance's push carries its
// second only, and its handling lands after the 43101 is recorded: the
// new consent must survive (acceptances of earlier seconds do not).
func TestAttackLostRacesANewAcceptance(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-lost"}
	s.Now = func() time.Time { return at(10).Add(400 * time.Millisecond) }
	if err := s.Consented(ctx, k, []Consent{{TemplateID: "T", At: at(5)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Lost(ctx, k, "T"); err != nil {
		t.Fatal(err)
	}
	if c := consent(t, s, k, "T"); c.Left != 0 || !c.Gone() {
		t.Fatalf("after 43101: %+v", c)
	}
	// Pushed late: one from before the refusal, one of its second.
	for _, sec := range []int{9, 10} {
		if err := s.Consented(ctx, k, []Consent{{TemplateID: "T", At: at(sec)}}); err != nil {
			t.Fatal(err)
		}
	}
	if c := consent(t, s, k, "T"); c.Left != 1 || c.Gone() {
		t.Fatalf("the acceptance of the refusal's second: %+v, want one left", c)
	}
	// A second 43101 in the same second (the consent was spent after all)
	// still takes it.
	s.Now = func() time.Time { return at(10).Add(900 * time.Millisecond) }
	if err := s.Lost(ctx, k, "T"); err != nil {
		t.Fatal(err)
	}
	if c := consent(t, s, k, "T"); c.Left != 0 || !c.Gone() {
		t.Fatalf("after a second 43101: %+v", c)
	}
}

// TestAttackWindowRefusals: 45047 or 45015 recorded after the person's
// interactions spends the window until they interact again, whatever the
// order the records land in.
func TestAttackWindowRefusals(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-window"}
	now := at(100)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Interacted(ctx, k, at(10)))
	must(s.WindowRefused(ctx, k, at(50).Add(300*time.Millisecond)))
	must(s.WindowRefused(ctx, k, at(20))) // an older refusal, recorded late
	st := get(t, s, k)
	if st.WindowOpen(now) || !st.WindowSpent() || !st.WindowClosed(now) {
		t.Fatalf("after 45047: %+v", st)
	}
	// A click after it opens the window for a minute, a message for 48 hours.
	must(s.InteractedBriefly(ctx, k, at(60)))
	if st := get(t, s, k); !st.WindowOpen(at(60).Add(BriefWindow)) || st.WindowOpen(at(61).Add(BriefWindow)) || st.WindowSpent() {
		t.Fatalf("after a click: %+v", st)
	}
	must(s.Interacted(ctx, k, at(70)))
	if st := get(t, s, k); !st.WindowOpen(at(70).Add(Window)) || st.WindowSpent() {
		t.Fatalf("after a message: %+v", st)
	}
	// A refusal with nothing recorded: no window until an interaction.
	none := Key{"wxoa", "o-none"}
	must(s.WindowRefused(ctx, none, at(5)))
	if st := get(t, s, none); st.WindowOpen(at(5)) || !st.WindowSpent() {
		t.Fatalf("refused with nothing recorded: %+v", st)
	}
}

// TestAttackHostileTemplateIDs: template ids with the item's own
// separators, or shaped like another template's attribute, stay apart.
func TestAttackHostileTemplateIDs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-hostile"}
	ids := []string{"T", "T:left", "T:at", "c:T", "T#x", "模板", strings.Repeat("z", 128), "a b", "#left", ":zero"}
	var cs []Consent
	for i, id := range ids {
		cs = append(cs, Consent{TemplateID: id, At: at(i + 1)})
	}
	cs = append(cs, Consent{TemplateID: "", At: at(1)}) // skipped
	if err := s.Consented(ctx, k, cs); err != nil {
		t.Fatal(err)
	}
	if err := s.Use(ctx, k, "T:left"); err != nil {
		t.Fatal(err)
	}
	st := get(t, s, k)
	if len(st.Consents) != len(ids) {
		t.Fatalf("%d templates recorded, want %d: %+v", len(st.Consents), len(ids), st.Consents)
	}
	for i, id := range ids {
		want := 1
		if id == "T:left" {
			want = 0
		}
		if c := st.Consents[id]; c.Left != want || !c.At.Equal(at(i+1)) || c.TemplateID != id {
			t.Errorf("%q: %+v, want %d left at %v", id, c, want, at(i+1))
		}
	}
	if _, ok := st.Consents[""]; ok {
		t.Error("an empty template id was recorded")
	}
}
