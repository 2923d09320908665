package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"wxbridge/shared/observe"
)

// counted returns how often metric name was counted, by its dimension
// values joined with "/" (for example "backfill/unionid").
func counted(c *observe.Capture, name string, dims ...string) map[string]int {
	out := map[string]int{}
	for _, l := range strings.Split(c.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m[name] == nil {
			continue
		}
		var vals []string
		for _, d := range dims {
			vals = append(vals, fmt.Sprint(m[d]))
		}
		out[strings.Join(vals, "/")]++
	}
	return out
}

// TestMergesAndConflictsAreCountedBySource: the store counts every merge
// and every refused link once, labelled with the sighting's source,
// whether it came through Link or through LinkMany's batch.
func TestMergesAndConflictsAreCountedBySource(t *testing.T) {
	st, _, _ := newStore(t)
	c := &observe.Capture{}
	st.Metrics = observe.NewMetrics(c, "test")
	ctx := context.Background()
	link := func(s Sighting) error {
		t.Helper()
		_, err := st.Link(ctx, s)
		return err
	}
	as := func(s Sighting, src Source) Sighting { s.Source = src; return s }

	// A follower without a unionid (OAuth snsapi_base) and a login with
	// one: the push that reveals the follower's unionid merges them.
	for _, s := range []Sighting{
		as(Sighting{OA: &OASighting{AppID: oaApp, OpenID: "oa1"}}, SourceOAuth),
		as(login("mp1", "u1"), SourceLogin),
		as(follow("oa1", "u1", true, t0), SourcePush),
	} {
		if err := link(s); err != nil {
			t.Fatal(err)
		}
	}
	// The same through the backfill's LinkMany, next to a sighting linked
	// in the batch and one refused in it (the openid is u3's, not u4's).
	for _, s := range []Sighting{
		as(Sighting{OA: &OASighting{AppID: oaApp, OpenID: "oa2"}}, SourceOAuth),
		as(login("mp2", "u2"), SourceLogin),
		as(follow("oa3", "u3", true, t0), SourcePush),
	} {
		if err := link(s); err != nil {
			t.Fatal(err)
		}
	}
	_, errs := st.LinkMany(ctx, []Sighting{
		as(follow("oa2", "u2", true, t0), SourceBackfill),
		as(follow("oa3", "u4", true, t0), SourceBackfill),
		as(follow("oa5", "u5", true, t0), SourceBackfill),
	})
	if errs[0] != nil || !errors.Is(errs[1], ErrConflict) || errs[2] != nil {
		t.Fatalf("LinkMany errors %v, want only the second refused", errs)
	}
	// A binding refused at login, and one by a caller that names no source.
	if err := link(as(Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "A"}, SourceLogin)); err != nil {
		t.Fatal(err)
	}
	if err := link(as(Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "B"}, SourceLogin)); !errors.Is(err, ErrConflict) {
		t.Fatalf("second binding: %v", err)
	}
	if err := link(Sighting{MP: &MPSighting{AppID: mpApp, OpenID: "mp1"}, ExternalID: "C"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("third binding: %v", err)
	}

	if got := counted(c, "Merges", "source"); len(got) != 2 || got["push"] != 1 || got["backfill"] != 1 {
		t.Errorf("Merges by source = %v, want push 1 and backfill 1", got)
	}
	if got := counted(c, "LinkConflicts", "source", "field"); len(got) != 3 || got["backfill/unionid"] != 1 ||
		got["login/external_id"] != 1 || got["unspecified/external_id"] != 1 {
		t.Errorf("LinkConflicts by source and field = %v", got)
	}
}

// TestMergeWithoutMetrics: a store without Metrics merges as before.
func TestMergeWithoutMetrics(t *testing.T) {
	st, _, _ := newStore(t)
	ctx := context.Background()
	var res Result
	for _, s := range []Sighting{follow("oa1", "", true, t0), login("mp1", "u1"), follow("oa1", "u1", true, t0.Add(1))} {
		var err error
		if res, err = st.Link(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if res.Outcome != Merged {
		t.Fatalf("outcome %s, want merged", res.Outcome)
	}
}
