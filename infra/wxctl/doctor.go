package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"

	"wxbridge/shared/config"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

func init() {
	register("doctor", command{summary: "check a deployed stack (or make dev): configuration, tokens, push URL, queues, alarms", run: runDoctor})
}

const doctorUsage = `usage: wxctl doctor [-stack NAME] [-push-url URL] [-app-secret ID] [flags]
       wxctl --dev doctor

Checks a deployed stack, or make dev with --dev, and prints a checklist,
each line ✓ or ✗ with the fix: the configuration secret complete and
well-formed, every app of every kind; a fresh access token for every mini
program and official account (else the refresher's last failure and what
to do); each official account's push URL answering WeChat's signed URL
check; the queues, and their dead-letter queues empty; the alarms, none in
ALARM.
The exit status is 1 if anything is ✗, for CI. Values of secrets are never
printed.

The stack's resources come from CloudFormation (-stack, or $WXB_STACK: the
stack_name of samconfig.toml, e.g. wxbridge-dev); the other flags name them
instead, or override the stack's. Needs cloudformation:DescribeStacks and
ListStackResources, secretsmanager:GetSecretValue on the configuration and
token secrets, sqs:GetQueueAttributes and cloudwatch:DescribeAlarms.
`

// The template's logical IDs of what doctor reads.
const (
	configSecretID    = "AppSecret"
	mpTokenSecretID   = "MiniProgramTokenSecret"
	oaTokenSecretID   = "OfficialAccountTokenSecret"
	refresherID       = "TokenRefresherFunction"
	followEventID     = "FollowEventFunction"
	pushURLOutput     = "PushUrl"
	typeQueue         = "AWS::SQS::Queue"
	typeAlarm         = "AWS::CloudWatch::Alarm"
	describeAlarmsMax = 100 // alarm names per DescribeAlarms call
)

// stack is what doctor checks: a deployed stack's resources as
// CloudFormation lists them, or the devstack's as /_dev/config does.
type stack struct {
	name      string              // how the header names it
	resources map[string]resource // by logical ID
	pushURL   string              // the default official account's
	// tokenPrefix starts the name of the token secret of every mini program
	// and official account but the defaults: the template's
	// ${AWS::StackName}/token/.
	tokenPrefix string
	dev         *devstack // nil for a deployed stack
}

// pushURLOf is the push URL of official account appid: the devstack's
// own, else /wechat/push for the default and /wechat/push/<appid> for the
// others, as the template routes them.
func (s stack) pushURLOf(appid string, isDefault bool) string {
	if s.dev != nil {
		for _, a := range s.dev.Apps {
			if a.AppID == appid && a.PushURL != "" {
				return a.PushURL
			}
		}
	}
	if isDefault || s.pushURL == "" {
		return s.pushURL
	}
	return strings.TrimRight(s.pushURL, "/") + "/" + appid
}

// id is the physical ID of the resource logicalID, or "".
func (s stack) id(logicalID string) string { return s.resources[logicalID].ID }

// ofType lists the logical IDs of the resources of type typ, sorted.
func (s stack) ofType(typ string) []string {
	var ids []string
	for id, r := range s.resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// invokeRefresher is the command that runs the token-refresher now.
func (s stack) invokeRefresher() string {
	endpoint := ""
	if s.dev != nil {
		endpoint = " --endpoint-url " + s.dev.URL // the devstack serves the Lambda Invoke API
	}
	name := s.id(refresherID)
	if name == "" {
		name = "<TokenRefresherName output>"
	}
	return fmt.Sprintf("aws lambda invoke%s --function-name %s --payload '{}' --cli-binary-format raw-in-base64-out /dev/stdout", endpoint, name)
}

// doctorFlags name resources directly, or override the stack's.
type doctorFlags struct {
	stack, pushURL, appSecret, mpToken, oaToken, tokenPrefix, queues, alarms string
}

func runDoctor(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() { fmt.Fprint(std.err, doctorUsage); fs.PrintDefaults() }
	var f doctorFlags
	fs.StringVar(&f.stack, "stack", os.Getenv("WXB_STACK"), "the CloudFormation stack")
	fs.StringVar(&f.pushURL, "push-url", "", "the default official account's push URL to check, the others' being it and /<appid> (default: the stack's PushUrl output; give the one in the OA console when PublicUrl fronts the API)")
	fs.StringVar(&f.appSecret, "app-secret", "", "the configuration secret (default: the stack's AppSecret)")
	fs.StringVar(&f.mpToken, "mp-token-secret", "", "the mini program's token secret (default: the stack's)")
	fs.StringVar(&f.oaToken, "oa-token-secret", "", "the official account's token secret (default: the stack's)")
	fs.StringVar(&f.tokenPrefix, "token-secret-prefix", "", "what the name of every other app's token secret starts with (default: the stack's name and /token/)")
	fs.StringVar(&f.queues, "queues", "", "queue URLs, comma-separated (default: the stack's); a name ending in DLQ, or another's redrive target, is a dead-letter queue")
	fs.StringVar(&f.alarms, "alarms", "", "alarm names, comma-separated (default: the stack's)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	cfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	var s stack
	switch d := devstackOf(ctx); {
	case d != nil:
		s = stack{name: "make dev at " + d.URL, resources: d.Resources, pushURL: d.PushURL, tokenPrefix: d.TokenSecretPrefix, dev: d}
	case f.stack != "":
		if s, err = stackOf(ctx, cloudformation.NewFromConfig(cfg), f.stack); err != nil {
			return err
		}
		s.name = fmt.Sprintf("stack %s in %s", f.stack, cfg.Region)
		s.tokenPrefix = f.stack + "/token/"
	default:
		if f.appSecret == "" {
			fmt.Fprintln(std.err, "wxctl doctor: which stack? Pass -stack NAME (or set WXB_STACK), name its resources with the flags, or use wxctl --dev for make dev")
			return errUsage
		}
		s = stack{name: "the resources named by the flags", resources: map[string]resource{}}
	}
	f.override(&s)
	d := &doctor{
		stack:   s,
		secrets: secretsmanager.NewFromConfig(cfg),
		queues:  sqs.NewFromConfig(cfg),
		alarms:  cloudWatch(cfg),
		http:    &http.Client{Timeout: 10 * time.Second},
		now:     time.Now,
	}
	fmt.Fprintf(std.out, "wxctl doctor: %s\n", s.name)
	if failed, total := report(std.out, d.run(ctx)); failed > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", failed, total)
	}
	return nil
}

// override puts the resources the flags name in s.
func (f doctorFlags) override(s *stack) {
	if s.resources == nil {
		s.resources = map[string]resource{}
	}
	set := func(logicalID, typ, id string) {
		if id != "" {
			s.resources[logicalID] = resource{Type: typ, ID: id}
		}
	}
	set(configSecretID, "AWS::SecretsManager::Secret", f.appSecret)
	set(mpTokenSecretID, "AWS::SecretsManager::Secret", f.mpToken)
	set(oaTokenSecretID, "AWS::SecretsManager::Secret", f.oaToken)
	if f.pushURL != "" {
		s.pushURL = f.pushURL
	}
	if f.tokenPrefix != "" {
		s.tokenPrefix = f.tokenPrefix
	}
	if f.queues != "" {
		for id, r := range s.resources {
			if r.Type == typeQueue {
				delete(s.resources, id)
			}
		}
		for _, u := range strings.Split(f.queues, ",") {
			u = strings.TrimSpace(u)
			set(u[strings.LastIndex(u, "/")+1:], typeQueue, u)
		}
	}
	if f.alarms != "" {
		for id, r := range s.resources {
			if r.Type == typeAlarm {
				delete(s.resources, id)
			}
		}
		for _, n := range strings.Split(f.alarms, ",") {
			set(strings.TrimSpace(n), typeAlarm, strings.TrimSpace(n))
		}
	}
}

// stackOf reads a deployed stack's resources and its push URL output.
func stackOf(ctx context.Context, cf *cloudformation.Client, name string) (stack, error) {
	s := stack{resources: map[string]resource{}}
	out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
	if err != nil {
		return s, fmt.Errorf("stack %s: %w", name, err)
	}
	for _, st := range out.Stacks {
		for _, o := range st.Outputs {
			if aws.ToString(o.OutputKey) == pushURLOutput {
				s.pushURL = aws.ToString(o.OutputValue)
			}
		}
	}
	pages := cloudformation.NewListStackResourcesPaginator(cf, &cloudformation.ListStackResourcesInput{StackName: aws.String(name)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return s, fmt.Errorf("stack %s: %w", name, err)
		}
		for _, r := range page.StackResourceSummaries {
			s.resources[aws.ToString(r.LogicalResourceId)] = resource{Type: aws.ToString(r.ResourceType), ID: aws.ToString(r.PhysicalResourceId)}
		}
	}
	return s, nil
}

// cloudWatch is a CloudWatch client that moto understands too: the SDK
// speaks CloudWatch's CBOR protocol by default, which moto 5.2 does not;
// AWS answers the query protocol as well.
func cloudWatch(cfg aws.Config) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		o.Protocol = awsquery.New(schemas.GraniteServiceVersion20100801)
	})
}

// result is one line of the checklist.
type result struct {
	ok   bool
	what string // what was checked and found
	fix  string // what to do about it, when not ok
}

func pass(format string, a ...any) result { return result{ok: true, what: fmt.Sprintf(format, a...)} }

func fail(fix, format string, a ...any) result {
	return result{what: fmt.Sprintf(format, a...), fix: fix}
}

// report prints the checklist and counts its ✗.
func report(w io.Writer, rs []result) (failed, total int) {
	for _, r := range rs {
		if r.ok {
			fmt.Fprintf(w, "✓ %s\n", r.what)
			continue
		}
		failed++
		fmt.Fprintf(w, "✗ %s\n", r.what)
		if r.fix != "" {
			fmt.Fprintf(w, "    fix: %s\n", r.fix)
		}
	}
	return failed, len(rs)
}

// doctor runs the checks against one stack.
type doctor struct {
	stack   stack
	secrets *secretsmanager.Client
	queues  *sqs.Client
	alarms  *cloudwatch.Client
	http    *http.Client
	now     func() time.Time
}

func (d *doctor) run(ctx context.Context) []result {
	cfg, rs := d.configuration(ctx)
	if cfg != nil {
		rs = append(rs, d.tokens(ctx, *cfg)...)
		for i, oa := range cfg.OfficialAccountList() {
			rs = append(rs, d.push(ctx, oa, i == 0))
		}
		if len(cfg.OfficialAccountList()) == 0 {
			rs = append(rs, d.push(ctx, config.OfficialAccount{}, true))
		}
	}
	rs = append(rs, d.queueChecks(ctx)...)
	return append(rs, d.alarmChecks(ctx)...)
}

// configuration checks the configuration secret, and returns it when it
// could be read, however incomplete.
func (d *doctor) configuration(ctx context.Context) (*config.Config, []result) {
	id := d.stack.id(configSecretID)
	if id == "" {
		return nil, []result{fail("pass -app-secret (the stack's AppSecretArn output)", "configuration secret: not found")}
	}
	c, err := config.Load(ctx, d.secrets, id)
	if err != nil {
		fix := "put the JSON of README, Configuration, in it (aws secretsmanager put-secret-value --secret-id " + id + " --secret-string file://config.json)"
		return nil, []result{fail(fix, "configuration secret: %v", err)}
	}
	var rs []result
	for _, p := range c.Validate() {
		rs = append(rs, fail(p.Fix, "configuration secret: %s", p))
	}
	if len(rs) == 0 {
		rs = append(rs, pass("configuration secret: complete and well-formed (%s)", appList(c)))
	}
	return &c, rs
}

// appList names every configured app, kind by kind, each kind's default
// first, and how each official account's pushes come.
func appList(c config.Config) string {
	var kinds []string
	for _, k := range config.Kinds {
		apps := c.Apps(k)
		var ids []string
		for i, a := range apps {
			var notes []string
			if i == 0 && len(apps) > 1 {
				notes = append(notes, "default")
			}
			if oa, ok := c.OA(a.AppID); ok && k == config.KindOfficialAccount {
				notes = append(notes, "push encrypted")
				if oa.EncodingAESKey == "" {
					notes[len(notes)-1] = "push in plaintext mode: no encoding_aes_key"
				}
			}
			id := a.AppID
			if len(notes) > 0 {
				id += " (" + strings.Join(notes, ", ") + ")"
			}
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			continue
		}
		name := k.Name()
		if len(ids) > 1 {
			name += "s"
		}
		kinds = append(kinds, name+" "+strings.Join(ids, ", "))
	}
	return strings.Join(kinds, "; ")
}

// app is one WeChat app as the token checks see it.
type app struct {
	kind  string // "mini program"
	appid string
	// secretID is the default app's token secret's logical ID; "" for
	// another app, whose secret is the stack's token prefix and its appid.
	secretID  string
	whitelist string // where its API IP whitelist is
}

// whitelists are where each kind's API IP whitelist (API IP 白名单) is.
var whitelists = map[config.Kind]string{
	config.KindMiniProgram:     "the mini program's API IP whitelist (API IP 白名单): Mini Program admin → Management → Development Management → Development Settings (微信公众平台 (小程序) → 管理 → 开发管理 → 开发设置)",
	config.KindOfficialAccount: "the service account's API IP whitelist (API IP 白名单): WeChat Developer Platform → My Business → Service Account → Basic Info → Development Key (微信开发者平台 → 我的业务 → 服务号 → 基础信息 → 开发密钥)",
}

// tokens checks the token of every mini program and official account: the
// defaults' in the stack's token secrets, every other's in the secret the
// refresher creates under the token prefix.
func (d *doctor) tokens(ctx context.Context, c config.Config) []result {
	var rs []result
	for _, k := range []config.Kind{config.KindMiniProgram, config.KindOfficialAccount} {
		for i, a := range c.Apps(k) {
			secretID := ""
			if i == 0 {
				secretID = map[config.Kind]string{config.KindMiniProgram: mpTokenSecretID, config.KindOfficialAccount: oaTokenSecretID}[k]
			}
			rs = append(rs, d.token(ctx, app{kind: k.Name(), appid: a.AppID, secretID: secretID, whitelist: whitelists[k]}))
		}
	}
	return rs
}

// token checks one app's token secret: a token that is still valid, and no
// failure since that needs a person.
func (d *doctor) token(ctx context.Context, a app) result {
	name := fmt.Sprintf("access token of the %s %s", a.kind, a.appid)
	id := d.stack.id(a.secretID)
	switch {
	case a.secretID == "" && d.stack.tokenPrefix == "":
		return fail("pass -token-secret-prefix (the stack's name and /token/)", "%s: its token secret's prefix is unknown", name)
	case a.secretID == "":
		id = d.stack.tokenPrefix + a.appid
	case id == "":
		return fail("pass -mp-token-secret or -oa-token-secret (the stack's "+a.secretID+")", "%s: no token secret (%s) in the stack", name, a.secretID)
	}
	st, err := tokens.Load(ctx, d.secrets, id)
	if err != nil {
		return fail("only the token-refresher writes this secret; invoke it to write it anew: "+d.stack.invokeRefresher(), "%s: %v", name, err)
	}
	now := d.now()
	f := st.Failure
	switch {
	case st.Usable(now) && (f == nil || passes(f)):
		r := pass("%s: fresh, expires in %s", name, st.ExpiresAt.Sub(now).Round(time.Minute))
		if f != nil {
			r.what += fmt.Sprintf(" (the last refresh, %s, failed: %s; it passes by itself)", ago(now, f.At), failureText(f))
		}
		return r
	case st.Usable(now):
		return fail(failureFix(f, a, d.stack), "%s: still valid for %s, but the refresher's last attempt (%s) failed: %s",
			name, st.ExpiresAt.Sub(now).Round(time.Minute), ago(now, f.At), failureText(f))
	case f != nil:
		state := "no token yet"
		if st.AccessToken != "" {
			state = "expired " + ago(now, st.ExpiresAt)
		}
		return fail(failureFix(f, a, d.stack), "%s: %s; the refresher's last attempt (%s) failed: %s", name, state, ago(now, f.At), failureText(f))
	case st.AccessToken == "":
		return fail("the refresher has not written it yet: it runs every 5 minutes; run it now: "+d.stack.invokeRefresher(), "%s: no token yet", name)
	default:
		return fail("the refresher recorded no failure, so it is not running: check TokenRefresherErrorsAlarm, its log group (an init_error line) and its Every5Minutes schedule, then: "+d.stack.invokeRefresher(),
			"%s: expired %s", name, ago(now, st.ExpiresAt))
	}
}

// passes reports whether a recorded failure goes away by itself (WeChat
// busy, a timeout, our own infrastructure): the schedule's next run
// retries it.
func passes(f *tokens.Failure) bool {
	return f.Class == wechat.ClassTransient.String() || f.Class == wechat.ClassInfra.String()
}

func failureText(f *tokens.Failure) string {
	var b strings.Builder
	if f.ErrCode != 0 {
		fmt.Fprintf(&b, "errcode %d ", f.ErrCode)
	}
	b.WriteString(f.ErrMsg)
	if f.RID != "" {
		fmt.Fprintf(&b, " (rid %s)", f.RID)
	}
	return b.String()
}

// ipv4 finds the caller's address in WeChat's errmsg: 40164 answers
// "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist", and
// 89503 names the IP too.
var ipv4 = regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}\b`)

// failureFix says what a recorded refresh failure means and what to do
// (docs/operations.md, TokenConfigAlarm).
func failureFix(f *tokens.Failure, a app, s stack) string {
	ip := ipv4.FindString(f.ErrMsg)
	if ip == "" {
		ip = "the refresher's egress IP (its NAT gateway's Elastic IP)"
	}
	then := "; then run the refresher: " + s.invokeRefresher()
	switch f.ErrCode {
	case 40164:
		return "WeChat refuses token calls from " + ip + ": add it to " + a.whitelist +
			" (without RefresherSubnetIds and RefresherSecurityGroupId the refresher's IP changes: README, \"Access tokens and the IP whitelist\")" + then
	case 89503, 89501:
		return "WeChat holds token calls from " + ip + " until an administrator confirms the IP (a message in the administrator's WeChat): confirm it" + then
	case 89506, 89507:
		return "an administrator refused token calls from " + ip + ": allow it in the console's IP whitelist, or ask them to accept the next confirmation" + then
	case 40125, 40013, 40243, 40001:
		return "the appid or AppSecret of the " + a.kind + " in the configuration secret is wrong, or the AppSecret was reset or frozen in the console: put the current one in the secret" + then
	case 45009:
		return "the daily quota of token calls is used up: something else calls the token endpoint with the same AppSecret (make it read wxbridge's token secret); the quota resets at midnight Beijing time, or an administrator resets it in the console" + then
	case 61024:
		return "a third-party platform manages this account, and its tokens come from that platform: wxbridge cannot refresh them"
	}
	if passes(f) {
		return "WeChat or AWS failed for a while; the refresher retries every 5 minutes" + then
	}
	return "see docs/operations.md, TokenConfigAlarm and TokenRefreshFailedAlarm, for errcode " + strconv.Itoa(f.ErrCode) + then
}

// ago is how long before now t was, or "in …" for a time after now.
func ago(now, t time.Time) string {
	if d := now.Sub(t); d >= 0 {
		return d.Round(time.Second).String() + " ago"
	}
	return "in " + t.Sub(now).Round(time.Second).String()
}

// push sends official account oa's push URL the GET WeChat's console
// sends on Submit: signature (sha1 of oa's Token, timestamp and nonce),
// timestamp, nonce and echostr. follow-event must answer the echostr.
func (d *doctor) push(ctx context.Context, oa config.OfficialAccount, isDefault bool) result {
	token, pushURL := oa.Token, d.stack.pushURLOf(oa.AppID, isDefault)
	route := "/wechat/push"
	if !isDefault {
		route += "/" + oa.AppID
	}
	switch {
	case pushURL == "":
		return fail("pass -push-url (the stack's PushUrl output)", "push URL: unknown")
	case token == "":
		what := "token of official account " + oa.AppID
		if oa.AppID == "" {
			what = "official_account.token"
		}
		return fail("put the Token in the configuration secret (see above)", "push URL %s: not checked: no %s to sign the check with", pushURL, what)
	}
	// Parsed before the signature is added: an error about the URL then
	// quotes the URL as given, not the signed one.
	target, err := url.Parse(pushURL)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return fail("pass -push-url with the URL in the OA console", "push URL %s: not an http(s) URL", pushURL)
	}
	ts, nonce, echo := strconv.FormatInt(d.now().Unix(), 10), randomHex(5), randomHex(10)
	q := target.Query()
	for k, v := range map[string]string{"signature": push.Signature(token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": echo} {
		q.Set(k, v)
	}
	target.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return fail("pass -push-url with the URL in the OA console", "push URL %s: not a URL to check", pushURL)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL carries the signature
		}
		return fail("WeChat must reach it: is the stack deployed (or make dev running) and the URL right?", "push URL %s: no answer: %v", pushURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fn := d.stack.id(followEventID)
	switch {
	case resp.StatusCode == http.StatusOK && string(body) == echo:
		return pass("push URL %s: answers WeChat's signed URL check", pushURL)
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		restart := "restart make dev"
		if d.stack.dev == nil {
			restart = fmt.Sprintf("force new instances (aws lambda update-function-configuration --function-name %s --description \"config %s\")", fn, d.now().UTC().Format(time.RFC3339))
		}
		return fail("follow-event runs with another Token than the configuration secret's: it reads the secret at a cold start, so after changing it "+restart+
			"; then Submit the same Token in the OA console (or this machine's clock is over 5 minutes off: the check's timestamp is refused)", "push URL %s: refused a URL check signed with the configuration secret's token of official account %s (HTTP %d)", pushURL, oa.AppID, resp.StatusCode)
	case resp.StatusCode == http.StatusOK:
		return fail("the URL must route GET "+route+" to follow-event (the stack's PushUrl output"+strings.TrimPrefix(route, "/wechat/push")+", or PublicUrl and "+route+")", "push URL %s: answered 200 without the echostr: not wxbridge's follow-event", pushURL)
	}
	return fail("the URL must route GET "+route+" to follow-event (the stack's PushUrl output"+strings.TrimPrefix(route, "/wechat/push")+", or PublicUrl and "+route+")", "push URL %s: answered HTTP %d", pushURL, resp.StatusCode)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// queueChecks checks that every queue exists and every dead-letter queue is
// empty. A dead-letter queue is one that another queue's redrive policy
// names, or whose logical ID ends in DLQ (an event source's or a rule's
// failure destination).
func (d *doctor) queueChecks(ctx context.Context) []result {
	ids := d.stack.ofType(typeQueue)
	if len(ids) == 0 {
		return []result{fail("pass -stack, or -queues", "queues: none found")}
	}
	type queue struct {
		id, url, arn, redriveTo string
		messages                int
	}
	var found []queue
	var rs []result
	targets := map[string]bool{}
	for _, id := range ids {
		q := queue{id: id, url: d.stack.id(id)}
		out, err := d.queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.url), AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameQueueArn, sqstypes.QueueAttributeNameRedrivePolicy, sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		}})
		var missing *sqstypes.QueueDoesNotExist
		switch {
		case errors.As(err, &missing):
			rs = append(rs, fail("deploy the stack again (sam deploy), which creates it", "queue %s: missing (%s)", id, q.url))
			continue
		case err != nil:
			rs = append(rs, fail("your credentials need sqs:GetQueueAttributes on the stack's queues", "queue %s: %v", id, err))
			continue
		}
		a := out.Attributes
		q.arn = a[string(sqstypes.QueueAttributeNameQueueArn)]
		for _, k := range []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed} {
			n, _ := strconv.Atoi(a[string(k)])
			q.messages += n
		}
		if p := a[string(sqstypes.QueueAttributeNameRedrivePolicy)]; p != "" {
			if m := redriveTarget.FindStringSubmatch(p); m != nil {
				targets[m[1]] = true
			}
		}
		found = append(found, q)
	}
	var work, emptyDLQs []string
	for _, q := range found {
		if !targets[q.arn] && !strings.HasSuffix(q.id, "DLQ") {
			work = append(work, q.id)
			continue
		}
		if q.messages == 0 {
			emptyDLQs = append(emptyDLQs, q.id)
			continue
		}
		rs = append(rs, fail(fmt.Sprintf("see docs/operations.md, %sAlarm; read them (aws sqs receive-message --queue-url %s --attribute-names All --message-attribute-names All), fix the cause, then move them back (aws sqs start-message-move-task --source-arn %s) or delete them",
			q.id, q.url, q.arn), "dead-letter queue %s: %d %s", q.id, q.messages, plural(q.messages, "message", "messages")))
	}
	if len(work) > 0 {
		rs = append(rs, pass("queues: %s", strings.Join(work, ", ")))
	}
	if len(emptyDLQs) > 0 {
		rs = append(rs, pass("dead-letter queues empty: %s", strings.Join(emptyDLQs, ", ")))
	}
	return rs
}

// redriveTarget is the dead-letter queue's ARN in a RedrivePolicy.
var redriveTarget = regexp.MustCompile(`"deadLetterTargetArn"\s*:\s*"([^"]+)"`)

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// runbook is the docs/operations.md entry an alarm's description names.
var runbook = regexp.MustCompile(`docs/operations\.md, (\w+)`)

// alarmChecks checks that every alarm of the stack exists and none is in
// ALARM.
func (d *doctor) alarmChecks(ctx context.Context) []result {
	ids := d.stack.ofType(typeAlarm)
	if len(ids) == 0 {
		return []result{fail("pass -stack, or -alarms", "alarms: none found")}
	}
	byName := map[string]string{} // alarm name -> logical ID
	var names []string
	for _, id := range ids {
		byName[d.stack.id(id)] = id
		names = append(names, d.stack.id(id))
	}
	var alarms []cwtypes.MetricAlarm
	for batch := range slices.Chunk(names, describeAlarmsMax) {
		out, err := d.alarms.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: batch, MaxRecords: aws.Int32(describeAlarmsMax)})
		if err != nil {
			return []result{fail("your credentials need cloudwatch:DescribeAlarms", "alarms: %v", err)}
		}
		alarms = append(alarms, out.MetricAlarms...)
	}
	var rs []result
	insufficient := 0
	for _, a := range alarms {
		name := aws.ToString(a.AlarmName)
		id := byName[name]
		delete(byName, name)
		switch a.StateValue {
		case cwtypes.StateValueAlarm:
			entry := id
			if m := runbook.FindStringSubmatch(aws.ToString(a.AlarmDescription)); m != nil {
				entry = m[1]
			}
			since := ""
			if a.StateUpdatedTimestamp != nil {
				since = " since " + a.StateUpdatedTimestamp.UTC().Format("2006-01-02 15:04 MST")
			}
			rs = append(rs, fail("docs/operations.md, "+entry+", says what it means and what to do", "alarm %s: in ALARM%s: %s", id, since, aws.ToString(a.StateReason)))
		case cwtypes.StateValueInsufficientData:
			insufficient++
		}
	}
	if len(byName) > 0 {
		missing := slices.Sorted(maps.Values(byName))
		rs = append(rs, fail("deploy the stack again (sam deploy), which creates them", "alarms missing: %s", strings.Join(missing, ", ")))
	}
	if len(rs) == 0 {
		r := pass("alarms: %d, none in ALARM", len(alarms))
		if insufficient > 0 {
			r.what += fmt.Sprintf(" (%d without enough data yet)", insufficient)
		}
		rs = append(rs, r)
	}
	return rs
}
