package tokens_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"

	"wxbridge/functions/token-refresher/handler"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// asyncLambda is the Lambda API for a function's FromEnv in a test: an
// asynchronous invoke of the token-refresher runs it in-process
// (tokens.Local), as moto cannot run functions without Docker.
type asyncLambda struct {
	t   *testing.T
	fn  string
	run *tokens.Local
}

func (l asyncLambda) Invoke(ctx context.Context, in *awslambda.InvokeInput, _ ...func(*awslambda.Options)) (*awslambda.InvokeOutput, error) {
	var req tokens.RefreshRequest
	if aws.ToString(in.FunctionName) != l.fn || in.InvocationType != "Event" || json.Unmarshal(in.Payload, &req) != nil {
		l.t.Errorf("invoke %s (%s) %s", aws.ToString(in.FunctionName), in.InvocationType, in.Payload)
	}
	return &awslambda.InvokeOutput{StatusCode: 202}, l.run.Request(ctx, req)
}

// A function reading the token of a mini program beyond the default, whose
// secret the refresher has not made yet, finds no token and asks the
// refresher; the refresher makes the secret and every caller gets the
// token. Source and refresher are built from the template's environment
// and held to its policies, so the secret's name, WXB_TOKEN_SECRET_PREFIX
// and the grants on it agree.
func TestFirstTokenOfAnotherApp(t *testing.T) {
	mp2 := sandbox.DevMiniProgram2
	te := testenv.New(t, testenv.Tokens(),
		testenv.Sandbox(func(c *sandbox.Config) {
			c.Apps = []sandbox.AppSpec{{Kind: sandbox.AppMiniProgram, App: mp2}}
		}),
		testenv.Configure(func(c *config.Config) {
			c.MiniPrograms = []config.App{{AppID: mp2.AppID, Secret: mp2.Secret}}
		}))
	ctx := context.Background()
	refresher, err := handler.FromEnv(ctx, te.FunctionEnv("TokenRefresherFunction"))
	if err != nil {
		t.Fatal(err)
	}
	run := &tokens.Local{Run: func(ctx context.Context, req tokens.RefreshRequest) error {
		_, err := refresher.Handle(ctx, req)
		return err
	}}
	t.Cleanup(run.Wait)
	env := te.FunctionEnv("SendWorkerFunction")
	env.Lambda = asyncLambda{t: t, fn: env.Get(tokens.EnvRefresher), run: run}
	src := tokens.FromEnv(env, te.Config, te.Logger("send-worker"), observe.NewMetrics(te.Logs, "send-worker"))

	toks, errs := concurrently(20, func() (string, error) { return src.Token(ctx, mp2.AppID) })
	for i := range toks {
		if toks[i] == "" || toks[i] != toks[0] || errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
	}
	run.Wait()
	if reqs := run.Requests(); len(reqs) != 1 || reqs[0] != (tokens.RefreshRequest{AppID: mp2.AppID}) {
		t.Fatalf("requests %+v, want one plain run of %s", reqs, mp2.AppID)
	}
	st, err := tokens.Load(ctx, te.Secrets, te.TokenSecretPrefix+mp2.AppID)
	if err != nil || st.AccessToken != toks[0] || !st.Usable(time.Now()) {
		t.Fatalf("%s%s: %v, %v", te.TokenSecretPrefix, mp2.AppID, st, err)
	}
	if c := te.Sandbox.TokenCalls(mp2.AppID); c.Stable != 1 || c.Total() != 1 {
		t.Fatalf("token calls %+v, want one normal stable_token call", c)
	}
	// The token works for its app, and the default mini program was left
	// alone (its secret still "{}": nobody asked for it).
	wc := wechat.New(wechat.Options{APIBase: te.URL, Tokens: src})
	if _, err := wc.CallbackIPs(ctx, mp2.AppID); err != nil {
		t.Fatal(err)
	}
	if c := te.Sandbox.TokenCalls(sandbox.DevMiniProgram.AppID); c.Total() != 0 {
		t.Fatalf("default mini program token calls %+v", c)
	}
}
