package identity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
)

// The apps of one open platform account, and one mini program not bound
// to it (its sightings never carry a unionid).
const (
	mpApp2      = "wxmp000000000002"
	oaApp2      = "wxoa000000000002"
	webApp      = "wxweb00000000001"
	mobileApp   = "wxapp00000000001"
	unboundMini = "wxmpunbound00001"
)

// apps is every app of the account, by kind.
var apps = []struct {
	kind  Kind
	appid string
}{{KindMP, mpApp}, {KindMP, mpApp2}, {KindOA, oaApp}, {KindOA, oaApp2}, {KindWeb, webApp}, {KindMobile, mobileApp}}

// seen is the sighting of app i revealing who's openid there, with the
// unionid u (none: "").
func seen(i int, who, u string) Sighting {
	a, openid := apps[i], openidIn(i, who)
	switch a.kind {
	case KindMP:
		return Sighting{MP: &MPSighting{AppID: a.appid, OpenID: openid, SessionKey: "sk"}, UnionID: u, Source: SourceLogin}
	case KindOA:
		return Sighting{OA: &OASighting{AppID: a.appid, OpenID: openid, Follow: &Follow{Subscribed: true, At: t0}}, UnionID: u, Source: SourcePush}
	case KindWeb:
		return Sighting{Web: &AppSighting{AppID: a.appid, OpenID: openid}, UnionID: u, Source: SourceWebLogin}
	}
	return Sighting{Mobile: &AppSighting{AppID: a.appid, OpenID: openid}, UnionID: u, Source: SourceAppLogin}
}

// openidIn is who's openid in app i.
func openidIn(i int, who string) string { return fmt.Sprintf("%s-%d", who, i) }

// checkAllApps checks that p holds who's openid in every app, each found
// by Person.OpenID with its kind.
func checkAllApps(t *testing.T, p Person, who string) {
	t.Helper()
	for i, a := range apps {
		kind, openid, ok := p.OpenID(a.appid)
		if !ok || kind != a.kind || openid != openidIn(i, who) {
			t.Errorf("%s: OpenID(%s) = %s %q %v, want %s %q", who, a.appid, kind, openid, ok, a.kind, openidIn(i, who))
		}
	}
	if len(p.Keys()) != len(apps)+1 {
		t.Errorf("%s: keys %v, want the six openids and the unionid", who, p.Keys())
	}
	if _, _, ok := p.OpenID(unboundMini); ok {
		t.Errorf("%s: holds an openid of an app never seen", who)
	}
}

// TestLinkAcrossApps: the six apps of one person arrive in several orders,
// some first without their unionid (an OAuth snsapi_base visit, a follow
// before the open platform binding). Each order ends with one person who
// holds all six openids.
func TestLinkAcrossApps(t *testing.T) {
	st, db, table := newStore(t)
	ctx := context.Background()
	orders := []struct {
		name    string
		order   []int
		without map[int]bool // apps first seen without the unionid, revealed at the end
	}{
		{"interleaved", []int{2, 4, 0, 5, 3, 1}, nil},
		{"unionid_revealed_last", []int{5, 4, 3, 2, 1, 0}, map[int]bool{0: true}},
		// The oldest person, who survives the merges, is the mini
		// program's: it takes the website and mobile identities from the
		// person the reveal folds into it.
		{"unionids_revealed_late", []int{0, 4, 5, 1, 3, 2}, map[int]bool{0: true, 3: true}},
	}
	for _, o := range orders {
		t.Run(o.name, func(t *testing.T) {
			who, u := o.name, "u-"+o.name
			for _, i := range o.order {
				union := u
				if o.without[i] {
					union = ""
				}
				if _, err := st.Link(ctx, seen(i, who, union)); err != nil {
					t.Fatalf("app %d: %v", i, err)
				}
			}
			for i := range o.without {
				res, err := st.Link(ctx, seen(i, who, u))
				if err != nil || res.Outcome != Merged {
					t.Fatalf("reveal of app %d: %s %v, want merged", i, res.Outcome, err)
				}
			}
			p, err := st.Lookup(ctx, UnionKey(u))
			if err != nil {
				t.Fatal(err)
			}
			checkAllApps(t, p, who)
		})
	}
	if people := checkInvariants(t, db, table); len(people) != len(orders) {
		t.Errorf("people = %d, want one per order (%d)", len(people), len(orders))
	}
}

// TestLinkAcrossAppsConcurrent links the six apps' sightings of one
// person at once, with and without the unionid, from many goroutines; a
// third go through a proxy that loses some write answers after DynamoDB
// applied them (the SDK retries a write that already happened). One person
// ends up with all six. (TestLinkConcurrent races one app of each kind in
// more rounds; here the many apps are the point.)
func TestLinkAcrossAppsConcurrent(t *testing.T) {
	st, db, table := newStore(t)
	// Fewer lost answers per operation than the SDK's three attempts: no
	// call loses them all.
	lost := awsfault.ForTest(t, awstest.Endpoint(),
		awsfault.Rule{Service: awsfault.DynamoDB, Operation: "TransactWriteItems", Count: 2, Error: awsfault.LostAnswer},
		awsfault.Rule{Service: awsfault.DynamoDB, Operation: "PutItem", Count: 2, Error: awsfault.LostAnswer})
	lossy := NewStore(dynamodb.NewFromConfig(lost.Config(awstest.Config(nil)), func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
	}), table)
	ctx := context.Background()
	var sightings []Sighting
	for i := range apps {
		sightings = append(sightings, seen(i, "racer", "u1"), seen(i, "racer", ""))
	}
	// The unionid's sightings twice: two logins of one app at once.
	sightings = append(sightings, sightings[0], sightings[4], sightings[8])
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, len(sightings))
	for n, s := range sightings {
		via := st
		if n%3 == 0 {
			via = lossy
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := via.Link(ctx, s); err != nil {
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
	p, err := st.Lookup(ctx, UnionKey("u1"))
	if err != nil {
		t.Fatal(err)
	}
	checkAllApps(t, p, "racer")
	fired := 0
	for _, r := range lost.List() {
		fired += r.Fired
	}
	if fired == 0 {
		t.Error("setup: no answer was lost")
	}
	if people := checkInvariants(t, db, table); len(people) != 1 {
		t.Errorf("people = %d, want 1", len(people))
	}
}

// TestLinkAcrossAppsConflicts: a person has one openid per app, whatever
// the kind, and merging two people who each have one in the same app is
// refused, writing nothing.
func TestLinkAcrossAppsConflicts(t *testing.T) {
	st, db, table := newStore(t)
	ctx := context.Background()
	web, mobile := 4, 5
	for _, s := range []Sighting{seen(web, "a", "u1"), seen(mobile, "a", ""), seen(mobile, "b", "u1")} {
		if _, err := st.Link(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		s     Sighting
		field string
	}{
		{"second_website_openid", seen(web, "b", "u1"), "web_openid"},
		// a's mobile openid, now revealed as u1's, who has b's.
		{"merge_of_two_mobile_openids", seen(mobile, "a", "u1"), "app_openid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := dump(t, db, table)
			_, err := st.Link(ctx, c.s)
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Field != c.field {
				t.Fatalf("err = %v, want a %s conflict", err, c.field)
			}
			if after := dump(t, db, table); after != before {
				t.Errorf("a refused link wrote:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	if people := checkInvariants(t, db, table); len(people) != 2 {
		t.Errorf("people = %d, want 2", len(people))
	}
}

// TestUnboundAppLinksOnlyThroughBoth: an app outside the open platform
// account never reveals a unionid, so its openid stays a person of its own
// while the bound apps link, until a sighting carries it together with an
// identity of the person (here the business binding at its login).
func TestUnboundAppLinksOnlyThroughBoth(t *testing.T) {
	st, db, table := newStore(t)
	ctx := context.Background()
	unbound := func(ext string) Sighting {
		return Sighting{MP: &MPSighting{AppID: unboundMini, OpenID: "ub-1", SessionKey: "sk"}, ExternalID: ext, Source: SourceLogin}
	}
	alone, err := st.Link(ctx, unbound(""))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Sighting{seen(0, "p", "u1"), seen(4, "p", "u1"), {UnionID: "u1", ExternalID: "8812"}} {
		if _, err := st.Link(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if people := checkInvariants(t, db, table); len(people) != 2 {
		t.Fatalf("before the binding: people = %d, want 2", len(people))
	}
	res, err := st.Link(ctx, unbound("8812"))
	if err != nil || res.Outcome != Merged || res.Person.UnionID != "u1" {
		t.Fatalf("binding: %s %v, person %+v", res.Outcome, err, res.Person)
	}
	if kind, openid, ok := res.Person.OpenID(unboundMini); !ok || kind != KindMP || openid != "ub-1" {
		t.Errorf("OpenID(unbound) = %s %q %v", kind, openid, ok)
	}
	if p, err := st.ByUID(ctx, alone.Person.UID); err != nil || p.UID != res.Person.UID {
		t.Errorf("the unbound person's uid resolves to %q %v, want %s", p.UID, err, res.Person.UID)
	}
	if people := checkInvariants(t, db, table); len(people) != 1 {
		t.Errorf("after the binding: people = %d, want 1", len(people))
	}
}

// TestLinkManyAcrossApps: the backfill's batch carries website and mobile
// identities as Link does.
func TestLinkManyAcrossApps(t *testing.T) {
	st, db, table := newStore(t)
	ctx := context.Background()
	if _, err := st.Link(ctx, seen(0, "m", "u1")); err != nil {
		t.Fatal(err)
	}
	res, errs := st.LinkMany(ctx, []Sighting{seen(4, "m", "u1"), seen(5, "n", "u2"), {Web: &AppSighting{AppID: webApp}}})
	if errs[0] != nil || res[0].Outcome != Attached || errs[1] != nil || res[1].Outcome != Created || !errors.Is(errs[2], ErrInvalid) {
		t.Fatalf("LinkMany: %+v %v", res, errs)
	}
	p, err := st.Lookup(ctx, WebKey(webApp, openidIn(4, "m")))
	if err != nil || p.MP[mpApp].OpenID != openidIn(0, "m") {
		t.Errorf("website identity landed on %+v %v", p, err)
	}
	if people := checkInvariants(t, db, table); len(people) != 2 {
		t.Errorf("people = %d, want 2", len(people))
	}
}
