package reach

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func newStore(t *testing.T, counter *awstest.Counter) *Store {
	return New(dynamodb.NewFromConfig(awstest.Config(counter)), awstest.Table(t))
}

func get(t *testing.T, s *Store, k Key) State {
	t.Helper()
	m, err := s.Get(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return m[k]
}

// consent is the recorded consent to tpl, with At compared to the second.
func consent(t *testing.T, s *Store, k Key, tpl string) Consent {
	t.Helper()
	c := get(t, s, k).Consents[tpl]
	c.At = c.At.UTC()
	return c
}

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func TestConsented(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-1"}
	once := func(sec int) Consent { return Consent{TemplateID: "T", At: at(sec)} }
	long := func(sec int) Consent { return Consent{TemplateID: "T", LongTerm: true, At: at(sec)} }
	reject := func(sec int) Consent { return Consent{TemplateID: "T", Rejected: true, At: at(sec)} }
	decline := func(sec int) Consent { return Consent{TemplateID: "T", Declined: true, At: at(sec)} }
	tests := []struct {
		name   string
		events []Consent
		want   Consent
	}{
		{"accept_one_time_adds_one", []Consent{once(1)}, Consent{Left: 1, At: at(1)}},
		{"one_time_acceptances_add_up", []Consent{once(1), once(2), once(3)}, Consent{Left: 3, At: at(3)}},
		{"the_same_event_twice_counts_once", []Consent{once(1), once(1)}, Consent{Left: 1, At: at(1)}},
		{"an_acceptance_arriving_late_still_counts_and_keeps_the_time", []Consent{once(5), once(2)}, Consent{Left: 2, At: at(5)}},
		{"accept_long_term", []Consent{long(1)}, Consent{LongTerm: true, At: at(1)}},
		{"reject", []Consent{reject(1)}, Consent{Rejected: true, At: at(1)}},
		{"reject_withdraws_what_was_accepted", []Consent{once(1), once(2), long(3), reject(4)}, Consent{Rejected: true, At: at(4)}},
		{"an_acceptance_after_a_rejection_reopens", []Consent{reject(1), once(2)}, Consent{Left: 1, At: at(2)}},
		{"a_long_term_acceptance_after_a_rejection_reopens", []Consent{reject(1), long(2)}, Consent{LongTerm: true, At: at(2)}},
		{"an_acceptance_older_than_the_rejection_is_spent", []Consent{reject(5), once(2), long(3)}, Consent{Rejected: true, At: at(5)}},
		{"a_rejection_older_than_an_acceptance_changes_nothing", []Consent{once(5), reject(2)}, Consent{Left: 1, At: at(5)}},
		{"a_rejection_in_the_second_of_an_acceptance_wins", []Consent{once(1), reject(1)}, Consent{Rejected: true, At: at(1)}},
		{"a_rejection_pushed_twice_is_one", []Consent{reject(1), reject(1), once(2)}, Consent{Left: 1, At: at(2)}},
		{"a_declined_popup_keeps_what_was_accepted", []Consent{once(1), decline(2)}, Consent{Left: 1, At: at(1)}},
		{"a_declined_popup_keeps_a_long_term_consent", []Consent{long(1), decline(2)}, Consent{LongTerm: true, At: at(1)}},
		{"a_declined_popup_with_nothing_left_is_a_refusal", []Consent{decline(1)}, Consent{Rejected: true, At: at(1)}},
		{"an_acceptance_after_a_decline_reopens", []Consent{decline(1), once(2)}, Consent{Left: 1, At: at(2)}},
		{"an_acceptance_older_than_a_decline_is_spent", []Consent{decline(5), once(2)}, Consent{Rejected: true, At: at(5)}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := Key{k.AppID, fmt.Sprint("o-", i)}
			for _, e := range tc.events {
				if err := s.Consented(ctx, k, []Consent{e}); err != nil {
					t.Fatal(err)
				}
			}
			tc.want.TemplateID = "T"
			if got := consent(t, s, k, "T"); got != tc.want {
				t.Errorf("consent = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConsentedManyTemplatesAtOnce(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-1"}
	err := s.Consented(ctx, k, []Consent{{TemplateID: "A", At: at(1)}, {TemplateID: "B", LongTerm: true, At: at(1)}, {TemplateID: "C", Rejected: true, At: at(1)}})
	if err != nil {
		t.Fatal(err)
	}
	st := get(t, s, k)
	if !st.Known || len(st.Consents) != 3 || st.Consents["A"].Left != 1 || !st.Consents["B"].LongTerm || !st.Consents["C"].Rejected {
		t.Fatalf("state = %+v", st)
	}
	if st.ConsentGone("A") || st.ConsentGone("B") || !st.ConsentGone("C") || st.ConsentGone("never-recorded") {
		t.Errorf("ConsentGone A, B, C, unrecorded = %v %v %v %v; want false false true false",
			st.ConsentGone("A"), st.ConsentGone("B"), st.ConsentGone("C"), st.ConsentGone("never-recorded"))
	}
}

func TestUseAndLost(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	now := at(100)
	s.Now = func() time.Time { return now }
	k := Key{"wxoa", "o-1"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Consented(ctx, k, []Consent{{TemplateID: "T", At: at(1)}, {TemplateID: "T", At: at(2)}, {TemplateID: "L", LongTerm: true, At: at(1)}}))
	must(s.Use(ctx, k, "T"))
	if c := consent(t, s, k, "T"); c.Left != 1 || c.Gone() {
		t.Fatalf("after one use of two: %+v", c)
	}
	must(s.Use(ctx, k, "T"))
	must(s.Use(ctx, k, "T")) // none left: stays at zero
	if c := consent(t, s, k, "T"); c.Left != 0 || !c.Gone() {
		t.Fatalf("after using both: %+v, want none left and gone", c)
	}
	// A popup declined once the consents are used up: a refusal.
	must(s.Consented(ctx, k, []Consent{{TemplateID: "T", Declined: true, At: at(3)}}))
	if c := consent(t, s, k, "T"); !c.Rejected {
		t.Fatalf("declined with none left: %+v, want rejected", c)
	}
	must(s.Use(ctx, k, "L"))
	if c := consent(t, s, k, "L"); !c.LongTerm || c.Gone() {
		t.Fatalf("a long-term consent was spent: %+v", c)
	}
	// A send to a template with nothing recorded records nothing: the
	// person may have accepted before wxbridge existed.
	must(s.Use(ctx, k, "U"))
	if _, ok := get(t, s, k).Consents["U"]; ok {
		t.Fatal("Use recorded a template it knew nothing of")
	}
	// 43101 on a long-term consent: WeChat knows better.
	must(s.Lost(ctx, k, "L"))
	if c := consent(t, s, k, "L"); c.LongTerm || !c.Gone() {
		t.Fatalf("after 43101: %+v, want gone", c)
	}
	// 43101 on an unrecorded template records it as gone; an acceptance
	// pushed late, from before the 43101, does not bring it back; a new one
	// does.
	must(s.Lost(ctx, k, "U"))
	must(s.Consented(ctx, k, []Consent{{TemplateID: "U", At: at(50)}}))
	if c := consent(t, s, k, "U"); !c.Gone() {
		t.Fatalf("an acceptance older than the 43101 reopened: %+v", c)
	}
	must(s.Consented(ctx, k, []Consent{{TemplateID: "U", At: at(101)}}))
	if c := consent(t, s, k, "U"); c.Gone() || c.Left != 1 {
		t.Fatalf("a new acceptance after the 43101: %+v, want one left", c)
	}
}

func TestInteracted(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-1"}
	if st := get(t, s, k); st.Known || st.WindowClosed(at(0)) {
		t.Fatalf("nothing recorded: %+v, want unknown (window not known closed)", st)
	}
	for _, sec := range []int{10, 30, 20, 30} { // late and repeated pushes
		if err := s.Interacted(ctx, k, at(sec)); err != nil {
			t.Fatal(err)
		}
	}
	st := get(t, s, k)
	if !st.LastInteraction.Equal(at(30)) {
		t.Fatalf("last interaction %v, want %v: a stale push moved it", st.LastInteraction, at(30))
	}
	if st.WindowClosed(at(30).Add(Window)) || !st.WindowClosed(at(31).Add(Window)) || !st.WindowOpen(at(30).Add(Window)) {
		t.Error("the window closes other than 48 h after the last message")
	}
	// A follow, a scan or a menu click opens it for a minute only, and is
	// kept apart from messages.
	late := at(30).Add(Window + time.Hour)
	for _, tm := range []time.Time{late, late.Add(-time.Second)} {
		if err := s.InteractedBriefly(ctx, k, tm); err != nil {
			t.Fatal(err)
		}
	}
	st = get(t, s, k)
	if !st.LastBrief.Equal(late) || !st.LastInteraction.Equal(at(30)) {
		t.Fatalf("state %+v", st)
	}
	if !st.WindowOpen(late.Add(BriefWindow)) || st.WindowClosed(late.Add(BriefWindow)) || !st.WindowClosed(late.Add(BriefWindow+time.Second)) {
		t.Error("a brief interaction does not hold the window open for exactly a minute")
	}
	// Interactions and consents share the item and do not disturb each other.
	if err := s.Consented(ctx, k, []Consent{{TemplateID: "T", At: at(40)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Interacted(ctx, k, late.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := get(t, s, k); !st.LastInteraction.Equal(late.Add(time.Second)) || st.Consents["T"].Left != 1 {
		t.Errorf("state %+v", st)
	}
}

// TestInteractedConcurrently races interactions of many times: the latest
// wins, whatever the order the writes land in.
func TestInteractedConcurrently(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	k := Key{"wxoa", "o-1"}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := s.Interacted(ctx, k, at(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := get(t, s, k).LastInteraction; !got.Equal(at(19)) {
		t.Errorf("last interaction %v, want %v", got, at(19))
	}
}

func TestGetBatches(t *testing.T) {
	ctx := context.Background()
	counter := &awstest.Counter{}
	s := newStore(t, counter)
	var keys []Key
	for i := range 130 {
		keys = append(keys, Key{"wxoa", fmt.Sprint("o-", i)})
	}
	for _, k := range keys[:3] {
		if err := s.Interacted(ctx, k, at(1)); err != nil {
			t.Fatal(err)
		}
	}
	counter.Counts()
	got, err := s.Get(ctx, append(keys, keys[0])...) // a key twice is asked once
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 130 || !got[keys[0]].Known || got[keys[3]].Known || !got[keys[2]].LastInteraction.Equal(at(1)) {
		t.Fatalf("got %d states; first %+v, fourth %+v", len(got), got[keys[0]], got[keys[3]])
	}
	if c := counter.Counts(); c["BatchGetItem"] != 2 || len(c) != 1 {
		t.Errorf("130 keys cost %v, want two BatchGetItem calls", c)
	}
}

func TestLongTerm(t *testing.T) {
	lt := ParseLongTerm(" A, ,B,")
	if len(lt) != 2 || !lt.Accepted("A", at(1)).LongTerm || lt.Accepted("C", at(1)).LongTerm || lt.Accepted("B", at(1)).At != at(1) {
		t.Errorf("ParseLongTerm = %v", lt)
	}
}

// TestConsentedInOneCall: one-time acceptances of one template in one call
// are as many events, and the call made again records nothing more; a
// consent without a time is now's.
func TestConsentedInOneCall(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	s.Now = func() time.Time { return at(9) }
	k := Key{"wxmp", "o-1"}
	call := []Consent{{TemplateID: "T"}, {TemplateID: "T"}, {TemplateID: "T", At: at(1)}}
	for range 2 {
		if err := s.Consented(ctx, k, call); err != nil {
			t.Fatal(err)
		}
	}
	if c := consent(t, s, k, "T"); c.Left != 3 || !c.At.After(at(9)) {
		t.Fatalf("consent = %+v, want 3 left, at now", c)
	}
}
