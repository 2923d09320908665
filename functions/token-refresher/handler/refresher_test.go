package handler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/functions/token-refresher/handler"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

func TestScheduledRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()

	t.Run("first_run_stores_a_token_per_app", func(t *testing.T) {
		before := e.sb.Clock().Now()
		res := e.run(e.h)
		for _, a := range []sandbox.App{mp, oa} {
			if got := outcomeOf(res, a.AppID); got != handler.OutcomeRefreshed {
				t.Fatalf("%s: outcome %q, want refreshed", a.AppID, got)
			}
			st := e.stored(a.AppID)
			if st.AccessToken == "" || st.Failure != nil {
				t.Fatalf("%s: stored %v failure %v", a.AppID, st, st.Failure)
			}
			// The expiry is counted from when the request was sent, never
			// later than the platform's.
			if d := st.ExpiresAt.Sub(before); d < 7199*time.Second || d > 7201*time.Second {
				t.Fatalf("%s: expires_at %s after the run started, want about 7200 s", a.AppID, d)
			}
			if c := e.sb.TokenCalls(a.AppID); c.Stable != 1 || c.Forced != 0 || c.Token != 0 {
				t.Fatalf("%s: token calls %+v, want one normal stable_token call", a.AppID, c)
			}
			// The stored token works.
			if _, err := e.client(e.source()).CallbackIPs(ctx, a.AppID); err != nil {
				t.Fatalf("%s: stored token does not work: %v", a.AppID, err)
			}
		}
	})
	first := e.stored(oa.AppID)

	t.Run("a_fresh_token_costs_no_call", func(t *testing.T) {
		for range 3 {
			e.sb.Clock().Advance(5 * time.Minute)
			if got := outcomeOf(e.run(e.h), oa.AppID); got != handler.OutcomeFresh {
				t.Fatalf("outcome %q, want fresh", got)
			}
		}
		if c := e.sb.TokenCalls(oa.AppID); c.Total() != 1 {
			t.Fatalf("token calls %+v, want still 1", c)
		}
	})

	t.Run("inside_the_rollover_a_new_token_replaces_the_old", func(t *testing.T) {
		e.advanceTo(oa.AppID, 4*time.Minute)
		if got := outcomeOf(e.run(e.h), oa.AppID); got != handler.OutcomeRefreshed {
			t.Fatalf("outcome %q, want refreshed", got)
		}
		st := e.stored(oa.AppID)
		if st.AccessToken == first.AccessToken || !st.ExpiresAt.After(first.ExpiresAt) {
			t.Fatal("the token was not replaced by a newer one")
		}
		if c := e.sb.TokenCalls(oa.AppID); c.Stable != 2 {
			t.Fatalf("token calls %+v, want 2 normal calls", c)
		}
	})

	t.Run("just_before_the_rollover_the_run_waits_and_calls_once", func(t *testing.T) {
		var slept time.Duration
		h := e.handler(func(o *handler.Options) {
			o.Apps = e.apps[1:] // the OA only: one sleeper
			o.Sleep = func(ctx context.Context, d time.Duration) error {
				slept += d
				e.sb.Clock().Advance(d)
				return nil
			}
		})
		before := e.sb.TokenCalls(oa.AppID).Stable
		e.advanceTo(oa.AppID, 5*time.Minute+20*time.Second)
		if got := outcomeOf(e.run(h), oa.AppID); got != handler.OutcomeRefreshed {
			t.Fatalf("outcome %q, want refreshed", got)
		}
		if slept < 20*time.Second || slept > 24*time.Second {
			t.Fatalf("slept %s, want the 23 s to the call point", slept)
		}
		// One call, and it got a new token: the platform had rolled over.
		if c := e.sb.TokenCalls(oa.AppID); c.Stable != before+1 {
			t.Fatalf("stable calls %d, want %d", c.Stable, before+1)
		}
	})

	e.noTokensIn(first.AccessToken, e.stored(oa.AppID).AccessToken, e.stored(mp.AppID).AccessToken)
}

// Runs that overlap (the schedule firing while a forced refresh runs, or a
// slow run still going when the next fires) make one platform call between
// them: each takes the app's lease and reads the secret under it.
func TestOverlappingRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const instances = 8
	hs := make([]*handler.Handler, instances)
	for i := range hs {
		hs[i] = e.handler()
	}
	overlap := func(req tokens.RefreshRequest) map[string]int {
		outcomes := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, h := range hs {
			wg.Go(func() {
				<-start
				res, _ := h.Handle(context.Background(), req)
				mu.Lock()
				outcomes[outcomeOf(res, oa.AppID)]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		return outcomes
	}

	t.Run("no_token_yet", func(t *testing.T) {
		got := overlap(tokens.RefreshRequest{})
		if c := e.sb.TokenCalls(oa.AppID); c.Stable != 1 {
			t.Fatalf("stable_token calls %d, want 1 (outcomes %v)", c.Stable, got)
		}
		if got[handler.OutcomeRefreshed] != 1 || got[handler.OutcomeRefreshed]+got[handler.OutcomeBusy]+got[handler.OutcomeFresh] != instances {
			t.Fatalf("outcomes %v, want one refreshed, the rest busy or fresh", got)
		}
	})
	t.Run("token_in_the_rollover", func(t *testing.T) {
		e.advanceTo(oa.AppID, 2*time.Minute)
		got := overlap(tokens.RefreshRequest{})
		if c := e.sb.TokenCalls(oa.AppID); c.Stable != 2 {
			t.Fatalf("stable_token calls %d, want 2 (outcomes %v)", c.Stable, got)
		}
	})
	t.Run("forced_refresh_requests_for_the_same_token", func(t *testing.T) {
		e.sb.Clock().Advance(10 * time.Minute)
		bad := e.stored(oa.AppID).AccessToken
		got := overlap(tokens.RefreshRequest{AppID: oa.AppID, Refused: tokens.Fingerprint(bad)})
		if c := e.sb.TokenCalls(oa.AppID); c.Forced != 1 {
			t.Fatalf("forced calls %d, want 1 (outcomes %v)", c.Forced, got)
		}
		// Forced requests wait for the lease instead of giving up, and then
		// find the token already replaced.
		if got[handler.OutcomeForced] != 1 || got[handler.OutcomeAlreadyReplaced] != instances-1 {
			t.Fatalf("outcomes %v, want one forced and the rest already_replaced", got)
		}
		if e.stored(oa.AppID).AccessToken == bad {
			t.Fatal("the refused token is still stored")
		}
	})
}

func TestForceBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	force := func(e *env, h *handler.Handler) handler.AppResult {
		t.Helper()
		res, _ := h.Handle(ctx, tokens.RefreshRequest{AppID: mp.AppID, Refused: tokens.Fingerprint(e.stored(mp.AppID).AccessToken)})
		return res.Apps[0]
	}

	t.Run("twenty_a_day_kept_across_instances", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// Midday Beijing time, so that the test's 11 minutes stay in one
		// platform day.
		e.sb.Clock().Set(time.Date(2026, 3, 2, 12, 0, 0, 0, wechat.Beijing))
		e.run(e.h)
		for i := range 20 {
			e.sb.Clock().Advance(31 * time.Second)
			// A new instance each time: the budget lives in the table.
			if r := force(e, e.handler()); r.Outcome != handler.OutcomeForced {
				t.Fatalf("force %d: %+v", i+1, r)
			}
		}
		e.sb.Clock().Advance(31 * time.Second)
		r := force(e, e.handler())
		if r.Outcome != handler.OutcomeForceRefused || !strings.Contains(r.Reason, "daily limit") {
			t.Fatalf("21st force: %+v, want force_refused by the daily limit", r)
		}
		// Refused by the ledger, not by the platform: no 21st call was made.
		if c := e.sb.TokenCalls(mp.AppID); c.Forced != 20 {
			t.Fatalf("forced calls %d, want 20", c.Forced)
		}
		if len(logLines(e.logs, `"alarm":"force_budget"`, mp.AppID)) != 1 || len(logLines(e.logs, `"TokenForceRefused":1`, `"reason":"daily"`)) != 1 {
			t.Fatalf("want one force_budget alarm line and one TokenForceRefused metric:\n%s", e.logs)
		}
		// The next platform day has a new budget.
		e.sb.Clock().Advance(24 * time.Hour)
		e.run(e.h) // the day-old token is long expired: a normal refresh
		if r := force(e, e.handler()); r.Outcome != handler.OutcomeForced {
			t.Fatalf("first force of the next day: %+v", r)
		}
	})

	t.Run("thirty_seconds_apart", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.run(e.h)
		if r := force(e, e.h); r.Outcome != handler.OutcomeForced {
			t.Fatalf("first force: %+v", r)
		}
		e.sb.Clock().Advance(10 * time.Second)
		r := force(e, e.handler())
		if r.Outcome != handler.OutcomeForceRefused || !strings.Contains(r.Reason, "30s apart") {
			t.Fatalf("force 10 s later: %+v, want force_refused by the spacing", r)
		}
		if c := e.sb.TokenCalls(mp.AppID); c.Forced != 1 {
			t.Fatalf("forced calls %d, want 1", c.Forced)
		}
		e.sb.Clock().Advance(21 * time.Second)
		if r := force(e, e.handler()); r.Outcome != handler.OutcomeForced {
			t.Fatalf("force 31 s after the first: %+v", r)
		}
	})

	t.Run("exhausted_budget_reaches_callers_as_a_token_error", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.sb.Clock().Set(time.Date(2026, 3, 2, 12, 0, 0, 0, wechat.Beijing)) // one platform day
		e.run(e.h)
		// The day's budget is spent, as 20 earlier incidents would have
		// spent it (twenty_a_day_kept_across_instances makes them).
		ledger := tokens.NewLedger(e.db, e.table, e.sb.Clock().Now)
		for range 20 {
			e.sb.Clock().Advance(31 * time.Second)
			if err := ledger.SpendForce(ctx, mp.AppID); err != nil {
				t.Fatal(err)
			}
		}
		e.sb.Clock().Advance(31 * time.Second)
		src := e.source(func(o *tokens.Options) { o.Wait = 300 * time.Millisecond })
		wc := e.client(src)
		if _, err := wc.CallbackIPs(ctx, mp.AppID); err != nil {
			t.Fatal(err)
		}
		// A 21st incident: the refresher is asked, refuses, and the caller
		// gets the platform's answer after the bounded wait.
		e.sb.RevokeTokens(mp.AppID)
		_, err := wc.CallbackIPs(ctx, mp.AppID)
		if wechat.ClassOf(err) != wechat.ClassToken {
			t.Fatalf("err %v (class %s), want the platform's token-class answer", err, wechat.ClassOf(err))
		}
		e.invoker.Wait()
		if reqs := e.invoker.Requests(); len(reqs) != 1 || reqs[0].Refused == "" {
			t.Fatalf("refresh requests %+v, want one forced request", reqs)
		}
		if c := e.sb.TokenCalls(mp.AppID); c.Forced != 0 {
			t.Fatalf("forced calls %d, want none beyond the budget", c.Forced)
		}
	})
}

// Configuration answers from the token endpoint are alarms, and a stored
// token that still works is kept.
func TestConfigurationAlarms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name  string
		code  int
		class wechat.Class
		setup func(e *env) // makes the token endpoint answer code for the OA
	}{
		{"ip_not_whitelisted_40164", 40164, wechat.ClassConfig, nil},
		{"ip_risk_89503", 89503, wechat.ClassConfig, nil},
		{"quota_45009", 45009, wechat.ClassQuota, nil},
		{"bad_appsecret_40125", 40125, wechat.ClassConfig, func(e *env) {
			// The AppSecret was reset in the console and not updated here.
			e.apps[1].Secret = strings.Repeat("0", 32)
			e.h = e.handler()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.run(e.h)
			good := e.stored(oa.AppID)
			if c.setup != nil {
				c.setup(e)
			} else if err := e.sb.SetTokenError(oa.AppID, c.code); err != nil {
				t.Fatal(err)
			}
			src := e.source()
			wc := e.client(src)

			// Inside the rollover, with two minutes left: the refresh fails,
			// the stored token stays and callers keep working.
			e.advanceTo(oa.AppID, 2*time.Minute)
			res, err := e.h.Handle(ctx, tokens.RefreshRequest{})
			if err == nil || outcomeOf(res, oa.AppID) != handler.OutcomeFailed {
				t.Fatalf("run: %+v, %v; want failed", res, err)
			}
			if st := e.stored(oa.AppID); st.AccessToken != good.AccessToken || !st.ExpiresAt.Equal(good.ExpiresAt) {
				t.Fatal("the still-valid token was not kept")
			} else if st.Failure == nil || st.Failure.ErrCode != c.code {
				t.Fatalf("failure recorded: %+v, want errcode %d", st.Failure, c.code)
			}
			if _, err := wc.CallbackIPs(ctx, oa.AppID); err != nil {
				t.Fatalf("call with the kept token: %v", err)
			}
			alarms := logLines(e.logs, `"alarm":"configuration"`, fmt.Sprintf(`"errcode":%d`, c.code))
			if len(alarms) != 1 || alarms[0]["rid"] == "" || alarms[0]["rid"] == nil || alarms[0]["level"] != "ERROR" {
				t.Fatalf("want one ERROR alarm line with a rid, got %v\n%s", alarms, e.logs)
			}
			if len(logLines(e.logs, `"TokenConfigAlarm":1`, fmt.Sprintf(`"errcode":"%d"`, c.code), `"CloudWatchMetrics"`)) != 1 {
				t.Fatalf("want one TokenConfigAlarm metric for %d:\n%s", c.code, e.logs)
			}

			// Past the expiry: callers get a clear error of the answer's
			// class, with the platform's errcode and rid.
			e.sb.Clock().Advance(3 * time.Minute)
			e.h.Handle(ctx, tokens.RefreshRequest{})
			_, err = wc.CallbackIPs(ctx, oa.AppID)
			var we *wechat.Error
			switch {
			case err == nil:
				t.Fatal("a call succeeded with an expired token")
			case wechat.ClassOf(err) != c.class:
				t.Fatalf("caller's error %v has class %s, want %s", err, wechat.ClassOf(err), c.class)
			case !errors.Is(err, tokens.ErrNoToken) || !errors.As(err, &we) || we.Code != c.code || we.RID == "":
				t.Fatalf("caller's error %v: want ErrNoToken carrying errcode %d and its rid", err, c.code)
			}
			if c := e.sb.Calls("/cgi-bin/getcallbackip"); c != 1 {
				t.Fatalf("getcallbackip calls %d: a caller without a usable token must not call the platform", c)
			}

			// Fixed: the next run refreshes and clears the failure.
			e.sb.SetTokenError(oa.AppID, 0)
			if c.setup != nil {
				e.apps[1].Secret = oa.Secret
				e.h = e.handler()
			}
			if got := outcomeOf(e.run(e.h), oa.AppID); got != handler.OutcomeRefreshed {
				t.Fatalf("after the fix: outcome %q", got)
			}
			if st := e.stored(oa.AppID); st.Failure != nil || !st.Usable(e.sb.Clock().Now()) {
				t.Fatalf("after the fix: %v, failure %+v", st, st.Failure)
			}
			e.sb.Clock().Advance(3 * time.Second) // past the Source's memory of "no token"
			if _, err := wc.CallbackIPs(ctx, oa.AppID); err != nil {
				t.Fatalf("after the fix: %v", err)
			}
			e.noTokensIn(good.AccessToken, e.stored(oa.AppID).AccessToken)
		})
	}
}

// A transient platform failure is logged but is not a configuration alarm.
func TestTransientFailureIsNotAnAlarm(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/stable_token", ErrCode: -1, Count: 2}); err != nil {
		t.Fatal(err)
	}
	res, err := e.h.Handle(context.Background(), tokens.RefreshRequest{})
	if err == nil || outcomeOf(res, mp.AppID) != handler.OutcomeFailed {
		t.Fatalf("run: %+v, %v", res, err)
	}
	if len(logLines(e.logs, `"alarm"`)) != 0 {
		t.Fatalf("a busy platform raised an alarm:\n%s", e.logs)
	}
	if st := e.stored(mp.AppID); st.Failure == nil || st.Failure.Class != "transient" {
		t.Fatalf("failure %+v, want a transient one recorded", st.Failure)
	}
	if got := outcomeOf(e.run(e.h), mp.AppID); got != handler.OutcomeRefreshed {
		t.Fatalf("next run: %q", got)
	}
}

func TestUnknownApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.h.Handle(context.Background(), tokens.RefreshRequest{AppID: "wx0000000000000000", Refused: "x"}); !errors.Is(err, handler.ErrUnknownApp) {
		t.Fatalf("err %v", err)
	}
	if c := e.sb.TokenCalls(mp.AppID).Total() + e.sb.TokenCalls(oa.AppID).Total(); c != 0 {
		t.Fatalf("%d token calls for an unknown app", c)
	}
}
