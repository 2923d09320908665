package tokens

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	tok := "stored-token"
	stored := func(left time.Duration) Stored {
		return Stored{AccessToken: tok, ExpiresAt: now.Add(left)}
	}
	fp := Fingerprint(tok)
	cases := []struct {
		name    string
		st      Stored
		refused string
		act     Action
		wait    time.Duration
	}{
		{"nothing_stored_is_fetched", Stored{}, "", Refresh, 0},
		{"a_fresh_token_is_left_alone", stored(time.Hour), "", Keep, 0},
		{"before_the_wait_window_nothing_happens", stored(callAt + waitWindow + time.Second), "", Keep, 0},
		{"just_before_the_rollover_the_run_waits_for_it", stored(callAt + 20*time.Second), "", Wait, 20 * time.Second},
		{"at_the_window_edge_it_waits_the_whole_window", stored(callAt + waitWindow), "", Wait, waitWindow},
		{"inside_the_rollover_it_calls", stored(callAt), "", Refresh, 0},
		{"with_seconds_left_it_calls", stored(2 * time.Second), "", Refresh, 0},
		{"an_expired_token_is_replaced", stored(-time.Hour), "", Refresh, 0},
		{"a_refused_current_token_is_forced", stored(time.Hour), fp, Force, 0},
		{"a_refused_token_already_replaced_is_not_forced", stored(time.Hour), Fingerprint("older"), Replaced, 0},
		{"a_refused_token_with_nothing_stored_is_not_forced", Stored{}, fp, Replaced, 0},
		{"a_refused_expiring_token_needs_no_force", stored(time.Minute), fp, Refresh, 0},
		{"a_refused_expired_token_needs_no_force", stored(-time.Minute), fp, Refresh, 0},
		{"a_refused_token_before_the_rollover_is_forced", stored(callAt + time.Second), fp, Force, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.st, c.refused, now)
			if d.Action != c.act || d.Wait != c.wait || d.Reason == "" {
				t.Fatalf("Decide = %+v, want action %d wait %s and a reason", d, c.act, c.wait)
			}
		})
	}
	// A run that has waited once calls instead of waiting again.
	if d := Decide(stored(callAt+time.Second), "", now).Waited(); d.Action != Refresh {
		t.Fatalf("after a wait: %+v, want Refresh", d)
	}
	if d := Decide(stored(time.Hour), "", now).Waited(); d.Action != Keep {
		t.Fatalf("Waited changed a Keep: %+v", d)
	}
}
