package notify

import (
	"time"

	"wxbridge/shared/backoff"
	"wxbridge/shared/wechat"
)

// Retry delays: how long a job stays invisible on the send queue before its
// next attempt. SQS keeps a message invisible for at most 12 hours
// (queue.MaxDelay).
const (
	// RetryBase is the delay after a job's first transient failure; it
	// doubles with each further receive, up to RetryCap.
	RetryBase = time.Minute
	RetryCap  = 15 * time.Minute
	// maxQuotaWait stays under SQS's 12-hour visibility limit.
	maxQuotaWait = 11 * time.Hour
	minQuotaWait = 15 * time.Minute
	// leaseSlack is added to the wait for another worker's lease: clock
	// skew between workers and the table.
	leaseSlack = 5 * time.Second
)

// RetryDelay is the delay after a job's receives-th receive failed
// transiently: RetryBase doubled per receive up to RetryCap, plus up to 10%
// so that a burst of failures does not return as a burst.
func RetryDelay(receives int) time.Duration {
	return backoff.Add(backoff.Exp(RetryBase, RetryCap, receives), 0.1)
}

// QuotaDelay is the delay after WeChat's daily quota ran out (45009): until
// the quota day turns (midnight Beijing time), at least 15 minutes, plus up
// to 15 minutes so that the jobs held back do not all return at midnight;
// at most 11 hours.
func QuotaDelay(now time.Time) time.Duration {
	d := max(wechat.QuotaDayEnd(now).Sub(now), minQuotaWait) + backoff.Full(minQuotaWait)
	return min(d, maxQuotaWait)
}

// leaseDelay is the delay while another worker holds the job: until its
// lease ends.
func leaseDelay(until, now time.Time) time.Duration {
	return max(until.Sub(now), 0) + leaseSlack
}
