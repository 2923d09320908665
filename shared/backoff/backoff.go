// Package backoff is how wxbridge waits before trying again: delays that
// grow per attempt with jitter, and a sleep that ends with its context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits for d, or until ctx is done, whichever comes first; it
// returns ctx.Err() in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Exp is base doubled for each attempt after the first, at most ceiling.
// attempt counts from 1.
func Exp(base, ceiling time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// Full is "full jitter": a uniformly random delay in [0, d], so that racers
// that lost together do not come back together.
func Full(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// Spread takes up to frac of d off at random (frac 0.25 gives 75-100% of
// d): the wait stays close to d, but a burst does not return as a burst.
func Spread(d time.Duration, frac float64) time.Duration {
	cut := time.Duration(float64(d) * frac)
	if cut <= 0 {
		return d
	}
	return d - rand.N(cut+1)
}

// Add puts up to frac of d on top of it at random.
func Add(d time.Duration, frac float64) time.Duration {
	extra := time.Duration(float64(d) * frac)
	if extra <= 0 {
		return d
	}
	return d + rand.N(extra+1)
}
