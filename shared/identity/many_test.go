package identity

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
)

func TestLinkMany(t *testing.T) {
	st, _, _ := newStore(t)
	ctx := context.Background()
	// Already there: a mini-program user (u1) and a follower (oa2, u2).
	if _, err := st.Link(ctx, login("mp1", "u1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Link(ctx, follow("oa2", "u2", true, t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Link(ctx, Sighting{ExternalID: "x9", UnionID: "u9"}); err != nil {
		t.Fatal(err)
	}
	ss := []Sighting{
		follow("oa1", "u1", true, t0),   // attaches to the mini-program user
		follow("oa2", "u2", true, t0),   // nothing new
		follow("oa3", "u3", true, t0),   // new person
		follow("oa4", "", true, t0),     // new person without unionid
		follow("oa5", "u5", true, t0),   // shares u5 with the next: both go alone, in order
		follow("oa6", "u5", true, t0),   // then conflicts: one person, two openids in one OA
		follow("oa7", "u9", true, t0),   // attaches to the person with external id
		{OA: &OASighting{AppID: oaApp}}, // invalid
	}
	res, errs := st.LinkMany(ctx, ss)
	want := []Outcome{Attached, Unchanged, Created, Created, Created, "", Attached, ""}
	for i := range ss {
		if want[i] == "" {
			if errs[i] == nil {
				t.Errorf("%d: want an error, got %s", i, res[i].Outcome)
			}
			continue
		}
		if errs[i] != nil || res[i].Outcome != want[i] {
			t.Errorf("%d: %s %v, want %s", i, res[i].Outcome, errs[i], want[i])
		}
	}
	for _, c := range []struct {
		k      Key
		linked bool
		union  string
	}{{OAKey(oaApp, "oa1"), true, "u1"}, {OAKey(oaApp, "oa3"), false, "u3"}, {OAKey(oaApp, "oa4"), false, ""}, {OAKey(oaApp, "oa7"), false, "u9"}} {
		p, err := st.Lookup(ctx, c.k)
		if err != nil || p.Linked() != c.linked || p.UnionID != c.union || !p.FollowsOA() {
			t.Errorf("%s: %+v %v", c.k, p, err)
		}
	}
	if p, _ := st.Lookup(ctx, MPKey(mpApp, "mp1")); p.OA[oaApp].OpenID != "oa1" || res[0].Person.UID != p.UID {
		t.Errorf("mp1 = %+v", p)
	}
	// Again: nothing changes, nothing is written.
	res, errs = st.LinkMany(ctx, ss[:4])
	for i := range res {
		if errs[i] != nil || res[i].Outcome != Unchanged {
			t.Errorf("again %d: %s %v", i, res[i].Outcome, errs[i])
		}
	}
}

// TestLinkManyLosesARaceAndFallsBack makes the batched write fail its
// condition (someone created the marker after the read) and checks that
// the sighting still ends on the right person.
func TestLinkManyLosesARaceAndFallsBack(t *testing.T) {
	st, _, _ := newStore(t)
	ctx := context.Background()
	uids := 0
	st.NewUID = func() string {
		uids++
		if uids == 2 {
			// Between LinkMany's read and its write, the person logs in.
			if _, err := st.Link(ctx, login("mpX", "uX")); err != nil {
				t.Fatal(err)
			}
		}
		return fmt.Sprintf("01TESTUID%017d", uids)
	}
	res, errs := st.LinkMany(ctx, []Sighting{follow("oaW", "uW", true, t0), follow("oaX", "uX", true, t0)})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	p, err := st.Lookup(ctx, MPKey(mpApp, "mpX"))
	if err != nil || !p.Linked() || res[1].Person.UID != p.UID {
		t.Fatalf("after the race: %+v, result %+v", p, res[1])
	}
	if w, _ := st.Lookup(ctx, OAKey(oaApp, "oaW")); w.UnionID != "uW" {
		t.Errorf("oaW = %+v", w)
	}
}

// BenchmarkLinkFollowers links 100 new followers (one backfill chunk) with
// Link one by one and with LinkMany, side by side.
func BenchmarkLinkFollowers(b *testing.B) {
	for _, way := range []string{"one_by_one", "link_many"} {
		b.Run(way, func(b *testing.B) {
			st := NewStore(dynamodb.NewFromConfig(awstest.Config(nil)), awstest.Table(b))
			ctx := context.Background()
			start := time.Now()
			for i := range b.N {
				ss := make([]Sighting, 100)
				for k := range ss {
					id := fmt.Sprintf("%d-%d", i, k)
					ss[k] = follow("oa"+id, "u"+id, true, t0)
				}
				if way == "one_by_one" {
					for _, s := range ss {
						if _, err := st.Link(ctx, s); err != nil {
							b.Fatal(err)
						}
					}
				} else if _, errs := st.LinkMany(ctx, ss); errs[0] != nil {
					b.Fatal(errs[0])
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N*100), "µs/follower")
		})
	}
}
