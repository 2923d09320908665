package idempotency

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func newStore(t *testing.T, counter *awstest.Counter) *Store {
	return NewStore(dynamodb.NewFromConfig(awstest.Config(counter)), awstest.Table(t), "test")
}

func TestClaimLifecycle(t *testing.T) {
	ctx := context.Background()
	counter := &awstest.Counter{}
	s := newStore(t, counter)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	step := func(want State) {
		t.Helper()
		got, err := s.Claim(ctx, "k", 10*time.Second)
		if err != nil || got != want {
			t.Fatalf("Claim = %v, %v; want %v", got, err, want)
		}
	}
	step(Claimed)
	step(InFlight)
	now = now.Add(11 * time.Second) // the holder's lease ran out
	step(Claimed)
	if err := s.Complete(ctx, "k", "handled"); err != nil {
		t.Fatal(err)
	}
	counter.Counts()
	now = now.Add(time.Hour)
	step(Done)
	if c := counter.Counts(); len(c) != 1 || c["PutItem"] != 1 {
		t.Errorf("a duplicate cost %v, want one conditional PutItem", c)
	}
	// Release frees a claim, but never a finished key.
	step2 := "other"
	if st, _ := s.Claim(ctx, step2, time.Minute); st != Claimed {
		t.Fatal("claim other")
	}
	if err := s.Release(ctx, step2); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Claim(ctx, step2, time.Minute); st != Claimed {
		t.Fatal("released key must be claimable at once")
	}
	if err := s.Release(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	step(Done)
}

func TestConcurrentClaimsHaveOneWinner(t *testing.T) {
	s := newStore(t, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[State]int{}
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.Claim(context.Background(), "same", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			counts[st]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if counts[Claimed] != 1 || counts[InFlight] != 39 {
		t.Fatalf("outcomes = %v, want one claim and 39 in flight", counts)
	}
}
