package backoff

import (
	"context"
	"testing"
	"time"
)

func TestExp(t *testing.T) {
	cases := []struct {
		attempt int
		want    time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 10 * time.Second}, {60, 10 * time.Second}}
	for _, c := range cases {
		if got := Exp(time.Second, 10*time.Second, c.attempt); got != c.want {
			t.Errorf("Exp(1s, 10s, %d) = %s, want %s", c.attempt, got, c.want)
		}
	}
}

func TestJitterStaysInRange(t *testing.T) {
	for range 1000 {
		if d := Full(time.Second); d < 0 || d > time.Second {
			t.Fatalf("Full(1s) = %s", d)
		}
		if d := Spread(time.Second, 0.25); d < 750*time.Millisecond || d > time.Second {
			t.Fatalf("Spread(1s, .25) = %s", d)
		}
		if d := Add(time.Second, 0.1); d < time.Second || d > 1100*time.Millisecond {
			t.Fatalf("Add(1s, .1) = %s", d)
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep(1ms) = %v", err)
	}
}
