package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/iam"
	"wxbridge/infra/devkit/moto"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/wechat/push"
)

// Config is how a devstack runs.
type Config struct {
	// Addr is the API and console listener: by default the host and port
	// of a PublicUrl on this machine, else 127.0.0.1:8080 (params.go).
	Addr        string
	SandboxAddr string    // the sandbox's listener; a free port by default
	AWSEndpoint string    // an AWS endpoint (moto) to use; "" starts moto
	PushMode    push.Mode // how the sandbox pushes; safe by default
	// Real, when set, is the real WeChat platform's credentials: no
	// sandbox is started and the functions talk to WeChat.
	Real *config.Config
	// Logs receives the functions' log lines (metrics left out).
	Logs io.Writer
	// Capture, when set, receives every line the functions write, metric
	// lines included (the tests read it).
	Capture io.Writer
	// Params are template parameter values, as sam deploy
	// --parameter-overrides gives them (make dev PARAMS=…): checked against
	// the template, then applied over its defaults and the devstack's own
	// PublicUrl and H5Origins. A PublicUrl with a path serves the API
	// under that path (params.go).
	Params map[string]string
	// wrap, when set, wraps each function's handler as it is built: the
	// benchmarks crash a function with it.
	wrap func(logicalID string, h lambda.Handler) lambda.Handler
	// name is the stack's name, which every local resource's name starts
	// with (CloudFormation's stack name, ${AWS::StackName}): wxbridge-dev
	// by default. Stacks of other names share one moto (the tests).
	name string
	// oneApp seeds the configuration secret in the old single-app shape
	// (one mini program, one official account) and plays only those two in
	// the sandbox, as a deployment from before multi-app configurations.
	oneApp bool
}

// stackName is the devstack's stack name (${AWS::StackName}): every local
// resource's name starts with it.
const stackName = "wxbridge-dev"

// Stack is a running devstack.
type Stack struct {
	cfg        Config
	aws        aws.Config
	tpl        *cfn.Template
	res        *resources
	apps       config.Config        // the configuration secret, normalized as the functions read it
	pushModes  map[string]push.Mode // each official account's push mode in the sandbox, by appid
	fns        *functions
	sb         *sandbox.Sandbox // nil with real WeChat
	tap        *logTap
	log        *slog.Logger
	APIURL     string
	SandboxURL string
	AWSURL     string
	// ConsoleOutcomeQueueURL is the console's own queue of every outcome
	// event (outcomes.go); "" when the template has no outcome bus.
	ConsoleOutcomeQueueURL string

	// URL is the listener's root, where the console (/_dev/) and the
	// Lambda Invoke API are; APIURL is URL and basePath (PublicUrl's
	// path), where the API's routes are.
	URL      string
	basePath string

	moto    *moto.Server
	faults  *awsfault.Proxy // the functions' way to AWS; see faults.go
	iam     *iam.Proxy      // in front of faults: each function's calls held to its policy; see iam.go
	view    *consoleView    // the console's ledger and outcome panels; see console.go
	servers []*http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Start brings the whole system up and returns once it is ready.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.Addr == "" {
		cfg.Addr = listenAddr(cfg.Params["PublicUrl"])
	}
	if cfg.SandboxAddr == "" {
		cfg.SandboxAddr = "127.0.0.1:0"
	}
	if cfg.PushMode == "" {
		cfg.PushMode = push.Safe
	}
	if cfg.name == "" {
		cfg.name = stackName
	}
	tap := &logTap{out: cfg.Logs, capture: cfg.Capture}
	s := &Stack{cfg: cfg, tap: tap, log: slog.New(slog.NewTextHandler(orDiscard(cfg.Logs), nil)).With("devstack", true)}
	started := false
	defer func() {
		if !started {
			s.Close() // whatever had started before the failure
		}
	}()
	var err error
	if s.tpl, err = cfn.LoadNearest(); err != nil {
		return nil, err
	}
	if err := s.tpl.CheckParameters(cfg.Params); err != nil {
		return nil, fmt.Errorf("PARAMS: %w", err)
	}
	if s.basePath, err = basePath(cfg.Params["PublicUrl"]); err != nil {
		return nil, err
	}

	// Listeners first: the functions' configuration names their URLs.
	apiLn, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (set WXB_DEV_ADDR to use another address): %w", cfg.Addr, err)
	}
	s.URL = "http://" + apiLn.Addr().String()
	s.APIURL = s.URL + s.basePath
	var sbLn net.Listener
	if cfg.Real == nil {
		if sbLn, err = net.Listen("tcp", cfg.SandboxAddr); err != nil {
			apiLn.Close()
			return nil, err
		}
		s.SandboxURL = "http://" + sbLn.Addr().String()
	}

	s.AWSURL = cfg.AWSEndpoint
	if s.AWSURL == "" {
		if s.moto, err = moto.Start(); err != nil {
			return nil, err
		}
		s.AWSURL = s.moto.URL
	}
	s.aws = aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("devstack", "devstack", ""),
		BaseEndpoint: aws.String(s.AWSURL),
	}
	if err := s.startFaults(); err != nil {
		return nil, err
	}

	seeded := seedApps(cfg.Real, cfg.oneApp)
	seed, err := secretJSON(seeded)
	if err != nil {
		return nil, err
	}
	if s.apps, err = seeded.Normalize(); err != nil {
		return nil, err
	}
	params := s.tpl.Defaults()
	params["H5Origins"] = s.URL // the console's H5 page is the allowed return_to origin
	params["PublicUrl"] = s.APIURL
	maps.Copy(params, cfg.Params)
	if s.res, err = create(ctx, s.aws, s.tpl, s.prefix(), params, map[string]string{"AppSecret": seed}); err != nil {
		return nil, err
	}
	if err := createAlarms(ctx, s.aws, s.tpl, s.prefix(), s.res); err != nil { // alarms.go
		return nil, err
	}
	if err := s.subscribeConsole(ctx); err != nil { // outcomes.go
		return nil, err
	}

	if cfg.Real == nil {
		sbCfg := sandbox.DefaultConfig()
		if !cfg.oneApp {
			sbCfg.Apps = sandbox.DefaultApps()
		}
		s.sb = sandbox.New(sbCfg)
		// Delivery reports (TEMPLATESENDJOBFINISH) follow a template
		// message by a few seconds, as on the platform.
		s.sb.SetTemplateReportDelay(2 * time.Second)
		// Each official account pushes to its own URL with its own Token
		// and EncodingAESKey; the second in another mode than the first.
		s.pushModes = map[string]push.Mode{}
		for i, oa := range s.apps.OfficialAccountList() {
			s.pushModes[oa.AppID] = cfg.PushMode
			if i > 0 {
				s.pushModes[oa.AppID] = otherMode(cfg.PushMode)
			}
			t := sandbox.PushTarget{URL: s.pushURL(oa.AppID), Token: oa.Token, EncodingAESKey: oa.EncodingAESKey, Mode: s.pushModes[oa.AppID]}
			if err := s.sb.SetPushTargetApp(oa.AppID, t); err != nil {
				return nil, fmt.Errorf("push target of %s: %w", oa.AppID, err)
			}
		}
	}
	if err := s.buildFunctions(ctx); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	mux := http.NewServeMux()
	s.fns.routes(mux, s.basePath) // gateway.go
	s.console(runCtx, mux)
	s.faultRoutes(mux)      // faults.go
	s.fns.invokeRoutes(mux) // invoke.go
	s.serve(apiLn, mux)
	if s.sb != nil {
		s.serve(sbLn, s.sb)
	}
	// Scheduled functions run once at start, so tokens exist before the
	// first request, then on their schedule.
	client := sqs.NewFromConfig(s.aws)
	for _, f := range s.fns.fns {
		for _, sch := range f.def.Schedules {
			period, err := every(sch.Expression)
			if err != nil {
				return nil, err
			}
			input := []byte(sch.Input)
			if len(input) == 0 {
				input = []byte("{}")
			}
			if _, err := f.invoke(ctx, input); err != nil {
				return nil, fmt.Errorf("first run of %s: %w", f.def.LogicalID, err)
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.fns.schedule(runCtx, f, period, input) }()
		}
		for _, q := range f.def.Queues {
			// Lambda polls a queue with several concurrent batches (at least
			// two, up to the event source's maximum concurrency).
			for range pollers(q) {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.fns.poll(runCtx, client, f, q, s.res.queues[q.Queue], s.res.arns[q.Queue])
				}()
			}
		}
		// DynamoDB stream triggers: Lambda's event source mapping, played
		// on moto's stream by infra/devkit/streams (outcomes.go).
		sources, err := s.streamSources(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, src := range sources {
			s.wg.Add(1)
			go func() { defer s.wg.Done(); src.Run(runCtx) }()
		}
	}
	started = true
	return s, nil
}

// prefix starts every local resource's name: the stack's name and "-", as
// CloudFormation names a stack's resources.
func (s *Stack) prefix() string { return s.cfg.name + "-" }

// pollers is how many batches of one queue the devstack runs at once.
func pollers(q cfn.QueueTrigger) int {
	if q.MaximumConcurrency >= 2 {
		return min(q.MaximumConcurrency, 5)
	}
	return 2
}

// buildFunctions builds every template function with the environment the
// template gives it, pointed at the sandbox and at the in-process Lambda.
func (s *Stack) buildFunctions(ctx context.Context) error {
	defs, err := s.tpl.Functions()
	if err != nil {
		return err
	}
	s.fns = &functions{fns: map[string]*function{}, log: s.log}
	if err := s.startIAM(defs); err != nil { // iam.go
		return err
	}
	for _, def := range defs {
		build, ok := builders[def.LogicalID]
		if !ok {
			return fmt.Errorf("template function %s has no in-process builder: add it to builders in infra/devstack", def.LogicalID)
		}
		vars := map[string]string{}
		for k, v := range def.Env {
			if vars[k], err = s.res.resolve(v); err != nil {
				return fmt.Errorf("%s: %s: %w", def.LogicalID, k, err)
			}
		}
		if s.sb != nil {
			vars["WXB_WECHAT_API_BASE"] = s.SandboxURL
			vars["WXB_WECHAT_OPEN_BASE"] = s.SandboxURL
		}
		h, err := build(ctx, awsenv.Env{Vars: vars, AWS: s.functionAWS(def.LogicalID), Out: s.tap, Lambda: s.functionLambda(def.LogicalID)})
		if err != nil {
			return fmt.Errorf("%s: %w", def.LogicalID, err)
		}
		handler := lambda.NewHandler(h)
		if s.cfg.wrap != nil {
			handler = s.cfg.wrap(def.LogicalID, handler)
		}
		s.fns.fns[def.LogicalID] = &function{def: def, handler: handler}
	}
	return nil
}

func (s *Stack) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "error", err)
		}
	}()
}

// Close stops everything the stack started, moto included.
func (s *Stack) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		srv.Shutdown(ctx)
	}
	s.wg.Wait()
	if s.fns != nil {
		s.fns.wg.Wait()
	}
	if s.iam != nil {
		s.iam.Close()
	}
	if s.faults != nil {
		s.faults.Close()
	}
	if s.moto != nil {
		s.moto.Stop()
	}
}

// seedApps is the configuration secret: the real credentials when given;
// else the sandbox's apps in the new shape (every kind in its list, the
// first of each the default: DevMiniProgram, DevOfficialAccount), or with
// oneApp its two default accounts in the old single-app shape. Every
// official account gets a fresh push Token and EncodingAESKey of its own,
// and the signing keys are fresh, unless given.
func seedApps(real *config.Config, oneApp bool) config.Config {
	app := func(a sandbox.App) config.App { return config.App{AppID: a.AppID, Secret: a.Secret} }
	var c config.Config
	switch {
	case real != nil:
		c = *real
	case oneApp:
		c.MiniProgram = app(sandbox.DevMiniProgram)
		c.OfficialAccount = config.OfficialAccount{App: app(sandbox.DevOfficialAccount)}
	default:
		c.MiniPrograms = []config.App{app(sandbox.DevMiniProgram)}
		c.OfficialAccounts = []config.OfficialAccount{{App: app(sandbox.DevOfficialAccount)}}
		for _, spec := range sandbox.DefaultApps() {
			switch a := app(spec.App); spec.Kind {
			case sandbox.AppMiniProgram:
				c.MiniPrograms = append(c.MiniPrograms, a)
			case sandbox.AppOfficialAccount:
				c.OfficialAccounts = append(c.OfficialAccounts, config.OfficialAccount{App: a})
			case sandbox.AppWebsite:
				c.WebsiteApps = append(c.WebsiteApps, a)
			case sandbox.AppMobile:
				c.MobileApps = append(c.MobileApps, a)
			}
		}
	}
	pushKeys := func(oa *config.OfficialAccount) {
		if oa.AppID == "" {
			return
		}
		if oa.Token == "" {
			oa.Token = randomText(32)
		}
		if oa.EncodingAESKey == "" {
			oa.EncodingAESKey = randomText(43)
		}
	}
	pushKeys(&c.OfficialAccount)
	c.OfficialAccounts = slices.Clone(c.OfficialAccounts)
	for i := range c.OfficialAccounts {
		pushKeys(&c.OfficialAccounts[i])
	}
	if c.SigningKey == "" {
		c.SigningKey = randomText(48)
	}
	if c.BindKey == "" {
		c.BindKey = randomText(48)
	}
	return c
}

// secretJSON is c as the configuration secret holds it: the single-app
// fields left out when empty (a secret of the new shape names its apps in
// the lists only).
func secretJSON(c config.Config) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", err
	}
	if c.MiniProgram == (config.App{}) {
		delete(doc, "mini_program")
	}
	if c.OfficialAccount == (config.OfficialAccount{}) {
		delete(doc, "official_account")
	}
	b, err = json.Marshal(doc)
	return string(b), err
}

// pushURL is where official account appid pushes: the default one at
// /wechat/push, as the single-app shape has it, every other at
// /wechat/push/<appid>.
func (s *Stack) pushURL(appid string) string {
	if appid == s.apps.OfficialAccount.AppID {
		return s.APIURL + "/wechat/push"
	}
	return s.APIURL + "/wechat/push/" + appid
}

// otherMode is a push mode other than m that encrypts: the second official
// account's, so that both ways of reading a push run side by side.
func otherMode(m push.Mode) push.Mode {
	if m == push.Safe {
		return push.Compatible
	}
	return push.Safe
}

// randomText is n letters and digits.
func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return strings.NewReplacer("+", "A", "/", "B", "=", "C").Replace(base64.StdEncoding.EncodeToString(b))[:n]
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// DevConfig is GET /_dev/config: what a developer or a test needs to talk
// to the devstack.
type DevConfig struct {
	APIURL         string `json:"api_url"`
	SandboxURL     string `json:"sandbox_url,omitempty"`
	AWSEndpointURL string `json:"aws_endpoint_url"`
	Region         string `json:"region"`
	Table          string `json:"table"`
	SendQueueURL   string `json:"send_queue_url,omitempty"`
	SyncQueueURL   string `json:"sync_queue_url,omitempty"`
	ConfigSecret   string `json:"apps_secret"` // the configuration secret; the JSON name predates it
	H5Origin       string `json:"h5_origin"`
	OA             struct {
		AppID          string    `json:"appid"`
		Token          string    `json:"token"`
		EncodingAESKey string    `json:"encoding_aes_key"`
		Mode           push.Mode `json:"mode"`
	} `json:"oa"`
	MiniProgramAppID string `json:"mp_appid"`
	// Apps are every configured app, kind by kind, each kind's default
	// first (devconfig.go).
	Apps []DevApp `json:"apps"`
	Real bool     `json:"real_wechat"`
	// Moto's credentials, the push URL and every resource by logical ID
	// (devconfig.go): what wxctl --dev needs to treat the devstack as a
	// deployed stack.
	AccessKeyID     string                 `json:"aws_access_key_id"`
	SecretAccessKey string                 `json:"aws_secret_access_key"`
	PushURL         string                 `json:"push_url"`
	Resources       map[string]DevResource `json:"resources"`
	// TokenSecretPrefix starts the name of the token secret of every mini
	// program and official account but the defaults (whose secrets are
	// resources): the refresher creates <prefix><appid>.
	TokenSecretPrefix string `json:"token_secret_prefix,omitempty"`
	// OutcomeQueueURL receives every outcome event from OutcomeBus, as the
	// optional OutcomeQueue does in a stack deployed with it (outcomes.go).
	OutcomeQueueURL string `json:"outcome_queue_url,omitempty"`
	OutcomeBus      string `json:"outcome_bus,omitempty"`
}

func (s *Stack) devConfig() DevConfig {
	c := DevConfig{
		APIURL: s.APIURL, SandboxURL: s.SandboxURL, AWSEndpointURL: s.AWSURL, Region: s.aws.Region,
		Table: s.res.refs["Table"], SendQueueURL: s.res.queues["SendQueue"], SyncQueueURL: s.res.queues["SyncQueue"],
		OutcomeQueueURL: s.res.queues[outcomeQueue], OutcomeBus: s.res.refs[outcomeBus],
		ConfigSecret: s.res.refs["AppSecret"], H5Origin: s.URL, MiniProgramAppID: s.apps.MiniProgram.AppID, Real: s.sb == nil,
	}
	c.OA.AppID, c.OA.Token, c.OA.EncodingAESKey, c.OA.Mode = s.apps.OfficialAccount.AppID, s.apps.OfficialAccount.Token, s.apps.OfficialAccount.EncodingAESKey, s.cfg.PushMode
	c.Apps = s.devApps()
	s.describeResources(&c)
	return c
}
