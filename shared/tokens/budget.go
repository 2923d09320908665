package tokens

import (
	"fmt"
	"time"

	"wxbridge/shared/wechat"
)

// The force refresh's limits (getStableAccessToken: "强制刷新模式每天限用20次且需间隔30秒"),
// counted per platform quota day, which starts at midnight Beijing time.
const (
	ForcePerDay  = 20
	ForceSpacing = 30 * time.Second
)

// ForceBudget is one app's use of forced refreshes.
type ForceBudget struct {
	Day   string    // the quota day Count counts in, as a Beijing date
	Count int       // forced refreshes that day
	Last  time.Time // the latest one; zero if none
}

// BudgetError is a forced refresh the budget does not allow.
type BudgetError struct {
	Limit string // "daily" or "spacing"
	msg   string
}

func (e *BudgetError) Error() string { return e.msg }

// quotaDay names the platform's quota day that t falls in.
func quotaDay(t time.Time) string { return t.In(wechat.Beijing).Format(time.DateOnly) }

// Allow applies the platform's limits to a forced refresh at now: a
// *BudgetError when they say no.
func (b ForceBudget) Allow(now time.Time) error {
	if b.Day == quotaDay(now) && b.Count >= ForcePerDay {
		return &BudgetError{Limit: "daily", msg: fmt.Sprintf("%d forced refreshes today (platform day %s), the daily limit; it renews at %s",
			b.Count, b.Day, wechat.QuotaDayEnd(now).Format(time.RFC3339))}
	}
	if !b.Last.IsZero() {
		if since := now.Sub(b.Last); since < ForceSpacing {
			return &BudgetError{Limit: "spacing", msg: fmt.Sprintf("the previous forced refresh was %s ago; they must be %s apart",
				since.Round(time.Millisecond), ForceSpacing)}
		}
	}
	return nil
}

// Spend returns the budget after a forced refresh at now.
func (b ForceBudget) Spend(now time.Time) ForceBudget {
	if day := quotaDay(now); b.Day != day {
		b.Day, b.Count = day, 0
	}
	b.Count++
	b.Last = now
	return b
}
