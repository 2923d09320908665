package notify

import (
	"math/rand/v2"
	"time"
)

// Retry delays. SQS keeps a message invisible for at most 12 hours.
const (
	// RetryBase is the delay after a job's first transient failure; it
	// doubles with each further receive, up to RetryCap.
	RetryBase = time.Minute
	RetryCap  = 15 * time.Minute
	// maxQuotaWait stays under SQS's 12-hour visibility limit.
	maxQuotaWait = 11 * time.Hour
	minQuotaWait = 15 * time.Minute
)

// beijing is the zone of WeChat's quota day: quotas reset at midnight
// Beijing time (China has no daylight saving time).
var beijing = time.FixedZone("CST", 8*60*60)

// RetryDelay is how long a job stays invisible on the queue before its next
// attempt: after its receiveCount-th receive failed transiently, a delay
// that doubles per receive (with up to 10% jitter so that a burst of
// failures does not return as a burst); after a quota failure, until
// WeChat's quota day turns (midnight Beijing time, plus jitter), at least
// 15 minutes; while another worker holds the job, until its lease ends.
func RetryDelay(r Retry, receiveCount int, wait time.Duration, now time.Time) time.Duration {
	jitter := func(d time.Duration) time.Duration { return d + rand.N(d/10+1) }
	switch r {
	case RetrySoon:
		d := RetryBase
		for i := 1; i < receiveCount && d < RetryCap; i++ {
			d *= 2
		}
		return jitter(min(d, RetryCap))
	case RetryLater:
		local := now.In(beijing)
		midnight := time.Date(local.Year(), local.Month(), local.Day()+1, 0, 0, 0, 0, beijing)
		d := max(midnight.Sub(now), minQuotaWait) + rand.N(minQuotaWait)
		return min(d, maxQuotaWait)
	case RetryLease:
		return max(wait, 0) + 5*time.Second
	}
	return 0
}
