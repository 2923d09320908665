package backfill

import (
	"errors"
	"math/rand/v2"
	"time"

	"wxbridge/shared/wechat"
)

// MaxDelay is the longest a job can be put off: SQS's longest visibility
// timeout.
const MaxDelay = 12 * time.Hour

// Backoff is how long a job that failed with err on its attempt-th
// delivery waits before the next, doubling each time, with jitter so that
// the chunks a quota stopped together do not all come back together:
//   - 45009, the daily quota (some APIs use it per minute too): from 15
//     minutes up to 12 hours;
//   - 45011, too frequent: from a minute up to 15 minutes;
//   - -1 (busy), transport, tokens, the store: from 5 seconds up to 5
//     minutes.
func Backoff(err error, attempt int) time.Duration {
	base, ceiling := 5*time.Second, 5*time.Minute
	var we *wechat.Error
	switch {
	case wechat.ClassOf(err) == wechat.ClassQuota:
		base, ceiling = 15*time.Minute, MaxDelay
	case errors.As(err, &we) && we.Code == 45011:
		base, ceiling = time.Minute, 15*time.Minute
	}
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	// Between three quarters and all of it.
	return d - rand.N(d/4+1)
}
