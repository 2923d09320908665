package ddb_test

// Attacks on the lease primitive (issue 12): many takers at once, a
// release by someone who does not hold it, takeovers of an expired lease
// racing each other under a While condition, and a take whose answer is
// lost after DynamoDB committed it.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/ddb"
)

// takeAt is a take of pk at now for a minute, setting status claimed.
func takeAt(table, pk, owner string, now time.Time, while string) ddb.Take {
	return ddb.Take{Table: table, Key: ddb.Key(pk), Owner: owner, Until: now.Add(time.Minute), Now: now, While: while,
		Set: "#s = :claimed", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":claimed": ddb.S("claimed")}}
}

// race runs f in n goroutines released at the same instant.
func race(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() { <-start; f(i) })
	}
	close(start)
	wg.Wait()
}

func TestAttackLeaseManyTakersOneHolder(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	table := awstest.Table(t)
	ctx := context.Background()
	now := time.Now()
	var won atomic.Int32
	var winner atomic.Value
	race(40, func(i int) {
		owner := "taker-" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		l, _, err := ddb.Taken(ctx, db, takeAt(table, "one", owner, now, ""))
		switch {
		case err == nil:
			won.Add(1)
			winner.Store(l.Owner)
		case !errors.Is(err, ddb.ErrHeld):
			t.Errorf("take: %v", err)
		}
	})
	if won.Load() != 1 {
		t.Fatalf("%d of 40 takers hold the lease, want exactly 1", won.Load())
	}
	// Everyone who lost sees the winner as the holder.
	_, cur, err := ddb.Taken(ctx, db, takeAt(table, "one", "late", now, ""))
	if !errors.Is(err, ddb.ErrHeld) || ddb.String(cur, ddb.LeaseOwner) != winner.Load().(string) {
		t.Fatalf("late take = %v, holder %q; want ErrHeld by %q", err, ddb.String(cur, ddb.LeaseOwner), winner.Load())
	}
}

func TestAttackLeaseReleaseByANonOwner(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	table := awstest.Table(t)
	ctx := context.Background()
	now := time.Now()
	held, _, err := ddb.Taken(ctx, db, takeAt(table, "mine", "owner-1", now, ""))
	if err != nil {
		t.Fatal(err)
	}
	// A forged lease: same item, another owner (a worker that lost the
	// race, or one whose lease was taken over).
	forged := *held
	forged.Owner = "owner-2"
	for name, end := range map[string]ddb.End{
		"update": {Set: "#s = :done", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":done": ddb.S("done")}},
		"delete": {Delete: true},
	} {
		if err := forged.Release(ctx, db, end); !errors.Is(err, ddb.ErrLost) {
			t.Fatalf("%s release by a non-owner = %v, want ErrLost", name, err)
		}
	}
	// The lease still holds for its owner, and the item is untouched.
	if _, cur, err := ddb.Taken(ctx, db, takeAt(table, "mine", "owner-3", now.Add(time.Second), "")); !errors.Is(err, ddb.ErrHeld) ||
		ddb.String(cur, "status") != "claimed" || ddb.String(cur, ddb.LeaseOwner) != "owner-1" {
		t.Fatalf("after the forged releases: %v %v", err, cur)
	}
	if err := held.Release(ctx, db, ddb.End{}); err != nil {
		t.Fatalf("release by the owner: %v", err)
	}
	// Released twice: the second is no longer ours.
	if err := held.Release(ctx, db, ddb.End{}); !errors.Is(err, ddb.ErrLost) {
		t.Fatalf("second release = %v, want ErrLost", err)
	}
}

// TestAttackLeaseTakeoverRace: a holder died; many workers find its lease
// expired at once. Exactly one takes it over (and knows it is a
// takeover); the dead holder's late release is refused; and a While that
// no longer holds keeps everyone off even an expired lease.
func TestAttackLeaseTakeoverRace(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	table := awstest.Table(t)
	ctx := context.Background()
	now := time.Now()
	const while = "#s = :claimed"
	dead, _, err := ddb.Taken(ctx, db, takeAt(table, "job", "dead", now, ""))
	if err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Minute)
	var won atomic.Int32
	var taker atomic.Pointer[ddb.Lease]
	race(20, func(i int) {
		l, _, err := ddb.Taken(ctx, db, takeAt(table, "job", "", later, while))
		switch {
		case err == nil:
			won.Add(1)
			taker.Store(l)
		case !errors.Is(err, ddb.ErrHeld):
			t.Errorf("takeover: %v", err)
		}
	})
	if won.Load() != 1 || !taker.Load().Takeover() {
		t.Fatalf("%d took over (takeover=%v), want exactly 1 takeover", won.Load(), won.Load() == 1 && taker.Load().Takeover())
	}
	if err := dead.Release(ctx, db, ddb.End{Set: "#s = :done", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":done": ddb.S("done")}}); !errors.Is(err, ddb.ErrLost) {
		t.Fatalf("the dead holder's late release = %v, want ErrLost", err)
	}
	// The new holder settles it; an expired lease on a settled item stays
	// off limits under While.
	if err := taker.Load().Release(ctx, db, ddb.End{Set: "#s = :done", Names: map[string]string{"#s": "status"}, Values: ddb.Item{":done": ddb.S("done")}}); err != nil {
		t.Fatal(err)
	}
	race(10, func(int) {
		if _, _, err := ddb.Taken(ctx, db, takeAt(table, "job", "", later.Add(time.Hour), while)); !errors.Is(err, ddb.ErrHeld) {
			t.Errorf("take of a settled item = %v, want ErrHeld", err)
		}
	})
}

// TestAttackLeaseTakeWhoseAnswerIsLost: DynamoDB committed the take, its
// answer was lost (500), and the SDK's retry of the very same request
// (same owner) finds the lease held — by the caller itself. The caller
// must get its lease, not ErrHeld: otherwise it waits out its own lease
// (the push answers "in progress" to every WeChat retry, a send job is
// taken over later as one that "may have been sent").
func TestAttackLeaseTakeWhoseAnswerIsLost(t *testing.T) {
	lost := awsfault.ForTest(t, awstest.Endpoint(), awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: "lost-answer", Count: 1, Error: awsfault.LostAnswer})
	db := dynamodb.NewFromConfig(lost.Config(awstest.Config(nil)), func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
	})
	table := awstest.Table(t)
	now := time.Now()
	l, cur, err := ddb.Taken(context.Background(), db, takeAt(table, "lost-answer", "", now, ""))
	if lost.List()[0].Fired != 1 {
		t.Fatal("setup: the answer was not lost")
	}
	if err != nil {
		t.Fatalf("take whose answer was lost = %v (holder %q): the caller is told its own lease is someone else's", err, ddb.String(cur, ddb.LeaseOwner))
	}
	if err := l.Release(context.Background(), db, ddb.End{}); err != nil {
		t.Fatalf("release: %v", err)
	}
}
