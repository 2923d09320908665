package ddb_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/ddb"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func TestLease(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	table := awstest.Table(t)
	ctx := context.Background()
	now := time.Now()
	take := func(pk string, at time.Time, while string) (*ddb.Lease, ddb.Item, error) {
		tk := ddb.Take{Table: table, Key: ddb.Key(pk), Until: at.Add(time.Minute), Now: at,
			Set: "#s = :claimed", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":claimed": ddb.S("claimed")}}
		if while != "" {
			tk.While = while
		}
		return ddb.Taken(ctx, db, tk)
	}

	t.Run("only_one_of_many_concurrent_takers_holds_it", func(t *testing.T) {
		var won atomic.Int32
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, _, err := take("race", now, "")
				switch {
				case err == nil && l != nil:
					won.Add(1)
				case !errors.Is(err, ddb.ErrHeld):
					t.Errorf("take: %v", err)
				}
			}()
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d takers hold the lease, want 1", won.Load())
		}
	})

	t.Run("held_lease_reports_its_holder", func(t *testing.T) {
		l, _, err := take("held", now, "")
		if err != nil {
			t.Fatal(err)
		}
		_, cur, err := take("held", now.Add(time.Second), "")
		if !errors.Is(err, ddb.ErrHeld) || ddb.String(cur, ddb.LeaseOwner) != l.Owner {
			t.Fatalf("second take = %v with owner %q, want ErrHeld by %q", err, ddb.String(cur, ddb.LeaseOwner), l.Owner)
		}
	})

	t.Run("expired_lease_is_taken_over_and_the_old_owner_has_lost_it", func(t *testing.T) {
		old, _, err := take("expired", now, "")
		if err != nil {
			t.Fatal(err)
		}
		nu, _, err := take("expired", now.Add(2*time.Minute), "")
		if err != nil {
			t.Fatalf("take over an expired lease: %v", err)
		}
		if !nu.Takeover() || old.Takeover() {
			t.Fatalf("Takeover: new %v, first %v; want true, false", nu.Takeover(), old.Takeover())
		}
		if err := old.Release(ctx, db, ddb.End{}); !errors.Is(err, ddb.ErrLost) {
			t.Fatalf("release by the old owner = %v, want ErrLost", err)
		}
		if err := nu.Release(ctx, db, ddb.End{Set: "#s = :done", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":done": ddb.S("done")}}); err != nil {
			t.Fatalf("release by the owner: %v", err)
		}
	})

	t.Run("while_keeps_a_settled_item_from_being_leased", func(t *testing.T) {
		l, _, err := take("settled", now, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx, db, ddb.End{Set: "#s = :done", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":done": ddb.S("done")}}); err != nil {
			t.Fatal(err)
		}
		_, cur, err := ddb.Taken(ctx, db, ddb.Take{Table: table, Key: ddb.Key("settled"), Until: now.Add(time.Minute), Now: now,
			While: "#s = :claimed", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":claimed": ddb.S("claimed")}})
		if !errors.Is(err, ddb.ErrHeld) || ddb.String(cur, "status") != "done" {
			t.Fatalf("take of a settled item = %v (%v), want ErrHeld with status done", err, cur)
		}
	})

	// The very same take again (what the SDK sends when the first one's
	// answer was lost after it committed) gets the lease back, says that
	// the item before it is unknown, and hands over the item as it is;
	// the same owner with another deadline is another take, and held.
	t.Run("the_same_take_again_is_ours_with_before_unknown", func(t *testing.T) {
		first := ddb.Take{Table: table, Key: ddb.Key("again"), Owner: "me", Until: now.Add(time.Minute), Now: now,
			Set: "#s = :claimed", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":claimed": ddb.S("claimed")}}
		l, _, err := ddb.Taken(ctx, db, first)
		if err != nil || l.BeforeUnknown || l.Takeover() {
			t.Fatalf("first take = %v, before unknown %v, takeover %v", err, l != nil && l.BeforeUnknown, l != nil && l.Takeover())
		}
		again, cur, err := ddb.Taken(ctx, db, first)
		if err != nil || !again.BeforeUnknown || again.Before != nil || !again.Takeover() || again.Owner != "me" {
			t.Fatalf("the same take again = %v, %+v; want the lease, BeforeUnknown, no Before, a possible takeover", err, again)
		}
		if ddb.String(cur, "status") != "claimed" || ddb.String(cur, ddb.LeaseOwner) != "me" {
			t.Fatalf("current item after the same take again: %v", cur)
		}
		later := first
		later.Until = first.Until.Add(time.Second)
		if _, _, err := ddb.Taken(ctx, db, later); !errors.Is(err, ddb.ErrHeld) {
			t.Fatalf("the same owner with another deadline = %v, want ErrHeld", err)
		}
		if err := again.Release(ctx, db, ddb.End{}); err != nil {
			t.Fatalf("release: %v", err)
		}
	})

	t.Run("released_by_delete_is_free_again", func(t *testing.T) {
		l, _, err := take("deleted", now, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx, db, ddb.End{Delete: true}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := take("deleted", now, ""); err != nil {
			t.Fatalf("take after delete: %v", err)
		}
	})
}
