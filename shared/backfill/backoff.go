package backfill

import (
	"errors"
	"time"

	"wxbridge/shared/backoff"
	"wxbridge/shared/queue"
	"wxbridge/shared/wechat"
)

// Backoff is how long a job that failed with err on its attempt-th
// delivery waits before the next, doubling each time, with jitter so that
// the chunks a quota stopped together do not all come back together:
//   - 45009, the daily quota (some APIs use it per minute too): from 15
//     minutes up to queue.MaxDelay, SQS's longest;
//   - 45011, too frequent: from a minute up to 15 minutes;
//   - anything else that may pass (-1 busy, transport, tokens, the store,
//     the account's configuration, unknown answers): from 5 seconds up to
//     5 minutes.
func Backoff(err error, attempt int) time.Duration {
	base, ceiling := 5*time.Second, 5*time.Minute
	switch {
	case errors.Is(err, wechat.ErrQuota):
		base, ceiling = 15*time.Minute, queue.MaxDelay
	case errors.Is(err, wechat.ErrTooFrequent):
		base, ceiling = time.Minute, 15*time.Minute
	}
	// Between three quarters and all of it.
	return backoff.Spread(backoff.Exp(base, ceiling, attempt), 0.25)
}
