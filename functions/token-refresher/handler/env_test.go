package handler_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/functions/token-refresher/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// Tests that hold the refresher to wall-clock bounds (TestFreshDeploy,
// TestRevokedWhileInUse) run alone; the others, each in an environment of
// its own and mostly waiting for moto, run in parallel (t.Parallel).
func TestMain(m *testing.M) { awstest.Main(m) }

var (
	mp = sandbox.DevMiniProgram
	oa = sandbox.DevOfficialAccount
)

// env is a refresher deployment in miniature: the sandbox, one table, one
// token secret per app in moto, and as many refresher "instances"
// (handlers) and function "processes" (token sources) as a test wants.
// The refresher's AWS calls are held to TokenRefresherFunction's policy,
// the processes' to SendWorkerFunction's (which reads both apps' tokens);
// db and sm are the test's, unchecked.
type env struct {
	t       testing.TB
	te      *testenv.Env
	sb      *sandbox.Sandbox
	url     string
	table   string
	db      *dynamodb.Client
	sm      *secretsmanager.Client
	secrets map[string]string // appid -> token secret ARN
	apps    []handler.App
	logs    *observe.Capture
	invoker *tokens.Local
	h       *handler.Handler
}

// logLines returns the JSON log and metric lines of c that contain every
// one of the given substrings.
func logLines(c *observe.Capture, subs ...string) []map[string]any {
	var out []map[string]any
next:
	for _, l := range strings.Split(c.String(), "\n") {
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				continue next
			}
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func newEnv(t testing.TB) *env {
	t.Helper()
	// The stack creates the token secrets holding "{}"; so do the tests.
	te := testenv.New(t, testenv.Tokens())
	e := &env{
		t:       t,
		te:      te,
		sb:      te.Sandbox,
		url:     te.URL,
		table:   te.Table,
		db:      te.DB,
		sm:      te.Secrets,
		secrets: te.TokenSecrets,
		logs:    te.Logs,
	}
	for _, a := range []sandbox.App{mp, oa} {
		e.apps = append(e.apps, handler.App{AppID: a.AppID, Secret: a.Secret, TokenSecret: e.secrets[a.AppID]})
	}
	e.h = e.handler()
	e.invoker = &tokens.Local{Run: func(ctx context.Context, req tokens.RefreshRequest) error {
		_, err := e.h.Handle(ctx, req)
		return err
	}}
	t.Cleanup(e.invoker.Wait)
	return e
}

// handler returns a new refresher instance over the same resources, as a
// second Lambda execution environment would be. Its policy is resolved
// anew, for a test that replaced a token secret (e.secrets is the
// testenv's).
func (e *env) handler(tweaks ...func(*handler.Options)) *handler.Handler {
	e.t.Helper()
	fn := e.te.As("TokenRefresherFunction")
	o := handler.Options{
		Apps:    e.apps,
		WeChat:  wechat.New(wechat.Options{APIBase: e.url}),
		Secrets: fn.Secrets,
		DB:      fn.DB,
		Table:   e.table,
		Now:     e.sb.Clock().Now,
		Log:     observe.Logger(e.logs, "token-refresher"),
		Metrics: observe.NewMetrics(e.logs, "token-refresher"),
	}
	for _, f := range tweaks {
		f(&o)
	}
	h, err := handler.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// source returns a token source as a function process has one.
func (e *env) source(tweaks ...func(*tokens.Options)) *tokens.Source {
	e.t.Helper()
	o := tokens.Options{
		Secrets:   e.secrets,
		Reader:    e.te.As("SendWorkerFunction").Secrets,
		Refresher: e.invoker,
		Now:       e.sb.Clock().Now,
		Log:       observe.Logger(e.logs, "function"),
	}
	for _, f := range tweaks {
		f(&o)
	}
	return tokens.NewSource(o)
}

func (e *env) client(src wechat.TokenSource) *wechat.Client {
	return wechat.New(wechat.Options{APIBase: e.url, Tokens: src})
}

// run is one scheduled run.
func (e *env) run(h *handler.Handler) handler.Result {
	e.t.Helper()
	res, _ := h.Handle(context.Background(), tokens.RefreshRequest{})
	return res
}

// stored reads an app's token secret.
func (e *env) stored(appid string) tokens.Stored {
	e.t.Helper()
	var st tokens.Stored
	if err := awsenv.SecretJSON(context.Background(), e.sm, e.secrets[appid], &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// advanceTo moves the sandbox clock until the stored token of appid has
// left to live.
func (e *env) advanceTo(appid string, left time.Duration) {
	e.t.Helper()
	st := e.stored(appid)
	if st.AccessToken == "" {
		e.t.Fatalf("%s: no token stored", appid)
	}
	e.sb.Clock().Advance(st.ExpiresAt.Sub(e.sb.Clock().Now()) - left)
}

func outcomeOf(res handler.Result, appid string) string {
	for _, a := range res.Apps {
		if a.AppID == appid {
			return a.Outcome
		}
	}
	return ""
}

// noTokensIn fails if any token the sandbox could have issued to the test
// shows up in the logs: every token stored in either secret over the test
// is checked by the caller passing it in.
func (e *env) noTokensIn(seen ...string) {
	e.t.Helper()
	logs := e.logs.String()
	for _, tok := range seen {
		if tok != "" && strings.Contains(logs, tok) {
			e.t.Fatalf("a token appears in the logs")
		}
	}
	for _, a := range []sandbox.App{mp, oa} {
		if strings.Contains(logs, a.Secret) {
			e.t.Fatalf("an AppSecret appears in the logs")
		}
	}
}
