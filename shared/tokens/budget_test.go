package tokens_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/ddb"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

func TestForceBudgetRule(t *testing.T) {
	// 23:59:50 in Beijing: the platform day changes 10 s later.
	now := time.Date(2026, 3, 2, 23, 59, 50, 0, wechat.Beijing)
	var b tokens.ForceBudget
	start := now.Add(-20 * time.Minute)
	for i := range tokens.ForcePerDay {
		at := start.Add(time.Duration(i) * (tokens.ForceSpacing + time.Second))
		if err := b.Allow(at); err != nil {
			t.Fatalf("force %d refused: %v", i+1, err)
		}
		b = b.Spend(at)
	}
	limit := func(err error) string {
		var be *tokens.BudgetError
		if errors.As(err, &be) {
			return be.Limit
		}
		return ""
	}
	if err := b.Allow(now); limit(err) != "daily" || !strings.Contains(err.Error(), "2026-03-03T00:00:00+08:00") {
		t.Fatalf("21st force today: %v, want the daily limit, renewing at midnight Beijing time", err)
	}
	if err := b.Allow(now.Add(10 * time.Second)); err != nil {
		t.Fatalf("first force of the next platform day refused: %v", err)
	}
	b = b.Spend(now.Add(10 * time.Second))
	if b.Count != 1 || b.Day != "2026-03-03" {
		t.Fatalf("after the day change: %+v", b)
	}
	if err := b.Allow(now.Add(39 * time.Second)); limit(err) != "spacing" {
		t.Fatalf("force 29 s after the previous: %v, want the spacing limit", err)
	}
	if err := b.Allow(now.Add(40 * time.Second)); err != nil {
		t.Fatalf("force 30 s after the previous: %v", err)
	}
}

// The budget lives in the table: concurrent spenders (refresher instances)
// cannot both spend, and a day's twenty are kept across Ledger values.
func TestSpendForce(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	table := awstest.Table(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, wechat.Beijing)
	clock := func() time.Time { return at }

	var spent, refused atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			err := tokens.NewLedger(db, table, clock).SpendForce(ctx, "wxrace")
			var be *tokens.BudgetError
			switch {
			case err == nil:
				spent.Add(1)
			case errors.As(err, &be) && be.Limit == "spacing":
				refused.Add(1)
			default:
				t.Errorf("SpendForce: %v", err)
			}
		})
	}
	wg.Wait()
	if spent.Load() != 1 || refused.Load() != 9 {
		t.Fatalf("%d spent, %d refused by the spacing; want 1 and 9", spent.Load(), refused.Load())
	}

	for i := 1; i < tokens.ForcePerDay; i++ {
		at = at.Add(tokens.ForceSpacing)
		if err := tokens.NewLedger(db, table, clock).SpendForce(ctx, "wxrace"); err != nil {
			t.Fatalf("force %d: %v", i+1, err)
		}
	}
	at = at.Add(tokens.ForceSpacing)
	var be *tokens.BudgetError
	if err := tokens.NewLedger(db, table, clock).SpendForce(ctx, "wxrace"); !errors.As(err, &be) || be.Limit != "daily" {
		t.Fatalf("21st force: %v, want the daily limit", err)
	}
	if err := tokens.NewLedger(db, table, clock).SpendForce(ctx, "wxother"); err != nil {
		t.Fatalf("another app's budget: %v", err)
	}
}

// One run at a time holds an app's lease; a waiting run gets it once the
// holder lets go, and one that will not wait is told it is held.
func TestLease(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	table := awstest.Table(t)
	ctx := context.Background()
	l := tokens.NewLedger(db, table, nil)

	var holders, most atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			lease, err := l.Lease(ctx, "wxlease", 5*time.Second)
			if err != nil {
				t.Errorf("Lease: %v", err)
				return
			}
			n := holders.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(10 * time.Millisecond)
			holders.Add(-1)
			if err := l.Release(ctx, lease); err != nil {
				t.Errorf("Release: %v", err)
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d runs held the lease at once", most.Load())
	}

	held, err := l.Lease(ctx, "wxlease", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lease(ctx, "wxlease", 0); !errors.Is(err, ddb.ErrHeld) {
		t.Fatalf("a held lease: %v, want ddb.ErrHeld", err)
	}
	// A lease that ran out (its holder crashed) is taken over.
	later := tokens.NewLedger(db, table, func() time.Time { return time.Now().Add(3 * time.Minute) })
	taken, err := later.Lease(ctx, "wxlease", 0)
	if err != nil || !taken.Takeover() {
		t.Fatalf("after the lease ran out: %v, takeover %v", err, taken != nil && taken.Takeover())
	}
	if err := l.Release(ctx, held); !errors.Is(err, ddb.ErrLost) {
		t.Fatalf("releasing a lease taken over: %v, want ddb.ErrLost", err)
	}
}
