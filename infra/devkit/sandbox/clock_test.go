package sandbox

import (
	"sync"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	t.Run("starts_at_real_time", func(t *testing.T) {
		if d := time.Since(NewClock().Now()); d < 0 || d > time.Second {
			t.Errorf("new clock is %v off real time", d)
		}
	})
	t.Run("advance_moves_it_forward", func(t *testing.T) {
		c := NewClock()
		before := c.Now()
		c.Advance(5*time.Minute + time.Second)
		if d := c.Now().Sub(before); d < 5*time.Minute+time.Second || d > 5*time.Minute+2*time.Second {
			t.Errorf("advanced by %v", d)
		}
	})
	t.Run("set_jumps_and_keeps_running", func(t *testing.T) {
		c := NewClock()
		c.Set(morning)
		time.Sleep(10 * time.Millisecond)
		if d := c.Now().Sub(morning); d < 10*time.Millisecond || d > time.Second {
			t.Errorf("%v after Set, want about 10ms", d)
		}
	})
	t.Run("concurrent_advances_all_count", func(t *testing.T) {
		c := NewClock()
		c.Set(morning)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() { c.Advance(time.Hour); c.Now() })
		}
		wg.Wait()
		if d := c.Now().Sub(morning); d < 50*time.Hour || d > 50*time.Hour+time.Second {
			t.Errorf("after 50 concurrent one-hour advances the clock moved %v", d)
		}
	})
	t.Run("platform_day_turns_at_beijing_midnight", func(t *testing.T) {
		before := time.Date(2026, 3, 2, 15, 59, 59, 0, time.UTC) // 23:59:59 in Beijing
		after := before.Add(time.Second)
		if platformDay(before) != "2026-03-02" || platformDay(after) != "2026-03-03" {
			t.Errorf("days %s, %s", platformDay(before), platformDay(after))
		}
	})
}
