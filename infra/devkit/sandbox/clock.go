package sandbox

import (
	"sync/atomic"
	"time"

	"wxbridge/shared/wechat"
)

// Clock is real time shifted by an adjustable offset, so that tests can jump
// past code lifetimes, token expiries and quota days without waiting. The
// zero value reads real time. It is safe for concurrent use.
type Clock struct {
	offset atomic.Int64 // nanoseconds added to time.Now
}

// NewClock returns a clock that starts at real time.
func NewClock() *Clock { return &Clock{} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// Advance moves the clock forward by d (backward if d is negative).
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// Set moves the clock so that Now returns t at this instant; it keeps running
// from there at the speed of real time.
func (c *Clock) Set(t time.Time) { c.offset.Store(int64(t.Sub(time.Now()))) }

// beijing is the zone of the platform's quota day: the one wxbridge's
// client reckons it in (wechat.Beijing), so that the two cannot disagree.
var beijing = wechat.Beijing

// platformDay names the quota day t falls in: daily quotas reset at midnight
// Beijing time.
func platformDay(t time.Time) string { return t.In(beijing).Format(time.DateOnly) }
