package tokens_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const appid = "wx5a0dbe0c0de00002"

// outage is the Secrets Manager client's transport: it counts requests by
// operation (through awstest.Counter, to moto) and fails them all while
// down, the way a regional outage or a lost network path looks to the SDK.
type outage struct {
	awstest.Counter
	down   atomic.Bool
	failed atomic.Int64 // requests refused while down
}

func (o *outage) RoundTrip(r *http.Request) (*http.Response, error) {
	if o.down.Load() {
		o.failed.Add(1)
		return nil, errors.New("dial tcp: connect: connection refused (simulated outage)")
	}
	return o.Counter.RoundTrip(r)
}

// fixture is one token secret in moto and the clock the tokens live on.
type fixture struct {
	t      *testing.T
	clock  *sandbox.Clock
	secret string
	sm     *secretsmanager.Client // unaffected by the outage: the refresher's view
	net    *outage                // the Source's transport
	reader *secretsmanager.Client
	logs   strings.Builder
	mu     sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, clock: sandbox.NewClock(), net: &outage{}}
	f.secret = awstest.Secret(t, struct{}{})
	f.sm = secretsmanager.NewFromConfig(awstest.Config(nil))
	cfg := awstest.Config(nil)
	// One HTTP attempt per read: the tests count the Source's own reads
	// and its spacing of retries, not the SDK's.
	cfg.RetryMaxAttempts = 1
	cfg.HTTPClient = &http.Client{Transport: f.net}
	f.reader = secretsmanager.NewFromConfig(cfg)
	return f
}

func (f *fixture) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logs.Write(p)
}

// store writes the secret as the refresher would.
func (f *fixture) store(st tokens.Stored) {
	f.t.Helper()
	b, _ := jsonOf(st)
	if _, err := f.sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: aws.String(f.secret), SecretString: aws.String(b)}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) token(value string, left time.Duration) tokens.Stored {
	now := f.clock.Now()
	return tokens.Stored{AccessToken: value, ExpiresAt: now.Add(left), RefreshedAt: now}
}

func (f *fixture) source(inv tokens.Invoker, wait time.Duration) *tokens.Source {
	return tokens.NewSource(tokens.Options{
		Secrets:   map[string]string{appid: f.secret},
		Reader:    f.reader,
		Refresher: inv,
		Now:       f.clock.Now,
		Wait:      wait,
		Log:       observe.Logger(f, "test"),
	})
}

func (f *fixture) reads() int { return f.net.Counts()["GetSecretValue"] }

// concurrently runs n copies of fn at once and returns their results.
func concurrently(n int, fn func() (string, error)) ([]string, []error) {
	toks, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = fn()
		})
	}
	close(start)
	wg.Wait()
	return toks, errs
}

func TestTokenSharesReadsAndCaches(t *testing.T) {
	f := newFixture(t)
	f.store(f.token("token-one", 2*time.Hour))
	src := f.source(nil, 0)
	ctx := context.Background()

	toks, errs := concurrently(50, func() (string, error) { return src.Token(ctx, appid) })
	for i := range toks {
		if toks[i] != "token-one" || errs[i] != nil {
			t.Fatalf("caller %d: %q, %v", i, toks[i], errs[i])
		}
	}
	if n := f.reads(); n != 1 {
		t.Fatalf("50 concurrent first calls made %d secret reads, want 1", n)
	}
	f.clock.Advance(time.Hour)
	if tok, _ := src.Token(ctx, appid); tok != "token-one" || f.reads() != 0 {
		t.Fatal("a token with an hour left was read again")
	}
	// Two minutes before the expiry the cache is no longer trusted: the
	// refresher replaces tokens in their last five minutes.
	f.store(f.token("token-two", 2*time.Hour))
	f.clock.Advance(59 * time.Minute)
	toks, _ = concurrently(20, func() (string, error) { return src.Token(ctx, appid) })
	if toks[0] != "token-two" || toks[19] != "token-two" || f.reads() != 1 {
		t.Fatalf("near the expiry: got %q with %d reads, want the new token and one read", toks[0], f.reads())
	}
}

func TestTokenWithoutAUsableToken(t *testing.T) {
	ctx := context.Background()
	rid := "6569d9a4-1d2e0b2c-0f7e6a40"
	cases := []struct {
		name   string
		stored func(f *fixture) tokens.Stored
		class  wechat.Class
		code   int
	}{
		{"nothing_stored_yet", func(*fixture) tokens.Stored { return tokens.Stored{} }, wechat.ClassTransient, 0},
		{"expired", func(f *fixture) tokens.Stored { return f.token("old", -time.Minute) }, wechat.ClassTransient, 0},
		{"expired_after_40164", func(f *fixture) tokens.Stored {
			st := f.token("old", -time.Minute)
			st.Failure = &tokens.Failure{At: f.clock.Now(), API: "/cgi-bin/stable_token", ErrCode: 40164, ErrMsg: "invalid ip, not in whitelist", RID: rid, Class: "config"}
			return st
		}, wechat.ClassConfig, 40164},
		{"nothing_stored_after_45009", func(f *fixture) tokens.Stored {
			return tokens.Stored{Failure: &tokens.Failure{At: f.clock.Now(), API: "/cgi-bin/stable_token", ErrCode: 45009, RID: rid, Class: "quota"}}
		}, wechat.ClassQuota, 45009},
		{"a_valid_token_ignores_an_old_failure", func(f *fixture) tokens.Stored {
			st := f.token("fine", time.Hour)
			st.Failure = &tokens.Failure{ErrCode: 40164, Class: "config"}
			return st
		}, wechat.ClassUnknown, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.store(c.stored(f))
			src := f.source(nil, 0)
			tok, err := src.Token(ctx, appid)
			if c.class == wechat.ClassUnknown {
				if tok != "fine" || err != nil {
					t.Fatalf("%q, %v", tok, err)
				}
				return
			}
			if tok != "" || !errors.Is(err, tokens.ErrNoToken) || wechat.ClassOf(err) != c.class {
				t.Fatalf("%q, %v (class %s), want ErrNoToken of class %s", tok, err, wechat.ClassOf(err), c.class)
			}
			var we *wechat.Error
			if c.code != 0 && (!errors.As(err, &we) || we.Code != c.code || we.RID != rid) {
				t.Fatalf("%v: want the recorded errcode %d and rid", err, c.code)
			}
			// A burst of calls does not become a burst of reads.
			f.reads()
			for range 10 {
				src.Token(ctx, appid)
			}
			if n := f.reads(); n != 0 {
				t.Fatalf("%d reads for 10 calls within 2 s of a failed one", n)
			}
		})
	}
	t.Run("unknown_app", func(t *testing.T) {
		src := newFixture(t).source(nil, 0)
		if _, err := src.Token(ctx, "wx0000000000000000"); !errors.Is(err, tokens.ErrUnknownApp) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestSecretsManagerOutage(t *testing.T) {
	f := newFixture(t)
	f.store(f.token("tok-cached-7f3a", 2*time.Hour))
	src := f.source(nil, 0)
	ctx := context.Background()
	if tok, err := src.Token(ctx, appid); tok != "tok-cached-7f3a" || err != nil {
		t.Fatal(tok, err)
	}

	f.net.down.Store(true)
	// Past the point where the cache would be re-read: the read fails, and
	// the cached token, still valid, keeps being used.
	f.clock.Advance(2*time.Hour - 90*time.Second)
	for i := range 30 {
		tok, err := src.Token(ctx, appid)
		if tok != "tok-cached-7f3a" || err != nil {
			t.Fatalf("call %d during the outage: %q, %v", i, tok, err)
		}
		f.clock.Advance(time.Second)
	}
	// Failed reads are retried every 15 s, not on every call.
	if n := f.net.failed.Load(); n < 2 || n > 3 {
		t.Fatalf("%d read attempts in 30 s of calls, want 2 or 3", n)
	}
	if !strings.Contains(f.logs.String(), "token secret unreadable") {
		t.Fatal("the outage was not logged")
	}

	// Once the cached token expires there is nothing to hand out.
	f.clock.Advance(time.Minute)
	_, err := src.Token(ctx, appid)
	if !errors.Is(err, tokens.ErrNoToken) || wechat.ClassOf(err) != wechat.ClassTransient {
		t.Fatalf("after the expiry: %v (class %s), want a transient ErrNoToken", err, wechat.ClassOf(err))
	}

	// The outage ends; the refresher stored a new token meanwhile.
	f.store(f.token("tok-after-91c2", 2*time.Hour))
	f.net.down.Store(false)
	f.clock.Advance(3 * time.Second)
	if tok, err := src.Token(ctx, appid); tok != "tok-after-91c2" || err != nil {
		t.Fatalf("after the outage: %q, %v", tok, err)
	}
	if strings.Contains(f.logs.String(), "tok-cached-7f3a") || strings.Contains(f.logs.String(), "tok-after-91c2") {
		t.Fatal("a token appears in the logs")
	}
}

// A stand-in refresher: it stores the given token a little later, the
// effect the real one has (functions/token-refresher covers the real one
// end to end, including with this Source).
func refresherStoring(f *fixture, tok string, delay time.Duration) *tokens.Local {
	return &tokens.Local{Run: func(ctx context.Context, req tokens.RefreshRequest) error {
		time.Sleep(delay)
		if tok != "" {
			f.store(f.token(tok, 2*time.Hour))
		}
		return nil
	}}
}

func TestRefused(t *testing.T) {
	ctx := context.Background()

	t.Run("a_changed_secret_is_used_without_asking_the_refresher", func(t *testing.T) {
		f := newFixture(t)
		f.store(f.token("old", 2*time.Hour))
		inv := refresherStoring(f, "", 0)
		src := f.source(inv, time.Second)
		src.Token(ctx, appid)
		f.store(f.token("new", 2*time.Hour)) // another process's refused token got it replaced
		if tok, err := src.Refused(ctx, appid, "old"); tok != "new" || err != nil {
			t.Fatalf("%q, %v", tok, err)
		}
		if tok, _ := src.Token(ctx, appid); tok != "new" {
			t.Fatalf("Token after the refusal: %q", tok)
		}
		if n := len(inv.Requests()); n != 0 {
			t.Fatalf("%d refresh requests, want none", n)
		}
	})

	t.Run("an_unchanged_secret_asks_once_for_everyone_and_waits", func(t *testing.T) {
		f := newFixture(t)
		f.store(f.token("bad", 2*time.Hour))
		inv := refresherStoring(f, "forced", 150*time.Millisecond)
		src := f.source(inv, 5*time.Second)
		src.Token(ctx, appid)
		toks, errs := concurrently(30, func() (string, error) { return src.Refused(ctx, appid, "bad") })
		for i := range toks {
			if toks[i] != "forced" || errs[i] != nil {
				t.Fatalf("caller %d: %q, %v", i, toks[i], errs[i])
			}
		}
		inv.Wait()
		reqs := inv.Requests()
		if len(reqs) != 1 || reqs[0] != (tokens.RefreshRequest{AppID: appid, Refused: tokens.Fingerprint("bad")}) {
			t.Fatalf("requests %+v, want one naming the bad token's fingerprint", reqs)
		}
		// Late reports of the same token get the new one at once.
		if tok, _ := src.Refused(ctx, appid, "bad"); tok != "forced" || len(inv.Requests()) != 1 {
			t.Fatalf("late report: %q, %d requests", tok, len(inv.Requests()))
		}
	})

	t.Run("an_expired_replacement_asks_for_a_normal_run", func(t *testing.T) {
		f := newFixture(t)
		f.store(f.token("bad", 2*time.Hour))
		inv := refresherStoring(f, "renewed", 50*time.Millisecond)
		src := f.source(inv, 5*time.Second)
		src.Token(ctx, appid)
		f.store(f.token("stale", -time.Second)) // replaced, but by an expired one
		if tok, err := src.Refused(ctx, appid, "bad"); tok != "renewed" || err != nil {
			t.Fatalf("%q, %v", tok, err)
		}
		inv.Wait()
		if reqs := inv.Requests(); len(reqs) != 1 || reqs[0].Refused != "" {
			t.Fatalf("requests %+v, want one plain run for the app", reqs)
		}
	})

	t.Run("no_replacement_in_time", func(t *testing.T) {
		f := newFixture(t)
		f.store(f.token("bad", 2*time.Hour))
		inv := refresherStoring(f, "", 0) // the budget is spent: nothing happens
		src := f.source(inv, 400*time.Millisecond)
		src.Token(ctx, appid)
		began := time.Now()
		if _, err := src.Refused(ctx, appid, "bad"); err == nil {
			t.Fatal("want an error")
		}
		if waited := time.Since(began); waited < 350*time.Millisecond || waited > 2*time.Second {
			t.Fatalf("waited %s, want about the 400 ms bound", waited)
		}
		// Within 30 s the same report fails at once and asks nobody.
		began = time.Now()
		if _, err := src.Refused(ctx, appid, "bad"); err == nil || time.Since(began) > 100*time.Millisecond {
			t.Fatalf("repeat report: %v after %s", err, time.Since(began))
		}
		inv.Wait()
		if n := len(inv.Requests()); n != 1 {
			t.Fatalf("%d requests, want 1", n)
		}
		// Later, it tries again.
		f.clock.Advance(31 * time.Second)
		src.Refused(ctx, appid, "bad")
		inv.Wait()
		if n := len(inv.Requests()); n != 2 {
			t.Fatalf("%d requests after 31 s, want 2", n)
		}
		if strings.Contains(f.logs.String(), `"bad"`) {
			t.Fatal("the refused token appears in the logs")
		}
	})

	t.Run("the_callers_deadline_bounds_its_wait", func(t *testing.T) {
		f := newFixture(t)
		f.store(f.token("bad", 2*time.Hour))
		src := f.source(refresherStoring(f, "", 0), 5*time.Second)
		src.Token(ctx, appid)
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		began := time.Now()
		if _, err := src.Refused(short, appid, "bad"); !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > time.Second {
			t.Fatalf("err %v after %s", err, time.Since(began))
		}
	})
}

// On a fresh deploy the secret holds no token until the refresher's first
// scheduled run, up to 5 minutes later. A Source that finds none asks the
// refresher for a run at once, one request for all its callers, and waits
// for the token within the caller's deadline.
func TestFirstToken(t *testing.T) {
	ctx := context.Background()

	for _, c := range []struct {
		name  string
		value *string // the secret's value at deploy; nil: none yet
	}{{"secret_created_by_the_stack", aws.String("{}")}, {"secret_without_a_value", nil}, {"placeholder", aws.String("placeholder")}} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.secret = rawSecret(t, c.value)
			inv := refresherStoring(f, "first", 150*time.Millisecond)
			src := f.source(inv, 5*time.Second)
			began := time.Now()
			toks, errs := concurrently(50, func() (string, error) { return src.Token(ctx, appid) })
			for i := range toks {
				if toks[i] != "first" || errs[i] != nil {
					t.Fatalf("caller %d: %q, %v", i, toks[i], errs[i])
				}
			}
			if took := time.Since(began); took > 2*time.Second {
				t.Fatalf("the first token took %s", took)
			}
			inv.Wait()
			if reqs := inv.Requests(); len(reqs) != 1 || reqs[0] != (tokens.RefreshRequest{AppID: appid}) {
				t.Fatalf("requests %+v, want one plain run for the app", reqs)
			}
			if tok, _ := src.Token(ctx, appid); tok != "first" || len(inv.Requests()) != 1 {
				t.Fatal("the token, once there, is used without asking again")
			}
		})
	}

	t.Run("a_refresher_that_does_not_deliver_is_asked_again_only_after_a_pause", func(t *testing.T) {
		f := newFixture(t)
		inv := refresherStoring(f, "", 0) // the platform refuses: nothing is stored
		src := f.source(inv, 300*time.Millisecond)
		began := time.Now()
		_, err := src.Token(ctx, appid)
		if !errors.Is(err, tokens.ErrNoToken) || wechat.ClassOf(err) != wechat.ClassTransient {
			t.Fatalf("err %v (class %s), want a transient ErrNoToken", err, wechat.ClassOf(err))
		}
		if waited := time.Since(began); waited < 250*time.Millisecond || waited > 2*time.Second {
			t.Fatalf("waited %s, want about the 300 ms bound", waited)
		}
		// Right after, callers fail at once and nobody is asked.
		f.clock.Advance(3 * time.Second) // past the 2 s memory of "no token": the secret is read again
		began = time.Now()
		if _, err := src.Token(ctx, appid); !errors.Is(err, tokens.ErrNoToken) || time.Since(began) > 200*time.Millisecond {
			t.Fatalf("repeat call: %v after %s", err, time.Since(began))
		}
		inv.Wait()
		if n := len(inv.Requests()); n != 1 {
			t.Fatalf("%d requests, want 1", n)
		}
		// Five seconds on, it asks again.
		f.clock.Advance(3 * time.Second)
		src.Token(ctx, appid)
		inv.Wait()
		if n := len(inv.Requests()); n != 2 {
			t.Fatalf("%d requests after 6 s, want 2", n)
		}
	})

	t.Run("the_callers_deadline_bounds_its_wait", func(t *testing.T) {
		f := newFixture(t)
		src := f.source(refresherStoring(f, "", 0), 5*time.Second)
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err := src.Token(short, appid)
		if !errors.Is(err, tokens.ErrNoToken) || !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > time.Second {
			t.Fatalf("err %v after %s, want ErrNoToken and the deadline", err, time.Since(began))
		}
	})

	// After an answer only a person can fix, asking again would only ask
	// the platform for the same refusal: callers get it at once.
	t.Run("a_recorded_configuration_failure_is_not_asked_again", func(t *testing.T) {
		f := newFixture(t)
		f.store(tokens.Stored{Failure: &tokens.Failure{At: f.clock.Now(), API: "/cgi-bin/stable_token", ErrCode: 40164, RID: "r-9", Class: "config"}})
		inv := refresherStoring(f, "never", 0)
		src := f.source(inv, 5*time.Second)
		began := time.Now()
		if _, err := src.Token(ctx, appid); wechat.ClassOf(err) != wechat.ClassConfig || time.Since(began) > time.Second {
			t.Fatalf("err %v (class %s) after %s, want the recorded 40164 at once", err, wechat.ClassOf(err), time.Since(began))
		}
		if n := len(inv.Requests()); n != 0 {
			t.Fatalf("%d requests, want none", n)
		}
	})

	// The refresher asked for a first token fails at once (40164): the
	// wait ends when the failure is recorded, not at its bound, and every
	// waiting caller gets that answer with the platform's rid.
	t.Run("a_failure_recorded_during_the_wait_ends_it", func(t *testing.T) {
		f := newFixture(t)
		inv := &tokens.Local{Run: func(context.Context, tokens.RefreshRequest) error {
			time.Sleep(50 * time.Millisecond)
			f.store(tokens.Stored{Failure: &tokens.Failure{At: f.clock.Now(), API: "/cgi-bin/stable_token", ErrCode: 40164, RID: "r-40164", Class: "config"}})
			return nil
		}}
		src := f.source(inv, 5*time.Second)
		began := time.Now()
		_, errs := concurrently(20, func() (string, error) { return src.Token(ctx, appid) })
		took := time.Since(began)
		for _, err := range errs {
			var we *wechat.Error
			if !errors.Is(err, tokens.ErrNoToken) || wechat.ClassOf(err) != wechat.ClassConfig || !errors.As(err, &we) || we.Code != 40164 || we.RID != "r-40164" {
				t.Fatalf("err %v (class %s), want the recorded 40164 with its rid", err, wechat.ClassOf(err))
			}
		}
		if took > time.Second {
			t.Fatalf("callers waited %s for a token the refresher had failed to get", took)
		}
		inv.Wait()
		if n := len(inv.Requests()); n != 1 {
			t.Fatalf("%d requests, want 1", n)
		}
		if logs := f.logs.String(); !strings.Contains(logs, `"outcome":"refresher_failed"`) || !strings.Contains(logs, `"rid":"r-40164"`) {
			t.Errorf("the failure that ended the wait was not logged with its rid: %s", logs)
		}
	})

	// Once the refresher has tried and failed, even transiently (-1), its
	// answer stands until the schedule's next run: otherwise every process
	// seeing it would have the platform asked again every few seconds.
	t.Run("a_recorded_transient_failure_is_not_asked_again", func(t *testing.T) {
		f := newFixture(t)
		f.store(tokens.Stored{Failure: &tokens.Failure{At: f.clock.Now(), API: "/cgi-bin/stable_token", ErrCode: -1, Class: "transient"}})
		inv := refresherStoring(f, "never", 0)
		src := f.source(inv, 5*time.Second)
		if _, err := src.Token(ctx, appid); wechat.ClassOf(err) != wechat.ClassTransient || !errors.Is(err, tokens.ErrNoToken) {
			t.Fatalf("err %v (class %s), want the recorded -1", err, wechat.ClassOf(err))
		}
		if n := len(inv.Requests()); n != 0 {
			t.Fatalf("%d requests, want none", n)
		}
	})

	// A token that expired with no failure recorded: the refresher has not
	// run for a while (its schedule is broken). It is asked.
	t.Run("an_expired_token_without_a_failure_is_asked_for", func(t *testing.T) {
		f := newFixture(t)
		f.store(f.token("old", -time.Minute))
		inv := refresherStoring(f, "renewed", 50*time.Millisecond)
		src := f.source(inv, 5*time.Second)
		if tok, err := src.Token(ctx, appid); tok != "renewed" || err != nil {
			t.Fatalf("%q, %v", tok, err)
		}
	})
}
