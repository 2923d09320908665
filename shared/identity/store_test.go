package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	mpApp = "wxmp000000000001"
	oaApp = "wxoa000000000001"
)

func newStore(t *testing.T) (*Store, *dynamodb.Client, string) {
	t.Helper()
	table := awstest.Table(t)
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	return NewStore(db, table), db, table
}

func login(openid, unionid string) Sighting {
	return Sighting{MP: &MPSighting{AppID: mpApp, OpenID: openid, SessionKey: "sk-" + openid}, UnionID: unionid}
}

func follow(openid, unionid string, subscribed bool, at time.Time) Sighting {
	return Sighting{OA: &OASighting{AppID: oaApp, OpenID: openid, Follow: &Follow{Subscribed: subscribed, At: at}}, UnionID: unionid}
}

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func TestLink(t *testing.T) {
	type step struct {
		s       Sighting
		outcome Outcome
		err     error
	}
	cases := []struct {
		name   string
		steps  []step
		people int
		check  func(t *testing.T, p Person)
	}{
		{
			name:   "login_creates_a_person",
			steps:  []step{{s: login("mp1", "u1"), outcome: Created}},
			people: 1,
			check: func(t *testing.T, p Person) {
				if p.UnionID != "u1" || p.MP[mpApp].OpenID != "mp1" || p.Linked() {
					t.Errorf("person = %+v", p)
				}
			},
		},
		{
			name:   "returning_login_changes_nothing",
			steps:  []step{{s: login("mp1", "u1"), outcome: Created}, {s: login("mp1", "u1"), outcome: Unchanged}},
			people: 1,
		},
		{
			name: "login_then_follow_with_same_unionid_is_one_person",
			steps: []step{
				{s: login("mp1", "u1"), outcome: Created},
				{s: follow("oa1", "u1", true, t0), outcome: Attached},
			},
			people: 1,
			check: func(t *testing.T, p Person) {
				if !p.Linked() || !p.FollowsOA() {
					t.Errorf("want linked follower, got %+v", p)
				}
			},
		},
		{
			name: "follow_then_login_is_one_person",
			steps: []step{
				{s: follow("oa1", "u1", true, t0), outcome: Created},
				{s: login("mp1", "u1"), outcome: Attached},
			},
			people: 1,
			check: func(t *testing.T, p Person) {
				if !p.Linked() || !p.FollowsOA() {
					t.Errorf("want linked follower, got %+v", p)
				}
			},
		},
		{
			name: "login_without_unionid_then_reveal_merges_with_oa_only_person",
			steps: []step{
				{s: follow("oa1", "u1", true, t0), outcome: Created},
				{s: login("mp1", ""), outcome: Created},
				{s: Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, UnionID: "u1"}, outcome: Merged},
			},
			people: 1,
			check: func(t *testing.T, p Person) {
				if !p.Linked() || !p.FollowsOA() || p.UnionID != "u1" || len(p.MergedFrom) != 1 {
					t.Errorf("want one merged, linked follower, got %+v", p)
				}
			},
		},
		{
			name: "merge_keeps_binding_and_follow_state",
			steps: []step{
				{s: Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "8812"}, outcome: Created},
				{s: follow("oa1", "u1", false, t0), outcome: Created},
				{s: login("mp1", "u1"), outcome: Merged},
			},
			people: 1,
			check: func(t *testing.T, p Person) {
				oa := p.OA[oaApp]
				if p.ExternalID != "8812" || oa.Subscribed || oa.UnsubscribedAt == nil || p.MP[mpApp].OpenID != "mp1" {
					t.Errorf("merge lost state: %+v", p)
				}
			},
		},
		{
			name: "merge_of_two_external_ids_is_refused",
			steps: []step{
				{s: Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "A"}, outcome: Created},
				{s: Sighting{OA: &OASighting{AppID: oaApp, OpenID: "oa1"}, UnionID: "u1", ExternalID: "B"}, outcome: Created},
				{s: login("mp1", "u1"), err: ErrConflict},
			},
			people: 2,
		},
		{
			name: "binding_a_second_external_id_is_refused",
			steps: []step{
				{s: Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "A"}, outcome: Created},
				{s: Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "B"}, err: ErrConflict},
			},
			people: 1,
		},
		{
			name: "external_id_already_held_by_another_wechat_user_is_refused",
			steps: []step{
				{s: Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, UnionID: "u1", ExternalID: "A"}, outcome: Created},
				{s: Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp2"}, UnionID: "u2", ExternalID: "A"}, err: ErrConflict},
			},
			people: 1,
		},
		{
			name: "unfollow_keeps_person_and_link_and_refollow_flips_back",
			steps: []step{
				{s: login("mp1", "u1"), outcome: Created},
				{s: follow("oa1", "u1", true, t0), outcome: Attached},
				{s: follow("oa1", "", false, t0.Add(time.Hour)), outcome: Attached},
				{s: follow("oa1", "", true, t0.Add(2*time.Hour)), outcome: Attached},
			},
			people: 1,
			check: func(t *testing.T, p Person) {
				oa := p.OA[oaApp]
				if !p.Linked() || !oa.Subscribed || oa.UnsubscribedAt == nil || !oa.SubscribedAt.Equal(t0.Add(2*time.Hour)) {
					t.Errorf("follow state = %+v", oa)
				}
			},
		},
		{
			name: "a_retried_older_event_does_not_undo_a_newer_one",
			steps: []step{
				{s: follow("oa1", "u1", false, t0.Add(time.Hour)), outcome: Created},
				{s: follow("oa1", "u1", true, t0), outcome: Unchanged},
				{s: follow("oa1", "u1", false, t0.Add(time.Hour)), outcome: Unchanged},
			},
			people: 1,
			check: func(t *testing.T, p Person) {
				if p.FollowsOA() {
					t.Errorf("older subscribe overrode a newer unsubscribe: %+v", p.OA[oaApp])
				}
			},
		},
		{
			name: "a_second_openid_for_the_same_app_and_unionid_is_refused",
			steps: []step{
				{s: login("mp1", "u1"), outcome: Created},
				{s: login("mp2", "u1"), err: ErrConflict},
			},
			people: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, db, table := newStore(t)
			ctx := context.Background()
			var last Result
			for i, s := range tc.steps {
				before := dump(t, db, table)
				res, err := st.Link(ctx, s.s)
				if s.err != nil {
					if !errors.Is(err, s.err) {
						t.Fatalf("step %d: err = %v, want %v", i, err, s.err)
					}
					if after := dump(t, db, table); after != before {
						t.Fatalf("step %d: a refused link wrote:\nbefore %s\nafter  %s", i, before, after)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if res.Outcome != s.outcome {
					t.Fatalf("step %d: outcome = %s, want %s", i, res.Outcome, s.outcome)
				}
				last = res
			}
			people := checkInvariants(t, db, table)
			if len(people) != tc.people {
				t.Fatalf("people = %d, want %d", len(people), tc.people)
			}
			if tc.check != nil {
				stored, err := st.ByUID(ctx, last.Person.UID)
				if err != nil {
					t.Fatal(err)
				}
				if stored.Version != last.Person.Version {
					t.Errorf("returned version %d, stored %d", last.Person.Version, stored.Version)
				}
				tc.check(t, stored)
			}
		})
	}
}

func TestLinkRejectsInvalidSightings(t *testing.T) {
	st, _, _ := newStore(t)
	for name, s := range map[string]Sighting{
		"empty":              {},
		"external_id_alone":  {ExternalID: "8812"},
		"mp_without_openid":  {MP: &MPSighting{AppID: mpApp}},
		"web_without_openid": {Web: &AppSighting{AppID: "wxweb"}},
		"app_without_appid":  {Mobile: &AppSighting{OpenID: "o1"}},
		"hash_in_web_appid":  {Web: &AppSighting{AppID: "wx#web", OpenID: "o1"}},
		"hash_in_value":      {UnionID: "u#1"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := st.Link(context.Background(), s); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSessionFollowsMergesAndLogins(t *testing.T) {
	st, _, _ := newStore(t)
	ctx := context.Background()
	if _, err := st.Session(ctx, mpApp, "mp1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown identity: err = %v", err)
	}
	first, err := st.Link(ctx, login("mp1", ""))
	if err != nil {
		t.Fatal(err)
	}
	oaOnly, err := st.Link(ctx, follow("oa1", "u1", true, t0))
	if err != nil {
		t.Fatal(err)
	}
	// The reveal merges; the survivor is the older person whichever
	// sighting came first.
	merged, err := st.Link(ctx, Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1", SessionKey: "second"}, UnionID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if merged.Person.UID != first.Person.UID || len(merged.Merged) != 1 || merged.Merged[0] != oaOnly.Person.UID {
		t.Fatalf("merge = %+v, want %s to absorb %s", merged, first.Person.UID, oaOnly.Person.UID)
	}
	sess, err := st.Session(ctx, mpApp, "mp1")
	if err != nil {
		t.Fatal(err)
	}
	if sess.SessionKey != "second" || sess.UID != first.Person.UID {
		t.Errorf("session = %+v key %q", sess, sess.SessionKey)
	}
	// The merged-away uid still resolves.
	p, err := st.ByUID(ctx, oaOnly.Person.UID)
	if err != nil || p.UID != first.Person.UID {
		t.Errorf("ByUID(merged) = %v, %v", p.UID, err)
	}
	for _, k := range []Key{OAKey(oaApp, "oa1"), UnionKey("u1"), MPKey(mpApp, "mp1")} {
		p, err := st.Lookup(ctx, k)
		if err != nil || p.UID != first.Person.UID {
			t.Errorf("Lookup(%s) = %v, %v", k, p.UID, err)
		}
	}
	if _, err := st.Lookup(ctx, UnionKey("nobody")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup(unknown) err = %v", err)
	}
}

// TestLinkConcurrent links one user from every direction at once: logins
// with and without unionid, follows, unfollows, open-data reveals and a
// business binding, many goroutines each. It must end with one person whose
// markers are all consistent.
func TestLinkConcurrent(t *testing.T) {
	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprintf("round_%d", round), func(t *testing.T) {
			st, db, table := newStore(t)
			ctx := context.Background()
			sightings := []Sighting{
				login("mp1", "u1"),
				login("mp1", ""),
				{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, UnionID: "u1"},
				follow("oa1", "u1", true, t0),
				follow("oa1", "", true, t0),
				{OA: &OASighting{AppID: oaApp, OpenID: "oa1"}},
				{OA: &OASighting{AppID: oaApp, OpenID: "oa1"}, UnionID: "u1"},
				{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "8812"},
				{UnionID: "u1", ExternalID: "8812"},
			}
			const goroutines = 63
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			start := make(chan struct{})
			for i := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if _, err := st.Link(ctx, sightings[(i+round)%len(sightings)]); err != nil {
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
				t.Fatalf("people = %d, want 1: %+v", len(people), people)
			}
			for _, p := range people {
				if p.UnionID != "u1" || p.ExternalID != "8812" || !p.Linked() || !p.FollowsOA() {
					t.Errorf("person = %+v", p)
				}
			}
		})
	}
}

// checkInvariants scans the table (tests only) and checks that every
// marker points to a live person who holds its key, and every key a person
// holds has its marker; that no two people hold one phone number and the
// number's marker leads (through merges) to its holder. It returns the
// live people.
func checkInvariants(t *testing.T, db *dynamodb.Client, table string) map[string]Person {
	t.Helper()
	out, err := db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &table, ConsistentRead: new(true)})
	if err != nil {
		t.Fatal(err)
	}
	people := map[string]Person{}
	tombs := map[string]string{}
	markers := map[string]string{}
	phones := map[string]string{} // number: the uid its marker names
	for _, it := range out.Items {
		var head struct {
			PK string `dynamodbav:"pk"`
		}
		attributevalue.UnmarshalMap(it, &head)
		if strings.HasPrefix(head.PK, "P#") {
			var p personItem
			if err := attributevalue.UnmarshalMap(it, &p); err != nil {
				t.Fatal(err)
			}
			if p.MergedInto != "" {
				tombs[p.UID] = p.MergedInto
				continue
			}
			people[p.UID] = p.Person
			continue
		}
		if number, ok := strings.CutPrefix(head.PK, "PHONE#"); ok {
			var m phoneMarker
			if err := attributevalue.UnmarshalMap(it, &m); err != nil {
				t.Fatal(err)
			}
			phones[number] = m.UID
			continue
		}
		var m marker
		if err := attributevalue.UnmarshalMap(it, &m); err != nil {
			t.Fatal(err)
		}
		markers[m.PK] = m.UID
	}
	resolve := func(uid string) string {
		for hops := 0; hops < len(tombs) && tombs[uid] != ""; hops++ {
			uid = tombs[uid]
		}
		return uid
	}
	holders := map[string]string{}
	for uid, p := range people {
		if p.Phone == nil {
			continue
		}
		n := p.Phone.Number
		if other, ok := holders[n]; ok {
			t.Errorf("people %s and %s hold one number", other, uid)
		}
		holders[n] = uid
		if got := resolve(phones[n]); got != uid {
			t.Errorf("person %s holds a number whose marker leads to %q", uid, got)
		}
	}
	for mk, uid := range markers {
		p, ok := people[uid]
		if !ok {
			t.Errorf("marker %s points to %s, not a live person", mk, uid)
			continue
		}
		held := false
		for _, k := range p.Keys() {
			held = held || k.String() == mk
		}
		if !held {
			t.Errorf("marker %s points to %s, who does not hold it", mk, uid)
		}
	}
	for uid, p := range people {
		for _, k := range p.Keys() {
			if markers[k.String()] != uid {
				t.Errorf("person %s holds %s but its marker says %q", uid, k, markers[k.String()])
			}
		}
	}
	for uid := range tombs {
		// A merged person may have been merged again: follow the chain.
		into := resolve(uid)
		if _, ok := people[into]; !ok {
			t.Errorf("tombstone %s leads to %s, not a live person", uid, into)
		}
	}
	return people
}

// dump is the table's contents as text, to compare before and after.
func dump(t *testing.T, db *dynamodb.Client, table string) string {
	t.Helper()
	out, err := db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &table, ConsistentRead: new(true)})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, it := range out.Items {
		var m map[string]any
		attributevalue.UnmarshalMap(it, &m)
		lines = append(lines, fmt.Sprint(m))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
