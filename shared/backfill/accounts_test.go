package backfill

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
)

// TestAccountsRouteByAppID: a job goes to the syncer of the account it
// names, the default when it names none; an account not configured is an
// error (the job is dropped), never another account's work.
func TestAccountsRouteByAppID(t *testing.T) {
	a := NewAccounts(Syncer{}, "wxoa1", "wxoa2")
	for _, tc := range []struct{ ask, want string }{{"", "wxoa1"}, {"wxoa1", "wxoa1"}, {"wxoa2", "wxoa2"}} {
		s, err := a.Syncer(tc.ask)
		if err != nil || s.AppID != tc.want {
			t.Errorf("Syncer(%q) = %v, %v; want %s", tc.ask, s, err, tc.want)
		}
	}
	if a.Syncers["wxoa1"] == a.Syncers["wxoa2"] {
		t.Error("the accounts share a syncer")
	}
	if _, err := a.Syncer("wxother"); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("Syncer(wxother): %v", err)
	}
	if err := a.Process(context.Background(), Job{Kind: PageJob, AppID: "wxother", Run: "r"}, 1); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("a job of another account: %v", err)
	}
}

// TestPageChunks: a page is cut into chunks of the size it was saved with
// (at most ChunkSize), the last one shorter; pages saved before the size
// was kept are cut by ChunkSize.
func TestPageChunks(t *testing.T) {
	ids := make([]string, 250)
	for i := range ids {
		ids[i] = "o" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		size int
		want []int
	}{
		{0, []int{100, 100, 50}},
		{100, []int{100, 100, 50}},
		{500, []int{100, 100, 50}},
		{10, slices.Repeat([]int{10}, 25)},
		{60, []int{60, 60, 60, 60, 10}},
	} {
		p := &Page{OpenIDs: ids, ChunkSize: tc.size}
		var got []int
		var all []string
		for _, c := range p.Chunks() {
			got = append(got, len(c))
			all = append(all, c...)
		}
		if !slices.Equal(got, tc.want) || !slices.Equal(all, ids) {
			t.Errorf("size %d: chunks of %v, want %v (all in order: %v)", tc.size, got, tc.want, slices.Equal(all, ids))
		}
	}
	if c := (&Page{}).Chunks(); len(c) != 0 {
		t.Errorf("an empty page has chunks %v", c)
	}
}
