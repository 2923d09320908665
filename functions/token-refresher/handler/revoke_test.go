package handler_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"wxbridge/shared/tokens"
)

// goroutineKey tags a call's context with the goroutine making it.
type goroutineKey struct{}

// countingSource counts, per goroutine, how often the WeChat client had to
// report a refused token: once per call at most is the contract.
type countingSource struct {
	*tokens.Source
	mu      sync.Mutex
	refused map[int]int
}

func (c *countingSource) Refused(ctx context.Context, appid, token string) (string, error) {
	c.mu.Lock()
	c.refused[ctx.Value(goroutineKey{}).(int)]++
	c.mu.Unlock()
	return c.Source.Refused(ctx, appid, token)
}

// The token is revoked while 5 processes with 10 goroutines each use it:
// exactly one forced refresh happens, and every call succeeds, after at most
// one retry.
func TestRevokedWhileInUse(t *testing.T) {
	const processes, perProcess, callsAfter = 5, 10, 5
	e := newEnv(t)
	e.run(e.h)
	bad := e.stored(oa.AppID).AccessToken

	var (
		warm, done sync.WaitGroup
		revoked    atomic.Bool
		failures   atomic.Int64
		srcs       []*countingSource
	)
	warm.Add(processes * perProcess)
	for p := range processes {
		src := &countingSource{Source: e.source(), refused: map[int]int{}}
		srcs = append(srcs, src)
		wc := e.client(src)
		for g := range perProcess {
			ctx := context.WithValue(context.Background(), goroutineKey{}, g)
			done.Go(func() {
				after, first := 0, true
				for after < callsAfter {
					wasRevoked := revoked.Load()
					if _, err := wc.CallbackIPs(ctx, oa.AppID); err != nil {
						failures.Add(1)
						t.Errorf("process %d goroutine %d: %v", p, g, err)
					}
					if first {
						first = false
						warm.Done()
					}
					if wasRevoked {
						after++
					}
				}
			})
		}
	}
	warm.Wait() // every goroutine holds the token
	if n, _ := e.sb.RevokeTokens(oa.AppID); n == 0 {
		t.Fatal("nothing revoked")
	}
	revoked.Store(true)
	done.Wait()
	e.invoker.Wait()

	if c := e.sb.TokenCalls(oa.AppID); c.Forced != 1 || c.Stable != 1 {
		t.Fatalf("token calls %+v, want the first normal call and exactly one forced refresh", c)
	}
	if failures.Load() != 0 {
		t.Fatalf("%d calls failed", failures.Load())
	}
	total := 0
	for p, src := range srcs {
		for g, n := range src.refused {
			if n > 1 {
				t.Errorf("process %d goroutine %d reported a refused token %d times, want at most once", p, g, n)
			}
			total += n
		}
	}
	// Each process asks at most once for this token; the refresher forces
	// for the first request and finds the token replaced for the others.
	reqs := e.invoker.Requests()
	if len(reqs) == 0 || len(reqs) > processes {
		t.Fatalf("%d refresh requests, want 1 to %d", len(reqs), processes)
	}
	for _, r := range reqs {
		if r.AppID != oa.AppID || r.Refused != tokens.Fingerprint(bad) {
			t.Fatalf("request %+v, want the OA and the revoked token's fingerprint", r)
		}
	}
	if got := e.stored(oa.AppID).AccessToken; got == bad || got == "" {
		t.Fatal("the revoked token is still stored")
	}
	t.Logf("%d goroutines, %d refused-token reports, %d refresh requests, 1 forced refresh", processes*perProcess, total, len(reqs))
	e.noTokensIn(bad, e.stored(oa.AppID).AccessToken)
}
