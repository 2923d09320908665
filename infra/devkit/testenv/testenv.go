// Package testenv is the environment the function tests share: a WeChat
// sandbox served over HTTP with the development apps, the test's own
// table, the configuration secret with the apps' credentials and
// wxbridge's keys, token secrets filled as the token-refresher fills them,
// queues by their template.yaml logical IDs, log and metric capture, and
// the awsenv.Env a function's FromEnv reads in Lambda, resolved from
// template.yaml. Everything AWS is moto (infra/devkit/awstest), so the
// test binary's TestMain must call awstest.Main.
//
//	func TestMain(m *testing.M) { awstest.Main(m) }
//
//	e := testenv.New(t)
//	h, err := handler.FromEnv(ctx, e.FunctionEnv("FollowerSyncFunction"))
package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// What the configuration secret New writes holds besides the sandbox's
// apps, unless Configure changes it: wxbridge's session-signing key and
// the business binding key (both at least config.MinKeyLength bytes), and
// the server-push Token and EncodingAESKey of the OA console.
const (
	SigningKey     = "testenv-session-signing-key-0123456789abcdef"
	BindKey        = "testenv-business-bind-key-0123456789abcdef"
	PushToken      = "wxbridgepushtoken"
	EncodingAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// Env is one test's environment. Its resources are deleted when the test
// ends.
type Env struct {
	// Sandbox plays api.weixin.qq.com and open.weixin.qq.com at URL, served
	// by Server.
	Sandbox *sandbox.Sandbox
	Server  *httptest.Server
	URL     string
	// Table is the test's table (from template.yaml's Table); DB reaches it
	// with every request counted by Counter.
	Table   string
	DB      *dynamodb.Client
	Counter *awstest.Counter
	SQS     *sqs.Client
	Secrets *secretsmanager.Client
	// Config is what the configuration secret ConfigSecret holds: the
	// sandbox's apps, SigningKey, BindKey, PushToken and EncodingAESKey.
	Config       config.Config
	ConfigSecret string
	// TokenSecrets maps the appid of each app to its token secret's ARN.
	// Those of the apps Tokens names (by default both) hold a token the
	// sandbox issued, as the token-refresher writes it; the others hold
	// "{}", as the stack creates them.
	TokenSecrets map[string]string
	// Tokens reads the token secrets on the sandbox's clock; WeChat calls
	// the sandbox with them.
	Tokens *tokens.Source
	WeChat *wechat.Client
	// Logs is where Logger and Metrics write, and FunctionEnv's functions.
	Logs *observe.Capture

	t      testing.TB
	mu     sync.Mutex
	queues map[string]string
	params map[string]string
}

// Option changes what New makes.
type Option func(*options)

type options struct {
	sandbox   []func(*sandbox.Config)
	configure []func(*config.Config)
	tokens    []string // appids
	tokensSet bool
	params    map[string]string
}

// Sandbox changes the sandbox's configuration before it starts.
func Sandbox(f func(*sandbox.Config)) Option {
	return func(o *options) { o.sandbox = append(o.sandbox, f) }
}

// Configure changes the configuration secret before it is written (an app
// left out, other keys).
func Configure(f func(*config.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, f) }
}

// Tokens names the apps whose token secrets New fills with a token from
// the sandbox; none leaves every token secret "{}", as a fresh deploy has
// them. Without this option, both apps get one.
func Tokens(appids ...string) Option {
	return func(o *options) { o.tokens, o.tokensSet = appids, true }
}

// Parameter sets a template parameter for FunctionEnv (H5Origins,
// PublicUrl, …); the others keep their defaults.
func Parameter(name, value string) Option {
	return func(o *options) {
		if o.params == nil {
			o.params = map[string]string{}
		}
		o.params[name] = value
	}
}

// New makes the environment for t.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	sbc := sandbox.DefaultConfig()
	for _, f := range o.sandbox {
		f(&sbc)
	}
	sb := sandbox.New(sbc)
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)

	cfg := config.Config{
		MiniProgram: config.App{AppID: sbc.MiniProgram.AppID, Secret: sbc.MiniProgram.Secret},
		OfficialAccount: config.OfficialAccount{
			App:   config.App{AppID: sbc.OfficialAccount.AppID, Secret: sbc.OfficialAccount.Secret},
			Token: PushToken, EncodingAESKey: EncodingAESKey,
		},
		SigningKey: SigningKey,
		BindKey:    BindKey,
	}
	for _, f := range o.configure {
		f(&cfg)
	}
	if !o.tokensSet {
		o.tokens = []string{sbc.MiniProgram.AppID, sbc.OfficialAccount.AppID}
	}

	counter := &awstest.Counter{}
	e := &Env{
		Sandbox:      sb,
		Server:       api,
		URL:          api.URL,
		Table:        awstest.Table(t),
		DB:           dynamodb.NewFromConfig(awstest.Config(counter)),
		Counter:      counter,
		SQS:          sqs.NewFromConfig(awstest.Config(nil)),
		Secrets:      secretsmanager.NewFromConfig(awstest.Config(nil)),
		Config:       cfg,
		ConfigSecret: awstest.Secret(t, cfg),
		TokenSecrets: map[string]string{},
		Logs:         &observe.Capture{},
		t:            t,
		queues:       map[string]string{},
		params:       o.params,
	}
	ctx := context.Background()
	now := sb.Clock().Now()
	for _, app := range []sandbox.App{sbc.MiniProgram, sbc.OfficialAccount} {
		if !slices.Contains(o.tokens, app.AppID) {
			e.TokenSecrets[app.AppID] = awstest.Secret(t, struct{}{})
			continue
		}
		tok, err := wechat.New(wechat.Options{APIBase: api.URL}).StableToken(ctx, app.AppID, app.Secret, false)
		if err != nil {
			t.Fatalf("testenv: token for %s: %v", app.AppID, err)
		}
		e.TokenSecrets[app.AppID] = awstest.Secret(t, tokens.Stored{AccessToken: tok.Token, ExpiresAt: now.Add(tok.ExpiresIn), RefreshedAt: now})
	}
	e.Tokens = tokens.NewSource(tokens.Options{Secrets: e.TokenSecrets, Reader: e.Secrets, Now: sb.Clock().Now})
	e.WeChat = wechat.New(wechat.Options{APIBase: api.URL, OpenBase: api.URL, Tokens: e.Tokens})
	return e
}

// Now is the time on the sandbox's clock.
func (e *Env) Now() time.Time { return e.Sandbox.Clock().Now() }

// Logger is a function's logger, writing to Logs.
func (e *Env) Logger(function string) *slog.Logger { return observe.Logger(e.Logs, function) }

// Metrics is a function's metrics, writing to Logs.
func (e *Env) Metrics(function string) *observe.Metrics { return observe.NewMetrics(e.Logs, function) }

// Queue is the URL of the test's queue for template.yaml's logicalID (with
// its dead-letter queue), made on first use.
func (e *Env) Queue(logicalID string) string {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if url, ok := e.queues[logicalID]; ok {
		return url
	}
	url := awstest.Queue(e.t, logicalID)
	e.queues[logicalID] = url
	return url
}

// tokenSecrets are template.yaml's token secrets and whose token each
// holds.
var tokenSecrets = map[string]func(config.Config) string{
	"MiniProgramTokenSecret":     func(c config.Config) string { return c.MiniProgram.AppID },
	"OfficialAccountTokenSecret": func(c config.Config) string { return c.OfficialAccount.AppID },
}

var (
	templateOnce sync.Once
	template     *cfn.Template
	templateErr  error
)

// FunctionEnv is the environment template.yaml gives function logicalID
// (such as "FollowerSyncFunction"), resolved to this test's resources as
// the devstack resolves it: !Ref of the table, the configuration and token
// secrets and the queues give the test's; of a function, its logical ID;
// of a parameter, its default or Parameter's value. WXB_WECHAT_API_BASE and
// WXB_WECHAT_OPEN_BASE point at the sandbox. vars, in name and value
// pairs, add or replace variables. Logs and metrics go to Logs; Lambda is
// nil (set it to let the function invoke others).
func (e *Env) FunctionEnv(logicalID string, vars ...string) awsenv.Env {
	e.t.Helper()
	templateOnce.Do(func() { template, templateErr = cfn.LoadNearest() })
	if templateErr != nil {
		e.t.Fatal(templateErr)
	}
	fns, err := template.Functions()
	if err != nil {
		e.t.Fatal(err)
	}
	i := slices.IndexFunc(fns, func(f cfn.Function) bool { return f.LogicalID == logicalID })
	if i < 0 {
		e.t.Fatalf("testenv: template.yaml has no function %s", logicalID)
	}
	out := map[string]string{"WXB_WECHAT_API_BASE": e.URL, "WXB_WECHAT_OPEN_BASE": e.URL}
	for name, v := range fns[i].Env {
		s, err := e.resolve(v)
		if err != nil {
			e.t.Fatalf("testenv: %s: %s: %v", logicalID, name, err)
		}
		out[name] = s
	}
	for k := 0; k+1 < len(vars); k += 2 {
		out[vars[k]] = vars[k+1]
	}
	return awsenv.Env{Vars: out, AWS: awstest.Config(nil), Out: e.Logs}
}

// resolve turns a template value into what it is for this test.
func (e *Env) resolve(v cfn.Value) (string, error) {
	switch {
	case v.GetAtt != "":
		return "", fmt.Errorf("!GetAtt %s is not supported in tests", v.GetAtt)
	case v.Ref == "":
		return v.Literal, nil
	}
	if p, ok := e.params[v.Ref]; ok {
		return p, nil
	}
	if appOf, ok := tokenSecrets[v.Ref]; ok {
		if arn, ok := e.TokenSecrets[appOf(e.Config)]; ok {
			return arn, nil
		}
		return "", fmt.Errorf("!Ref %s: no app configured for it", v.Ref)
	}
	switch v.Ref {
	case "Table":
		return e.Table, nil
	case "AppSecret":
		return e.ConfigSecret, nil
	}
	if p, ok := template.Parameters[v.Ref]; ok {
		return p.Default.Value, nil
	}
	res, ok := template.Resources[v.Ref]
	switch {
	case !ok:
		return "", fmt.Errorf("!Ref %s: not a resource or parameter of template.yaml", v.Ref)
	case res.Type == "AWS::SQS::Queue":
		return e.Queue(v.Ref), nil
	case res.Type == "AWS::Serverless::Function":
		return v.Ref, nil
	}
	return "", fmt.Errorf("!Ref %s: a %s is not made in tests", v.Ref, res.Type)
}

// AWS is the AWS configuration of the test's moto, for clients a test
// makes itself.
func (e *Env) AWS() aws.Config { return awstest.Config(nil) }
