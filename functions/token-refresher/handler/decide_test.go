package handler

import (
	"testing"
	"time"

	"wxbridge/shared/tokens"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	tok := "stored-token"
	stored := func(left time.Duration) tokens.Stored {
		return tokens.Stored{AccessToken: tok, ExpiresAt: now.Add(left)}
	}
	fp := tokens.Fingerprint(tok)
	cases := []struct {
		name    string
		st      tokens.Stored
		refused string
		act     action
		wait    time.Duration
		outcome string
	}{
		{"nothing_stored_is_fetched", tokens.Stored{}, "", actNormal, 0, ""},
		{"a_fresh_token_is_left_alone", stored(time.Hour), "", actNone, 0, OutcomeFresh},
		{"before_the_wait_window_nothing_happens", stored(callAt + waitWindow + time.Second), "", actNone, 0, OutcomeFresh},
		{"just_before_the_rollover_the_run_waits_for_it", stored(callAt + 20*time.Second), "", actWait, 20 * time.Second, ""},
		{"at_the_window_edge_it_waits_the_whole_window", stored(callAt + waitWindow), "", actWait, waitWindow, ""},
		{"inside_the_rollover_it_calls", stored(callAt), "", actNormal, 0, ""},
		{"with_seconds_left_it_calls", stored(2 * time.Second), "", actNormal, 0, ""},
		{"an_expired_token_is_replaced", stored(-time.Hour), "", actNormal, 0, ""},
		{"a_refused_current_token_is_forced", stored(time.Hour), fp, actForce, 0, ""},
		{"a_refused_token_already_replaced_is_not_forced", stored(time.Hour), tokens.Fingerprint("older"), actNone, 0, OutcomeAlreadyReplaced},
		{"a_refused_token_with_nothing_stored_is_not_forced", tokens.Stored{}, fp, actNone, 0, OutcomeAlreadyReplaced},
		{"a_refused_expiring_token_needs_no_force", stored(time.Minute), fp, actNormal, 0, ""},
		{"a_refused_expired_token_needs_no_force", stored(-time.Minute), fp, actNormal, 0, ""},
		{"a_refused_token_before_the_rollover_is_forced", stored(callAt + time.Second), fp, actForce, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := decide(c.st, c.refused, now)
			if d.act != c.act || d.wait != c.wait || d.outcome != c.outcome {
				t.Fatalf("decide = %+v, want act %d wait %s outcome %q", d, c.act, c.wait, c.outcome)
			}
		})
	}
}

func TestForceBudgetRule(t *testing.T) {
	// 23:59:50 in Beijing: the platform day changes 10 s later.
	now := time.Date(2026, 3, 2, 23, 59, 50, 0, beijing)
	var b forceBudget
	start := now.Add(-20 * time.Minute)
	for i := range forcePerDay {
		at := start.Add(time.Duration(i) * (forceSpacing + time.Second))
		if err := b.allow(at); err != nil {
			t.Fatalf("force %d refused: %v", i+1, err)
		}
		b = b.spend(at)
	}
	if err, ok := b.allow(now).(*budgetError); !ok || err.kind != "daily" {
		t.Fatalf("21st force today: %v, want the daily limit", b.allow(now))
	}
	if err := b.allow(now.Add(10 * time.Second)); err != nil {
		t.Fatalf("first force of the next platform day refused: %v", err)
	}
	b = b.spend(now.Add(10 * time.Second))
	if b.Count != 1 || b.Day != "2026-03-03" {
		t.Fatalf("after the day change: %+v", b)
	}
	if err, ok := b.allow(now.Add(39 * time.Second)).(*budgetError); !ok || err.kind != "spacing" {
		t.Fatalf("force 29 s after the previous: %v, want the spacing limit", b.allow(now.Add(39*time.Second)))
	}
	if err := b.allow(now.Add(40 * time.Second)); err != nil {
		t.Fatalf("force 30 s after the previous: %v", err)
	}
}
