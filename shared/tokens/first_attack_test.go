package tokens_test

// Attacks on "nothing waits for the first scheduled refresh" (issue 12):
// a fresh deploy, fifty callers in several function processes (token
// Sources) and several refresher instances, with the platform slow, or
// refusing the refresher's IP (40164).

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wxbridge/functions/token-refresher/handler"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// freshDeploy is a stack just deployed: token secrets holding "{}", and
// instances refresher environments that requests are spread over (as
// Lambda runs concurrent asynchronous invokes in separate environments).
type freshDeploy struct {
	te      *testenv.Env
	invoker *tokens.Local
	runs    atomic.Int32
}

func newFreshDeploy(t *testing.T, instances int) *freshDeploy {
	t.Helper()
	te := testenv.New(t, testenv.Tokens())
	d := &freshDeploy{te: te}
	var apps []handler.App
	for _, a := range []sandbox.App{sandbox.DevMiniProgram, sandbox.DevOfficialAccount} {
		apps = append(apps, handler.App{AppID: a.AppID, Secret: a.Secret, TokenSecret: te.TokenSecrets[a.AppID]})
	}
	var hs []*handler.Handler
	for range instances {
		h, err := handler.New(handler.Options{
			Apps: apps, WeChat: wechat.New(wechat.Options{APIBase: te.URL}), Secrets: te.Secrets, DB: te.DB, Table: te.Table,
			Now: te.Sandbox.Clock().Now, Log: te.Logger("token-refresher"), Metrics: te.Metrics("token-refresher"),
		})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	d.invoker = &tokens.Local{Run: func(ctx context.Context, req tokens.RefreshRequest) error {
		h := hs[int(d.runs.Add(1))%len(hs)]
		_, err := h.Handle(ctx, req)
		return err
	}}
	t.Cleanup(d.invoker.Wait)
	return d
}

// process is one function process: its own token Source and WeChat client.
func (d *freshDeploy) process() *wechat.Client {
	src := tokens.NewSource(tokens.Options{Secrets: d.te.TokenSecrets, Reader: d.te.Secrets, Refresher: d.invoker, Now: d.te.Sandbox.Clock().Now,
		Log: d.te.Logger("function")})
	return wechat.New(wechat.Options{APIBase: d.te.URL, Tokens: src})
}

// callAtOnce makes perProcess concurrent first calls in each of processes
// processes and returns their errors and how long the slowest took.
func (d *freshDeploy) callAtOnce(processes, perProcess int) ([]error, time.Duration) {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range processes {
		wc := d.process()
		for range perProcess {
			wg.Go(func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := wc.CallbackIPs(ctx, sandbox.DevOfficialAccount.AppID)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			})
		}
	}
	began := time.Now()
	close(start)
	wg.Wait()
	return errs, time.Since(began)
}

// TestAttackFirstTokenWithASlowPlatform: fifty first calls in five
// processes, three refresher environments, stable_token answering after
// 1.5 s: every call gets a token within a couple of seconds of it, and the
// platform is asked once, in normal mode.
func TestAttackFirstTokenWithASlowPlatform(t *testing.T) {
	d := newFreshDeploy(t, 3)
	if err := d.te.Sandbox.InjectFault(sandbox.Fault{Path: "/cgi-bin/stable_token", Latency: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	errs, took := d.callAtOnce(5, 10)
	d.invoker.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("a first call failed: %v", err)
		}
	}
	if took > 4*time.Second {
		t.Errorf("the first calls took %s with the platform at 1.5 s", took)
	}
	calls := d.te.Sandbox.TokenCalls(sandbox.DevOfficialAccount.AppID)
	if calls.Stable != 1 || calls.Forced != 0 || calls.Token != 0 {
		t.Fatalf("token calls %+v for %d refresh requests, want one normal stable_token call", calls, len(d.invoker.Requests()))
	}
	if n := len(d.invoker.Requests()); n > 5 {
		t.Errorf("%d refresh requests from 5 processes", n)
	}
	t.Logf("50 callers in 5 processes: %d refresh requests, done in %s", len(d.invoker.Requests()), took.Round(time.Millisecond))
}

// TestAttackFirstTokenRefusedForConfiguration: the refresher's IP is not
// whitelisted (40164, the usual first-deploy mistake). The callers learn
// it as a configuration error (class config, with the platform's
// errcode), quickly: the refresher records the failure within
// milliseconds, and waiting the whole refresh wait (5 s) for a token that
// cannot come only holds every push and send that long. Later callers get
// it at once, and the platform is not asked again and again.
func TestAttackFirstTokenRefusedForConfiguration(t *testing.T) {
	d := newFreshDeploy(t, 2)
	if err := d.te.Sandbox.SetTokenError(sandbox.DevOfficialAccount.AppID, 40164); err != nil {
		t.Fatal(err)
	}
	errs, took := d.callAtOnce(4, 10)
	for _, err := range errs {
		var we *wechat.Error
		if !errors.Is(err, tokens.ErrNoToken) || wechat.ClassOf(err) != wechat.ClassConfig || !errors.As(err, &we) || we.Code != 40164 {
			t.Fatalf("first call = %v (class %s), want no token, class config, errcode 40164", err, wechat.ClassOf(err))
		}
	}
	// Asked again at once: no new wait, no new platform call.
	began := time.Now()
	again, _ := d.callAtOnce(1, 5)
	for _, err := range again {
		if wechat.ClassOf(err) != wechat.ClassConfig {
			t.Fatalf("second call = %v", err)
		}
	}
	if t2 := time.Since(began); t2 > 500*time.Millisecond {
		t.Errorf("a call after the failure was known took %s", t2)
	}
	d.invoker.Wait()
	if calls := d.te.Sandbox.TokenCalls(sandbox.DevOfficialAccount.AppID); calls.Total() > 4 {
		t.Errorf("token calls %+v: the platform was asked over and over", calls)
	}
	if took > 2*time.Second {
		t.Fatalf("the first callers waited %s for a token the refresher had already failed to get (40164 recorded): want the configuration error within a second or two, not the whole %s wait", took.Round(time.Millisecond), tokens.DefaultWait)
	}
}
