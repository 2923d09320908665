package handler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/tokens"
)

// secretWithoutValue creates a token secret with no value at all (no
// AWSCURRENT version), as a stack could create it instead of "{}".
func (e *env) secretWithoutValue() string {
	e.t.Helper()
	out, err := e.sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String(awstest.Name(e.t, "wxb"))})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		e.sm.DeleteSecret(context.Background(), &secretsmanager.DeleteSecretInput{SecretId: out.ARN, ForceDeleteWithoutRecovery: aws.Bool(true)})
	})
	return *out.ARN
}

// A fresh deploy: the token secrets hold no token and the refresher's first
// scheduled run is up to 5 minutes away. The first WeChat calls of a
// function do not wait for it: the token source asks the refresher (this
// package's handler, behind the in-process invoker) once for all its
// callers, and they proceed within a second or two. No force budget is
// spent: the refresher makes one normal-mode stable_token call.
func TestFreshDeploy(t *testing.T) {
	for _, c := range []struct {
		name     string
		noValue  bool // the secret has no value rather than "{}"
		sources  int  // function processes
		perIndex int  // concurrent callers in each
	}{
		{"fifty_callers_in_one_process", false, 1, 50},
		{"secret_without_a_value", true, 1, 50},
		{"four_processes", false, 4, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			if c.noValue {
				e.secrets[oa.AppID] = e.secretWithoutValue()
				e.apps[1].TokenSecret = e.secrets[oa.AppID]
				e.h = e.handler()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			start := make(chan struct{})
			began := time.Now()
			for range c.sources {
				wc := e.client(e.source())
				for range c.perIndex {
					wg.Go(func() {
						<-start
						if _, err := wc.CallbackIPs(ctx, oa.AppID); err != nil {
							t.Errorf("first call: %v", err)
						}
					})
				}
			}
			close(start)
			wg.Wait()
			took := time.Since(began)
			e.invoker.Wait()
			if took > 2*time.Second {
				t.Errorf("the first calls took %s, want a couple of seconds at most", took)
			}
			reqs := e.invoker.Requests()
			if len(reqs) < 1 || len(reqs) > c.sources {
				t.Errorf("%d refresh requests from %d processes, want one per process at most", len(reqs), c.sources)
			}
			for _, r := range reqs {
				if r != (tokens.RefreshRequest{AppID: oa.AppID}) {
					t.Errorf("request %+v, want a plain run of the OA", r)
				}
			}
			if calls := e.sb.TokenCalls(oa.AppID); calls.Stable != 1 || calls.Forced != 0 || calls.Token != 0 {
				t.Errorf("token calls %+v, want one normal stable_token call", calls)
			}
			if calls := e.sb.TokenCalls(mp.AppID); calls.Total() != 0 {
				t.Errorf("mini program token calls %+v: only the app asked for is refreshed", calls)
			}
			if st := e.stored(oa.AppID); !st.Usable(e.sb.Clock().Now()) {
				t.Errorf("stored %v, want a usable token", st)
			}
			t.Logf("%d callers in %d processes: %d refresh requests, first calls done in %s", c.sources*c.perIndex, c.sources, len(reqs), took.Round(time.Millisecond))
			e.noTokensIn(e.stored(oa.AppID).AccessToken)
		})
	}
}
