// Package testenv is the environment the function tests share: a WeChat
// sandbox served over HTTP with the development apps, the test's own
// table, the configuration secret with the apps' credentials and
// wxbridge's keys, token secrets filled as the token-refresher fills them,
// queues by their template.yaml logical IDs, log and metric capture, and
// the awsenv.Env a function's FromEnv reads in Lambda, resolved from
// template.yaml, whose AWS calls are held to the function's policy there
// (infra/devkit/iam). Everything AWS is moto (infra/devkit/awstest), so the
// test binary's TestMain must call awstest.Main.
//
//	func TestMain(m *testing.M) { awstest.Main(m) }
//
//	e := testenv.New(t)
//	h, err := handler.FromEnv(ctx, e.FunctionEnv("FollowerSyncFunction"))
//
// A test that builds a handler from its parts takes the function's clients
// from As, so that its calls are held to the same policy, and keeps DB,
// SQS and Secrets for its own setup and assertions.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
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
	"wxbridge/infra/devkit/iam"
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
	// TokenSecrets maps the appid of each app to its token secret: for the
	// default mini program and official account, an ARN; for the other
	// mini programs and official accounts Config has, the name
	// TokenSecretPrefix+appid. Those of the apps Tokens names (by default
	// all) hold a token the sandbox issued, as the token-refresher writes
	// it; the defaults' others hold "{}", as the stack creates them, and the
	// other apps' others do not exist yet, as before their first refresh.
	TokenSecrets map[string]string
	// TokenSecretPrefix is what the template's WXB_TOKEN_SECRET_PREFIX
	// (${AWS::StackName}/token/) resolves to: the test's own stack name
	// (Table's) and "/token/".
	TokenSecretPrefix string
	// Tokens reads the token secrets on the sandbox's clock; WeChat calls
	// the sandbox with them.
	Tokens *tokens.Source
	WeChat *wechat.Client
	// Logs is where Logger and Metrics write, and FunctionEnv's functions.
	Logs *observe.Capture

	t      testing.TB
	tpl    *cfn.Template
	policy *iam.Template   // tpl's policies, for the IAM check
	iam    *iam.Proxy      // started by the first FunctionAWS
	held   map[string]bool // the functions As made clients for
	mu     sync.Mutex
	queues map[string]string
	buses  map[string]string
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
	template  string // a template file instead of the repository's
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
// the sandbox; none leaves every token secret "{}" (or not yet made), as a
// fresh deploy has them. Without this option, every mini program and
// official account configured gets one.
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

// Template makes FunctionEnv and FunctionAWS read the template at path
// (a changed copy of template.yaml) instead of the repository's: its
// environments and its policies.
func Template(path string) Option {
	return func(o *options) { o.template = path }
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
		for appid := range tokens.SecretIDs(cfg, "", "", "-") {
			o.tokens = append(o.tokens, appid)
		}
	}

	tpl, policy := repositoryTemplate(t)
	if o.template != "" {
		var err error
		if tpl, err = cfn.Load(o.template); err != nil {
			t.Fatal(err)
		}
		if policy, err = iam.Load(o.template); err != nil {
			t.Fatal(err)
		}
	}
	counter := &awstest.Counter{}
	e := &Env{
		tpl:          tpl,
		policy:       policy,
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
		buses:        map[string]string{},
		held:         map[string]bool{},
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
	// The other apps' secrets are the token-refresher's to make, on their
	// first refresh; those Tokens names are made here as it makes them.
	e.TokenSecretPrefix = e.Table + "/token/"
	for appid, name := range tokens.SecretIDs(cfg, "", "", e.TokenSecretPrefix) {
		e.TokenSecrets[appid] = name
		t.Cleanup(func() {
			e.Secrets.DeleteSecret(context.Background(), &secretsmanager.DeleteSecretInput{SecretId: aws.String(name), ForceDeleteWithoutRecovery: aws.Bool(true)})
		})
		if !slices.Contains(o.tokens, appid) {
			continue
		}
		k, _ := cfg.KindOf(appid)
		app, _ := cfg.App(k, appid)
		tok, err := wechat.New(wechat.Options{APIBase: api.URL}).StableToken(ctx, appid, app.Secret, false)
		if err != nil {
			t.Fatalf("testenv: token for %s: %v", appid, err)
		}
		b, _ := json.Marshal(tokens.Stored{AccessToken: tok.Token, ExpiresAt: now.Add(tok.ExpiresIn), RefreshedAt: now})
		if _, err := e.Secrets.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(string(b))}); err != nil {
			t.Fatalf("testenv: token secret for %s: %v", appid, err)
		}
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
// its dead-letter queue), made on first use. A dead-letter queue of the
// template is the one its source queue redrives to, as in the stack, so
// that !Ref PushRetryDLQ and the retry queue's redrive target (and their
// ARNs, for the IAM check) agree.
func (e *Env) Queue(logicalID string) string {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queue(logicalID)
}

func (e *Env) queue(logicalID string) string {
	if url, ok := e.queues[logicalID]; ok {
		return url
	}
	for _, id := range e.tpl.ResourcesOf("AWS::SQS::Queue") {
		if def, err := e.tpl.Queue(id); err == nil && def.DeadLetter == logicalID {
			url := awstest.DeadLetterQueue(e.t, e.SQS, e.queue(id))
			e.queues[logicalID] = url
			return url
		}
	}
	url := awstest.Queue(e.t, logicalID)
	e.queues[logicalID] = url
	return url
}

// Bus is the name of the test's EventBridge bus for template.yaml's
// logicalID, made on first use.
func (e *Env) Bus(logicalID string) string {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if name, ok := e.buses[logicalID]; ok {
		return name
	}
	name := awstest.Bus(e.t, logicalID)
	e.buses[logicalID] = name
	return name
}

// tokenSecrets are template.yaml's token secrets and whose token each
// holds.
var tokenSecrets = map[string]func(config.Config) string{
	"MiniProgramTokenSecret":     func(c config.Config) string { a, _ := c.Default(config.KindMiniProgram); return a.AppID },
	"OfficialAccountTokenSecret": func(c config.Config) string { a, _ := c.Default(config.KindOfficialAccount); return a.AppID },
}

var (
	templateOnce sync.Once
	template     *cfn.Template
	policies     *iam.Template
	templateErr  error
)

// repositoryTemplate is template.yaml, read once per test binary.
func repositoryTemplate(t testing.TB) (*cfn.Template, *iam.Template) {
	t.Helper()
	templateOnce.Do(func() {
		if template, templateErr = cfn.LoadNearest(); templateErr == nil {
			policies, templateErr = iam.LoadNearest()
		}
	})
	if templateErr != nil {
		t.Fatal(templateErr)
	}
	return template, policies
}

// FunctionEnv is the environment template.yaml gives function logicalID
// (such as "FollowerSyncFunction"), resolved to this test's resources as
// the devstack resolves it: !Ref of the table, the configuration and token
// secrets and the queues give the test's; of a function, its logical ID;
// of a parameter, its default or Parameter's value. WXB_WECHAT_API_BASE and
// WXB_WECHAT_OPEN_BASE point at the sandbox. vars, in name and value
// pairs, add or replace variables. Logs and metrics go to Logs; Lambda is
// nil (set it to let the function invoke others). AWS is FunctionAWS's:
// every call the function makes is held to its policy in the template.
func (e *Env) FunctionEnv(logicalID string, vars ...string) awsenv.Env {
	e.t.Helper()
	fns, err := e.tpl.Functions()
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
	return awsenv.Env{Vars: out, AWS: e.FunctionAWS(logicalID), Out: e.Logs}
}

// FunctionAWS is the AWS configuration of function logicalID: its calls go
// through the test's IAM check (infra/devkit/iam) as that function, so a
// call its policy in the template does not allow fails with
// AccessDeniedException, as in AWS. The policy's references resolve to
// this test's resources (made on first use, as FunctionEnv's).
func (e *Env) FunctionAWS(logicalID string) aws.Config {
	e.t.Helper()
	p := e.IAM()
	if err := p.Checker().Admit(logicalID); err != nil {
		e.t.Fatalf("testenv: IAM policy of %s: %v", logicalID, err)
	}
	return p.Config(awstest.Config(nil), logicalID)
}

// Clients are one function's AWS clients in a test, signed as that
// function (FunctionAWS): a handler a test builds from them, rather than
// from FunctionEnv, is held to the function's policy all the same, while
// the Env's own DB, SQS, Secrets and Tokens, for the test's setup and
// assertions, stay unchecked.
type Clients struct {
	AWS aws.Config
	// DB's requests are counted by the Env's Counter, as DB's are.
	DB      *dynamodb.Client
	SQS     *sqs.Client
	Secrets *secretsmanager.Client
	// Tokens reads the token secrets through Secrets, on the sandbox's
	// clock, and asks for no refresh; WeChat calls the sandbox with them.
	Tokens *tokens.Source
	WeChat *wechat.Client
}

// As is the Clients of function logicalID (such as "SendWorkerFunction").
// Any of the function's calls the check denies fails the test when it
// ends, even one the code under test swallowed (a best-effort write); a
// test that expects a denial uses FunctionAWS.
func (e *Env) As(logicalID string) Clients {
	e.t.Helper()
	cfg := e.FunctionAWS(logicalID)
	e.mu.Lock()
	first := !e.held[logicalID]
	e.held[logicalID] = true
	e.mu.Unlock()
	if first {
		e.t.Cleanup(func() {
			for _, d := range e.IAM().Denials() {
				if d.Function == logicalID {
					e.t.Errorf("testenv: the IAM check denied %s: %s", d.Operation, d.Message)
				}
			}
		})
	}
	counted := cfg.Copy()
	counted.HTTPClient = &http.Client{Transport: e.Counter}
	c := Clients{
		AWS:     cfg,
		DB:      dynamodb.NewFromConfig(counted),
		SQS:     sqs.NewFromConfig(cfg),
		Secrets: secretsmanager.NewFromConfig(cfg),
	}
	c.Tokens = tokens.NewSource(tokens.Options{Secrets: e.TokenSecrets, Reader: c.Secrets, Now: e.Sandbox.Clock().Now})
	c.WeChat = wechat.New(wechat.Options{APIBase: e.URL, OpenBase: e.URL, Tokens: c.Tokens})
	return c
}

// IAM is the test's IAM check, started on first use: Denials lists the
// calls it refused. To make a function's calls fail on the wire as well,
// put an awsfault proxy in front of it:
//
//	faults := awsfault.ForTest(t, e.IAM().URL(), rules...)
//	env := e.FunctionEnv("SendWorkerFunction")
//	env.AWS = faults.Config(env.AWS)
func (e *Env) IAM() *iam.Proxy {
	e.t.Helper()
	e.mu.Lock()
	p := e.iam
	e.mu.Unlock()
	if p != nil {
		return p
	}
	ch := iam.New(e.policy, iam.Env{Region: awstest.Region, Ref: func(name string) (string, error) { return e.resolve(cfn.Value{Ref: name}) }})
	p, err := iam.Start(ch, iam.Options{Upstream: awstest.Endpoint()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.iam != nil { // another goroutine was first
		p.Close()
		return e.iam
	}
	e.iam = p
	return p
}

// resolve turns a template value into what it is for this test.
func (e *Env) resolve(v cfn.Value) (string, error) {
	switch {
	case v.Sub != "":
		return v.Expand(e.resolve)
	case v.GetAtt != "":
		return "", fmt.Errorf("!GetAtt %s is not supported in tests", v.GetAtt)
	case v.Ref == "":
		return v.Literal, nil
	}
	switch v.Ref {
	case "AWS::StackName":
		return e.Table, nil
	case "AWS::Region":
		return awstest.Region, nil
	case "AWS::Partition":
		return iam.Partition(awstest.Region), nil
	case "AWS::AccountId":
		return "123456789012", nil // moto's
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
	if p, ok := e.tpl.Parameters[v.Ref]; ok {
		return p.Default.Value, nil
	}
	res, ok := e.tpl.Resources[v.Ref]
	switch {
	case !ok:
		return "", fmt.Errorf("!Ref %s: not a resource or parameter of template.yaml", v.Ref)
	case res.Type == "AWS::SQS::Queue":
		return e.Queue(v.Ref), nil
	case res.Type == "AWS::Events::EventBus":
		return e.Bus(v.Ref), nil
	case res.Type == "AWS::Serverless::Function":
		return v.Ref, nil
	}
	return "", fmt.Errorf("!Ref %s: a %s is not made in tests", v.Ref, res.Type)
}

// AWS is the AWS configuration of the test's moto, for clients a test
// makes itself.
func (e *Env) AWS() aws.Config { return awstest.Config(nil) }
