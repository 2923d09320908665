package handler

import (
	"encoding/json"
	"strings"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
	"wxbridge/shared/observe"
)

// metric counts the EMF lines of c for metric name whose dimensions have
// the given values (pairs of name, value).
func metric(c *observe.Capture, name string, dims ...string) int {
	n := 0
next:
	for _, l := range strings.Split(c.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m[name] == nil {
			continue
		}
		for i := 0; i+1 < len(dims); i += 2 {
			if m[dims[i]] != dims[i+1] {
				continue next
			}
		}
		n++
	}
	return n
}

// TestConfigErrorsAreRetriedThenCounted: an answer about the account's
// configuration (48001, the API not authorised; an IP whitelist) may pass
// once a person acts, so the job is retried, within MaxAttempts, and
// alarmed on; only then are the chunk's followers counted as failed, or
// the run failed for its listing.
func TestConfigErrorsAreRetriedThenCounted(t *testing.T) {
	t.Run("fixed_in_time_the_chunk_links", func(t *testing.T) {
		e := newEnv(t)
		e.syncer.ChunkSize = 10
		if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 10}); err != nil {
			t.Fatal(err)
		}
		e.start(t)
		page, _ := e.receive(t)
		e.handle(t, page)
		if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info/batchget", ErrCode: 48001, Count: 2}); err != nil {
			t.Fatal(err)
		}
		e.drain(t, 1)
		got := e.status(t)
		if got.Status != backfill.Done || got.Failed != 0 || got.Waiting != 10 || got.Retries != 2 || !strings.Contains(got.LastError, "48001") {
			t.Fatalf("run = %+v", got)
		}
		if r, a := metric(e.logs, "FollowerSyncRetries", "class", "config"), metric(e.logs, "FollowerSyncAlarm", "reason", "config"); r != 2 || a != 2 {
			t.Errorf("FollowerSyncRetries config %d, FollowerSyncAlarm config %d; want 2 and 2", r, a)
		}
	})
	t.Run("never_fixed_the_chunk_fails_after_max_attempts", func(t *testing.T) {
		e := newEnv(t)
		e.syncer.MaxAttempts = 3
		e.syncer.ChunkSize = 10
		if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 10}); err != nil {
			t.Fatal(err)
		}
		e.start(t)
		page, _ := e.receive(t)
		e.handle(t, page)
		if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info/batchget", ErrCode: 48001, Count: 100}); err != nil {
			t.Fatal(err)
		}
		e.drain(t, 1)
		got := e.status(t)
		if got.Status != backfill.Done || got.Failed != 10 || got.Retries != 2 {
			t.Fatalf("run = %+v", got)
		}
		if calls := e.sb.Calls("/cgi-bin/user/info/batchget"); calls != 3 {
			t.Errorf("%d batchget calls, want MaxAttempts 3", calls)
		}
		if a := metric(e.logs, "FollowerSyncAlarm", "reason", "config"); a != 3 {
			t.Errorf("FollowerSyncAlarm config %d, want 3 (two retries, the last failure)", a)
		}
	})
	t.Run("never_fixed_the_listing_fails_the_run", func(t *testing.T) {
		e := newEnv(t)
		e.syncer.MaxAttempts = 3
		e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 10})
		if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/get", ErrCode: 48001, Count: 100}); err != nil {
			t.Fatal(err)
		}
		e.start(t)
		e.drain(t, 1)
		got := e.status(t)
		if got.Status != backfill.Failed || got.Retries != 2 || !strings.Contains(got.LastError, "48001") {
			t.Fatalf("run = %+v", got)
		}
		if calls := e.sb.Calls("/cgi-bin/user/get"); calls != 3 {
			t.Errorf("%d user/get calls, want MaxAttempts 3", calls)
		}
	})
}
