package identity

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/ddb"
)

// The follow-state rule (followChange): changes of different seconds are
// ordered by platform time; within the second of the last change, only a
// user/info answer asked after the recorded state was last known to hold
// (Follow.Seen after OAIdentity.SeenAt) changes it.

// sec is the second every case revolves around; at(d) is a moment d after
// its start.
var sec = t0

func at(d time.Duration) time.Time { return sec.Add(d) }

func ptr(t time.Time) *time.Time { return &t }

const ms = time.Millisecond

// event is a push's own word: platform time, no user/info answer.
func event(subscribed bool, when time.Time) Follow {
	return Follow{Subscribed: subscribed, At: when}
}

// answer is user/info's (or a send's 43004's) answer about the change of
// second when, to a call made at seen.
func answer(subscribed bool, when, seen time.Time) Follow {
	return Follow{Subscribed: subscribed, At: when, Seen: seen}
}

func oaFollow(f Follow) Sighting {
	return Sighting{OA: &OASighting{AppID: oaApp, OpenID: "oa1", Follow: &f}}
}

func TestFollowChange(t *testing.T) {
	type step struct {
		f       Follow
		changed bool
	}
	now := at(10 * time.Second) // when wxbridge records, unless a case says
	cases := []struct {
		name  string
		have  OAIdentity
		now   time.Time
		steps []step
		want  OAIdentity
	}{
		{
			name:  "unknown_state_takes_the_first_change",
			have:  OAIdentity{OpenID: "oa1"},
			steps: []step{{event(false, sec), true}},
			want:  OAIdentity{OpenID: "oa1", UnsubscribedAt: ptr(sec), SeenAt: ptr(now)},
		},
		{
			name:  "refollow_in_a_later_second_wins",
			have:  OAIdentity{OpenID: "oa1", SubscribedAt: ptr(at(-time.Hour)), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(900 * ms))},
			steps: []step{{Follow{Subscribed: true, At: at(time.Second), Scene: "qrscene_7"}, true}},
			want: OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(at(time.Second)), UnsubscribedAt: ptr(sec),
				Scene: "qrscene_7", SeenAt: ptr(now)},
		},
		{
			name:  "older_second_loses_even_to_a_fresh_user_info_answer",
			have:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(at(time.Second)), SeenAt: ptr(at(1200 * ms))},
			steps: []step{{answer(false, sec, at(30*time.Second)), false}},
			want:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(at(time.Second)), SeenAt: ptr(at(1200 * ms))},
		},
		{
			name:  "retried_event_of_the_recorded_change_changes_nothing",
			have:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(300 * ms))},
			steps: []step{{event(true, sec), false}},
			want:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(300 * ms))},
		},
		{
			// A send's 43004 asked at wxbridge's now, before the follow of
			// its second was recorded, must not outrank the follow.
			name:  "sub_second_times_compare_by_whole_second",
			have:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(900 * ms))},
			steps: []step{{answer(false, at(500*ms), at(500*ms)), false}},
			want:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(900 * ms))},
		},
		{
			// ...nor does a 43004 recorded at a sub-second time outrank a
			// later answer about its second.
			name:  "sub_second_record_does_not_outrank_its_second",
			have:  OAIdentity{OpenID: "oa1", SubscribedAt: ptr(at(-time.Hour)), UnsubscribedAt: ptr(at(500 * ms)), SeenAt: ptr(at(500 * ms))},
			steps: []step{{answer(true, sec, at(800*ms)), true}},
			want:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), UnsubscribedAt: ptr(at(500 * ms)), SeenAt: ptr(at(800 * ms))},
		},
		{
			name:  "same_second_tie_without_seen_keeps_the_recorded_state",
			have:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(200 * ms))},
			steps: []step{{event(false, sec), false}, {event(false, at(999*ms)), false}},
			want:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(200 * ms))},
		},
		{
			name:  "same_second_tie_settled_by_a_fresh_user_info_answer",
			have:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), UnsubscribedAt: ptr(at(-time.Hour)), SeenAt: ptr(at(200 * ms))},
			steps: []step{{answer(false, sec, at(3*time.Second)), true}},
			want:  OAIdentity{OpenID: "oa1", SubscribedAt: ptr(sec), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
		},
		{
			name:  "stale_user_info_answer_loses_to_a_later_recorded_state",
			have:  OAIdentity{OpenID: "oa1", SubscribedAt: ptr(sec), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
			steps: []step{{answer(true, sec, at(2*time.Second)), false}},
			want:  OAIdentity{OpenID: "oa1", SubscribedAt: ptr(sec), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
		},
		{
			name:  "user_info_answer_asked_when_the_state_was_seen_does_not_flip_it",
			have:  OAIdentity{OpenID: "oa1", UnsubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
			steps: []step{{answer(true, sec, at(3*time.Second)), false}},
			want:  OAIdentity{OpenID: "oa1", UnsubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
		},
		{
			// An event's own word is seen when recorded: user/info asked
			// before that may predate the event, asked after it cannot.
			name: "answer_asked_before_an_event_was_recorded_loses_to_it",
			have: OAIdentity{OpenID: "oa1"},
			now:  at(time.Second),
			steps: []step{
				{event(true, sec), true},
				{answer(false, sec, at(500*ms)), false},
				{answer(false, sec, at(1500*ms)), true},
			},
			want: OAIdentity{OpenID: "oa1", SubscribedAt: ptr(sec), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(1500 * ms))},
		},
		{
			name: "same_state_answer_refreshes_seen_at",
			have: OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), Scene: "qrscene_7", SeenAt: ptr(at(200 * ms))},
			steps: []step{
				{answer(true, sec, at(3*time.Second)), true},
				// Asked between the two: it can no longer flip the state.
				{answer(false, sec, at(2*time.Second)), false},
			},
			want: OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), Scene: "qrscene_7", SeenAt: ptr(at(3 * time.Second))},
		},
		{
			name:  "older_same_state_answer_does_not_move_seen_at_back",
			have:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
			steps: []step{{answer(true, sec, at(2*time.Second)), false}},
			want:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
		},
		{
			// Written by followIsNewer: no SeenAt. The state was known to
			// hold from its change on.
			name: "record_without_seen_at_from_before_the_change",
			have: OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), UnsubscribedAt: ptr(at(-time.Hour))},
			steps: []step{
				{event(false, sec), false},
				{answer(false, sec, at(-500*ms)), false},
				{answer(false, sec, at(2*time.Second)), true},
			},
			want: OAIdentity{OpenID: "oa1", SubscribedAt: ptr(sec), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(2 * time.Second))},
		},
		{
			name: "record_without_seen_at_refreshed_by_a_same_state_answer",
			have: OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec)},
			steps: []step{
				{answer(true, sec, at(2*time.Second)), true},
				{answer(false, sec, at(time.Second)), false},
			},
			want: OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(2 * time.Second))},
		},
		{
			name:  "record_without_seen_at_moves_to_a_later_second",
			have:  OAIdentity{OpenID: "oa1", Subscribed: true, SubscribedAt: ptr(sec)},
			steps: []step{{event(false, at(time.Second)), true}},
			want:  OAIdentity{OpenID: "oa1", SubscribedAt: ptr(sec), UnsubscribedAt: ptr(at(time.Second)), SeenAt: ptr(now)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := tc.now
			if clock.IsZero() {
				clock = now
			}
			id := tc.have
			for i, s := range tc.steps {
				var changed bool
				id, changed = followChange(id, s.f, clock)
				if changed != s.changed {
					t.Errorf("step %d (%+v): changed = %v, want %v", i, s.f, changed, s.changed)
				}
			}
			if !sameOA(id, tc.want) {
				t.Errorf("follow state\n got %s\nwant %s", showOA(id), showOA(tc.want))
			}
		})
	}
}

// TestFollowChangeThroughLink runs the rule through Store.Link on a real
// table, so SeenAt survives the round trip through DynamoDB (sub-second
// times included) and a record written before SeenAt existed still loads
// and behaves.
func TestFollowChangeThroughLink(t *testing.T) {
	type step struct {
		now     time.Time // wxbridge's clock when the step is linked
		f       Follow
		outcome Outcome
		// legacy strips follow_seen_at after the step, as a record
		// written before it existed.
		legacy bool
	}
	cases := []struct {
		name  string
		steps []step
		want  OAIdentity
	}{
		{
			name: "refollow_in_a_later_second_wins",
			steps: []step{
				{now: at(500 * ms), f: event(false, sec), outcome: Created},
				{now: at(1500 * ms), f: event(true, at(time.Second)), outcome: Attached},
			},
			want: OAIdentity{Subscribed: true, SubscribedAt: ptr(at(time.Second)), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(1500 * ms))},
		},
		{
			name: "sub_second_times_compare_by_whole_second",
			steps: []step{
				{now: at(900 * ms), f: event(true, sec), outcome: Created},
				// A 43004 to a send asked before the follow was recorded.
				{now: at(time.Second), f: answer(false, at(500*ms), at(500*ms)), outcome: Unchanged},
				// One asked after it.
				{now: at(time.Second), f: answer(false, at(950*ms+7), at(950*ms+7)), outcome: Attached},
			},
			want: OAIdentity{SubscribedAt: ptr(sec), UnsubscribedAt: ptr(at(950*ms + 7)), SeenAt: ptr(at(950*ms + 7))},
		},
		{
			name: "same_second_tie_without_seen_keeps_the_recorded_state",
			steps: []step{
				{now: at(time.Second), f: answer(true, sec, at(200*ms)), outcome: Created},
				{now: at(2 * time.Second), f: event(false, sec), outcome: Unchanged},
			},
			want: OAIdentity{Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(200 * ms))},
		},
		{
			name: "same_second_tie_settled_by_a_fresh_user_info_answer",
			steps: []step{
				{now: at(time.Second), f: answer(true, sec, at(200*ms)), outcome: Created},
				{now: at(2 * time.Second), f: event(false, sec), outcome: Unchanged},
				{now: at(3 * time.Second), f: answer(false, sec, at(2500*ms)), outcome: Attached},
			},
			want: OAIdentity{SubscribedAt: ptr(sec), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(2500 * ms))},
		},
		{
			name: "stale_user_info_answer_loses_to_a_later_recorded_state",
			steps: []step{
				{now: at(4 * time.Second), f: answer(false, sec, at(3*time.Second)), outcome: Created},
				{now: at(5 * time.Second), f: answer(true, sec, at(2*time.Second)), outcome: Unchanged},
			},
			want: OAIdentity{UnsubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
		},
		{
			name: "same_state_answer_refreshes_seen_at",
			steps: []step{
				{now: at(2 * time.Second), f: answer(true, sec, at(time.Second)), outcome: Created},
				{now: at(4 * time.Second), f: answer(true, sec, at(3*time.Second)), outcome: Attached},
				{now: at(5 * time.Second), f: answer(false, sec, at(2*time.Second)), outcome: Unchanged},
			},
			want: OAIdentity{Subscribed: true, SubscribedAt: ptr(sec), SeenAt: ptr(at(3 * time.Second))},
		},
		{
			name: "record_without_seen_at_from_before_the_change",
			steps: []step{
				{now: at(time.Second), f: event(true, sec), outcome: Created, legacy: true},
				{now: at(2 * time.Second), f: event(false, sec), outcome: Unchanged},
				{now: at(2 * time.Second), f: answer(false, sec, at(-500*ms)), outcome: Unchanged},
				{now: at(3 * time.Second), f: answer(false, sec, at(2*time.Second)), outcome: Attached},
			},
			want: OAIdentity{SubscribedAt: ptr(sec), UnsubscribedAt: ptr(sec), SeenAt: ptr(at(2 * time.Second))},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, db, table := newStore(t)
			ctx := context.Background()
			var uid string
			for i, s := range tc.steps {
				st.Now = func() time.Time { return s.now }
				res, err := st.Link(ctx, oaFollow(s.f))
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if res.Outcome != s.outcome {
					t.Fatalf("step %d (%+v): outcome = %s, want %s", i, s.f, res.Outcome, s.outcome)
				}
				uid = res.Person.UID
				if s.legacy {
					forgetSeenAt(t, db, table, uid)
				}
			}
			checkInvariants(t, db, table)
			p, err := st.ByUID(ctx, uid)
			if err != nil {
				t.Fatal(err)
			}
			got, want := p.OA[oaApp], tc.want
			want.OpenID, want.FirstSeen = "oa1", got.FirstSeen
			if !sameOA(got, want) {
				t.Errorf("stored follow state\n got %s\nwant %s", showOA(got), showOA(want))
			}
		})
	}
}

// forgetSeenAt removes follow_seen_at from a stored person, as written
// before the attribute existed, and checks that it loads without one.
func forgetSeenAt(t *testing.T, db *dynamodb.Client, table, uid string) {
	t.Helper()
	ctx := context.Background()
	_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &table,
		Key:                      ddb.Key(personPK(uid)),
		UpdateExpression:         aws.String("REMOVE oa.#app.follow_seen_at"),
		ExpressionAttributeNames: map[string]string{"#app": oaApp},
	})
	if err != nil {
		t.Fatalf("strip follow_seen_at: %v", err)
	}
	p, err := NewStore(db, table).ByUID(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if oa := p.OA[oaApp]; oa.SeenAt != nil || oa.SubscribedAt == nil && oa.UnsubscribedAt == nil {
		t.Fatalf("legacy record = %s, want follow state without SeenAt", showOA(oa))
	}
}

// TestFollowChangeConcurrent links follow and unfollow sightings of one
// second at once, user/info answers asked at different moments and events'
// own words: whatever order the writes land in, the state ends as the
// answer asked last says, with its Seen.
func TestFollowChangeConcurrent(t *testing.T) {
	for round := range 4 {
		// Odd rounds start from nothing: the first write creates the person.
		recorded := round%2 == 0
		t.Run(fmt.Sprintf("round_%d_recorded_%v", round, recorded), func(t *testing.T) {
			st, db, table := newStore(t)
			st.Now = func() time.Time { return at(5 * time.Second) }
			ctx := context.Background()
			if recorded {
				if _, err := st.Link(ctx, oaFollow(answer(round%4 == 0, sec, at(100*ms)))); err != nil {
					t.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(uint64(round), 1))
			const answers = 12
			var sightings []Follow
			latest := Follow{}
			for i, n := range rng.Perm(answers) {
				// Subscribed alternates with i, the asking order is random;
				// At is the second, or a moment of it (a send's 43004).
				f := answer(i%2 == 0, at(time.Duration(i*83)*ms), at(time.Second+time.Duration(n)*ms))
				if f.Seen.After(latest.Seen) {
					latest = f
				}
				sightings = append(sightings, f)
			}
			if recorded {
				// Events' own words of the second never win its tie.
				sightings = append(sightings, event(true, sec), event(false, sec), event(true, sec), event(false, sec))
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, len(sightings))
			for _, f := range sightings {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if _, err := st.Link(ctx, oaFollow(f)); err != nil {
						errs <- err
					}
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("link: %v", err)
			}
			people := checkInvariants(t, db, table)
			if len(people) != 1 {
				t.Fatalf("people = %d, want 1", len(people))
			}
			for _, p := range people {
				oa := p.OA[oaApp]
				if oa.Subscribed != latest.Subscribed || oa.SeenAt == nil || !oa.SeenAt.Equal(latest.Seen) {
					t.Errorf("follow state = %s, want subscribed=%v seen at %s (the latest answer)",
						showOA(oa), latest.Subscribed, latest.Seen.Format(time.StampMilli))
				}
			}
		})
	}
}

// TestLinkManyFollowChange checks that a backfill chunk (LinkMany) keeps
// the rule: a stale user/info answer does not undo a later recorded state
// of its second, a fresh one settles it.
func TestLinkManyFollowChange(t *testing.T) {
	st, _, _ := newStore(t)
	st.Now = func() time.Time { return at(10 * time.Second) }
	ctx := context.Background()
	for _, openid := range []string{"stale", "fresh"} {
		s := oaFollow(answer(false, sec, at(3*time.Second)))
		s.OA.OpenID = openid
		if _, err := st.Link(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	stale, fresh := oaFollow(answer(true, sec, at(2*time.Second))), oaFollow(answer(true, sec, at(4*time.Second)))
	stale.OA.OpenID, fresh.OA.OpenID = "stale", "fresh"
	results, errs := st.LinkMany(ctx, []Sighting{stale, fresh})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sighting %d: %v", i, err)
		}
	}
	if results[0].Outcome != Unchanged || results[0].Person.OA[oaApp].Subscribed {
		t.Errorf("stale answer: %s %s", results[0].Outcome, showOA(results[0].Person.OA[oaApp]))
	}
	if results[1].Outcome != Attached || !results[1].Person.OA[oaApp].Subscribed {
		t.Errorf("fresh answer: %s %s", results[1].Outcome, showOA(results[1].Person.OA[oaApp]))
	}
	for _, openid := range []string{"stale", "fresh"} {
		p, err := st.Lookup(ctx, OAKey(oaApp, openid))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.OA[oaApp].Subscribed, openid == "fresh"; got != want {
			t.Errorf("%s: stored subscribed = %v, want %v", openid, got, want)
		}
	}
}

func sameOA(a, b OAIdentity) bool {
	return a.OpenID == b.OpenID && a.FirstSeen.Equal(b.FirstSeen) && a.Subscribed == b.Subscribed && a.Scene == b.Scene &&
		sameTime(a.SubscribedAt, b.SubscribedAt) && sameTime(a.UnsubscribedAt, b.UnsubscribedAt) && sameTime(a.SeenAt, b.SeenAt)
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func showOA(id OAIdentity) string {
	show := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format("15:04:05.000000000")
	}
	return fmt.Sprintf("{subscribed=%v subscribed_at=%s unsubscribed_at=%s seen_at=%s scene=%q}",
		id.Subscribed, show(id.SubscribedAt), show(id.UnsubscribedAt), show(id.SeenAt), id.Scene)
}
