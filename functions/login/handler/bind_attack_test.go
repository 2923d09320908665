package handler

// Attacks on single-use bind tokens at login (issue 12, defect 2): users
// presenting one token at the same instant, the rightful user replaying it
// concurrently, forged and expired tokens, and DynamoDB failing between
// spending the token and linking.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/binding"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
)

// lockedWriter serializes the concurrent writes of the handler's logger
// and metrics (the env's buffer is for one request at a time).
type lockedWriter struct {
	mu sync.Mutex
	b  []byte
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	return len(p), nil
}

// concurrent makes e's handler safe to call from many goroutines.
func (e *env) concurrent() {
	w := &lockedWriter{}
	e.h.log, e.h.metrics = observe.Logger(w, "login"), observe.NewMetrics(w, "login")
}

// loginBody is a login request for p with a fresh wx.login code.
func (e *env) loginBody(t testing.TB, p sandbox.Person, tok string) string {
	t.Helper()
	code, err := e.sb.WXLogin(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{"code": code, "bind_token": tok})
	return string(b)
}

func TestAttackUsersPresentOneTokenAtTheSameInstant(t *testing.T) {
	for _, reveal := range []bool{true, false} {
		t.Run(map[bool]string{true: "unionid_known", false: "unionid_unknown"}[reveal], func(t *testing.T) {
			e := newEnv(t)
			e.concurrent()
			e.sb.SetRevealUnionID(reveal)
			tok, _ := binding.Sign(bindKey, "8812", time.Now().Add(10*time.Minute))
			people := make([]sandbox.Person, 6)
			bodies := make([]string, len(people))
			for i := range people {
				people[i] = e.sb.CreatePerson(sandbox.PersonSpec{})
				bodies[i] = e.loginBody(t, people[i], tok)
			}
			var bound atomic.Int32
			var winner atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range people {
				wg.Go(func() {
					<-start
					status, out, _ := e.call(t, "POST /mp/login", bodies[i], "")
					switch {
					case status == 200:
						bound.Add(1)
						winner.Store(int32(i))
					case status == 400 && out["error"] == "invalid_bind_token", status == 409:
					default:
						t.Errorf("login %d = %d %v", i, status, out)
					}
				})
			}
			close(start)
			wg.Wait()
			if bound.Load() != 1 {
				t.Fatalf("%d of %d users logged in with one bind token, want exactly 1", bound.Load(), len(people))
			}
			got, err := e.store.Lookup(context.Background(), identity.ExternalKey("8812"))
			if err != nil || got.MP[mpAppID].OpenID != people[winner.Load()].MPOpenID {
				t.Fatalf("8812 = %+v, %v; want the one user who logged in", got, err)
			}
		})
	}
}

var mpAppID = sandbox.DevMiniProgram.AppID

func TestAttackRightfulUserReplaysTokenConcurrently(t *testing.T) {
	e := newEnv(t)
	e.concurrent()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	tok, _ := binding.Sign(bindKey, "8812", time.Now().Add(10*time.Minute))
	bodies := make([]string, 5)
	for i := range bodies {
		bodies[i] = e.loginBody(t, p, tok)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	uids := make([]string, len(bodies))
	for i := range bodies {
		wg.Go(func() {
			<-start
			// A client retries a busy answer, as the 503's Retry-After asks.
			for range 5 {
				status, out, _ := e.call(t, "POST /mp/login", bodies[i], "")
				if status == 503 {
					time.Sleep(20 * time.Millisecond)
					bodies[i] = e.loginBody(t, p, tok)
					continue
				}
				if status != 200 {
					t.Errorf("replay %d = %d %v", i, status, out)
				}
				uids[i] = uidOf(out)
				return
			}
		})
	}
	close(start)
	wg.Wait()
	for _, u := range uids {
		if u != uids[0] || u == "" {
			t.Fatalf("the same user's logins made people %v", uids)
		}
	}
	if got, err := e.store.Lookup(context.Background(), identity.ExternalKey("8812")); err != nil || got.UID != uids[0] {
		t.Fatalf("8812 = %+v, %v", got, err)
	}
}

// TestAttackBadTokensCostNothing: forged, expired and malformed tokens are
// refused before the login code is spent, and write nothing.
func TestAttackBadTokensCostNothing(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	good, _ := binding.Sign(bindKey, "8812", time.Now().Add(10*time.Minute))
	expired, _ := binding.Sign(bindKey, "8812", time.Now().Add(-time.Second))
	other, _ := binding.Sign("someone-elses-bind-key-0123456789abcdef", "8812", time.Now().Add(10*time.Minute))
	code, _ := e.sb.WXLogin(p.ID)
	for name, tok := range map[string]string{
		"expired": expired, "other_key": other, "forged_mac": good[:len(good)-3] + "abc", "swapped_id": "9999" + good[4:],
		"garbage": "not-a-token", "huge": strings.Repeat("a.b.", 2<<10),
	} {
		body, _ := json.Marshal(map[string]string{"code": code, "bind_token": tok})
		if status, out, _ := e.call(t, "POST /mp/login", string(body), ""); status != 400 || out["error"] != "invalid_bind_token" {
			t.Fatalf("%s: %d %v, want 400 invalid_bind_token", name, status, out)
		}
	}
	if n := e.items(t); n != 0 {
		t.Fatalf("refused logins wrote %d items", n)
	}
	// The code was never spent: the user logs in with it.
	body, _ := json.Marshal(map[string]string{"code": code, "bind_token": good})
	if status, out, _ := e.call(t, "POST /mp/login", string(body), ""); status != 200 {
		t.Fatalf("login with the unspent code = %d %v", status, out)
	}
}

// TestAttackLinkFailsAfterTheTokenIsSpent: DynamoDB fails every link
// after the token was spent for the user. The login fails; the token stays
// the user's (a stranger cannot take it meanwhile) and the user's retry
// binds.
func TestAttackLinkFailsAfterTheTokenIsSpent(t *testing.T) {
	e := newEnv(t)
	proxy, cfg := e.faults(t)
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 5 * time.Millisecond })
	})
	e.h.people = identity.NewStore(db, e.table)
	e.h.uses = binding.NewUses(db, e.table)
	if _, err := proxy.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "TransactWriteItems", Error: awsfault.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	owner, stranger := e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{})
	tok, _ := binding.Sign(bindKey, "8812", time.Now().Add(10*time.Minute))
	if status, out, _ := e.call(t, "POST /mp/login", e.loginBody(t, owner, tok), ""); status != 503 {
		t.Fatalf("login while DynamoDB fails = %d %v, want 503", status, out)
	}
	proxy.Clear()
	if status, out, _ := e.call(t, "POST /mp/login", e.loginBody(t, stranger, tok), ""); status != 400 {
		t.Fatalf("a stranger with the owner's half-spent token = %d %v, want 400", status, out)
	}
	if status, out, _ := e.call(t, "POST /mp/login", e.loginBody(t, owner, tok), ""); status != 200 {
		t.Fatalf("the owner's retry = %d %v", status, out)
	}
	if got, err := e.store.Lookup(context.Background(), identity.ExternalKey("8812")); err != nil || got.UnionID != owner.UnionID {
		t.Fatalf("8812 = %+v, %v", got, err)
	}
	if _, err := e.store.Lookup(context.Background(), identity.MPKey(mpAppID, stranger.MPOpenID)); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("the refused stranger was written: %v", err)
	}
}
