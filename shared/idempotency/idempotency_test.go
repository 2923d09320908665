package idempotency

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
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
	step := func(key string, want State) *Claim {
		t.Helper()
		got, err := s.Claim(ctx, key, "", 10*time.Second)
		if err != nil || got.State != want {
			t.Fatalf("Claim(%s) = %+v, %v; want %v", key, got, err, want)
		}
		return got
	}
	first := step("k", Claimed)
	step("k", InFlight)
	now = now.Add(11 * time.Second) // the holder's lease ran out
	second := step("k", Claimed)
	if second.Again {
		t.Error("a takeover of the same outcome is not flagged Again")
	}
	if err := first.Complete(ctx, "handled", ""); err == nil {
		t.Error("the first holder completed a key taken over from it")
	}
	if err := second.Complete(ctx, "handled", ""); err != nil {
		t.Fatal(err)
	}
	counter.Counts()
	now = now.Add(time.Hour)
	step("k", Done)
	if c := counter.Counts(); len(c) != 1 || c["UpdateItem"] != 1 {
		t.Errorf("a duplicate cost %v, want one conditional UpdateItem", c)
	}
	// Release frees a claim, but never a finished key.
	other := step("other", Claimed)
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if again := step("other", Claimed); again.Again {
		t.Error("a released key claimed again is flagged Again")
	}
	done, _ := s.Claim(ctx, "k", "", time.Minute)
	if err := done.Release(ctx); err != ErrNotClaimed {
		t.Fatalf("Release of a done key = %v", err)
	}
	step("k", Done)
}

// TestOutcomesAlternate: a key that stands for a state settles on one
// outcome; asking for it again is a duplicate, asking for the other is not
// (and is flagged Again), and the settled outcome is what the work says.
func TestOutcomesAlternate(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	claim := func(outcome string, want State, again bool) *Claim {
		t.Helper()
		c, err := s.Claim(ctx, "follow", outcome, time.Minute)
		if err != nil || c.State != want || c.Again != again {
			t.Fatalf("Claim(%s) = %+v, %v; want %v again=%v", outcome, c, err, want, again)
		}
		return c
	}
	if err := claim("subscribe", Claimed, false).Complete(ctx, "handled", ""); err != nil {
		t.Fatal(err)
	}
	claim("subscribe", Done, false) // WeChat's retry of the follow
	if err := claim("unsubscribe", Claimed, true).Complete(ctx, "handled", ""); err != nil {
		t.Fatal(err)
	}
	// A follow again; the authority says the follower does not follow
	// after all: the key settles on unsubscribe.
	if err := claim("subscribe", Claimed, true).Complete(ctx, "handled", "unsubscribe"); err != nil {
		t.Fatal(err)
	}
	claim("unsubscribe", Done, false)
	// A claim given back restores what the key had settled on.
	claim("subscribe", Claimed, true).Release(ctx)
	claim("unsubscribe", Done, false)
	claim("subscribe", Claimed, true)
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
			c, err := s.Claim(context.Background(), "same", "", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			counts[c.State]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if counts[Claimed] != 1 || counts[InFlight] != 39 {
		t.Fatalf("outcomes = %v, want one claim and 39 in flight", counts)
	}
}

// A claim whose answer is lost is retried by the SDK and meets its own
// lease: it holds the key, flagged Again (what the key held before is not
// known), and giving it back keeps the record so the next claim is free.
func TestClaimWhoseAnswerIsLost(t *testing.T) {
	ctx := context.Background()
	p := awsfault.ForTest(t, awstest.Endpoint())
	cfg := p.Config(awstest.Config(nil))
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 5 * time.Millisecond })
	}
	s := NewStore(dynamodb.NewFromConfig(cfg), awstest.Table(t), "test")

	settled, err := s.Claim(ctx, "k", "follow", time.Minute)
	if err != nil || settled.State != Claimed {
		t.Fatalf("first claim = %+v, %v", settled, err)
	}
	if err := settled.Complete(ctx, "handled", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Count: 1, Error: awsfault.LostAnswer}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, "k", "unfollow", time.Minute)
	if err != nil || c.State != Claimed {
		t.Fatalf("claim whose answer was lost = %+v, %v; want Claimed", c, err)
	}
	if !c.Again {
		t.Fatal("a claim that cannot see what the key held is not flagged Again")
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := s.Claim(ctx, "k", "unfollow", time.Minute)
	if err != nil || next.State != Claimed {
		t.Fatalf("claim after the release = %+v, %v; want Claimed", next, err)
	}
}
