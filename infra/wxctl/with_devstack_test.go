package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/moto"
	"wxbridge/shared/config"
	"wxbridge/shared/tokens"
)

// The tests against make dev. This file sorts after the others, so its
// tests run last, and the devstack TestMain starts comes up while the
// tests before them run.

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

// sharedMoto is the test binary's moto.
var sharedMoto string

func runTests(m *testing.M) int {
	os.Unsetenv("WXB_DEV") // a developer's shell may point at their own make dev
	// One moto for every test and the devstack (each test makes its own
	// resources; the devstack's are named wxbridge-dev-…): a moto_server
	// takes seconds of CPU to start.
	if sharedMoto = os.Getenv("AWS_ENDPOINT_URL"); sharedMoto == "" {
		srv, err := moto.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer srv.Stop()
		sharedMoto = srv.URL
		os.Setenv("AWS_ENDPOINT_URL", sharedMoto)
	}
	flag.Parse()
	if flag.Lookup("test.run").Value.String() == "" {
		// Building and starting make dev takes seconds; the tests before
		// the first that needs it run meanwhile.
		go devProc.begin()
	}
	defer devProc.stop() // before moto
	return m.Run()
}

// devProc is make dev for the tests that need one: the devstack binary,
// built and started once for the test binary, on free ports and the
// shared moto, and stopped by TestMain.
var devProc devstackProcess

type devstackProcess struct {
	once sync.Once
	cmd  *exec.Cmd
	done chan struct{}
	url  string
	err  error
}

// devURL starts the devstack the first time it is called and returns its
// address, as the devstack's banner prints it (export WXB_DEV=…).
func devURL(t *testing.T) string {
	t.Helper()
	if err := devProc.begin(); err != nil {
		t.Fatal(err)
	}
	return devProc.url
}

// begin builds and starts the devstack unless that is done or under way,
// and returns once it is ready (or has failed).
func (p *devstackProcess) begin() error {
	p.once.Do(func() { p.err = p.start() })
	return p.err
}

func (p *devstackProcess) start() error {
	// The binary make dev builds, where it builds it: go build relinks it
	// only when something it is built from changed (seconds on a busy
	// machine), and make dev after make test (or the other way) finds it
	// up to date.
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	tpl, err := cfn.Find(wd)
	if err != nil {
		return err
	}
	bin := filepath.Join(filepath.Dir(tpl), "build", "devstack")
	if out, err := exec.Command("go", "build", "-o", bin, "wxbridge/infra/devstack").CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o build/devstack ./infra/devstack: %v\n%s", err, out)
	}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(cleanEnv(), "WXB_DEV_ADDR=127.0.0.1:0", "AWS_ENDPOINT_URL="+sharedMoto)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var stderr bytes.Buffer
	p.cmd.Stderr = &stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.done = make(chan struct{})
	banner := make(chan string, 1)
	go func() {
		defer close(p.done)
		exportDev := regexp.MustCompile(`export WXB_DEV=(\S+)`)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := exportDev.FindStringSubmatch(sc.Text()); m != nil {
				banner <- m[1]
			}
		}
		io.Copy(io.Discard, stdout) // the functions' log lines, past a line too long to scan
		p.cmd.Wait()
	}()
	select {
	case p.url = <-banner:
		return nil
	case <-p.done:
		return fmt.Errorf("the devstack exited before its banner: %s", stderr.String())
	case <-time.After(90 * time.Second):
		return fmt.Errorf("the devstack printed no banner in 90 s: %s", stderr.String())
	}
}

func (p *devstackProcess) stop() {
	p.once.Do(func() {}) // waits for a start under way; none later
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
	}
}

// cleanEnv is the environment without AWS's and wxbridge's variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "WXB_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestDevNeedsNothingElse: on a machine without any AWS configuration,
// WXB_DEV (or --dev) alone gives every command its endpoint, region,
// credentials, queues, table and secrets, from the devstack's
// /_dev/config; the devstack's banner prints the same for the AWS CLI.
func TestDevNeedsNothingElse(t *testing.T) {
	url := devURL(t)
	bareMachine(t)
	t.Setenv("WXB_DEV", url)
	code, out, errOut := wx("send", "-id", "dev-needs-nothing", "-to", "external_id=8812", "-template", "tpl", "-data", "thing1=x")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("send with WXB_DEV: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, errOut = wx("--dev="+url, "followers", "status")
	if code != 1 || !strings.Contains(errOut, "no backfill has run yet") {
		t.Fatalf("followers status with --dev=: exit %d, out %q, err %q", code, out, errOut)
	}

	// The banner's export lines are the AWS CLI's configuration: moto's
	// endpoint, region and credentials, as /_dev/config gives them.
	d, err := loadDevstack(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": d.AWSEndpointURL, "AWS_REGION": d.Region, "AWS_ACCESS_KEY_ID": d.AccessKeyID, "AWS_SECRET_ACCESS_KEY": d.SecretAccessKey} {
		if v == "" || os.Getenv(k) != v {
			t.Errorf("--dev set %s=%q, /_dev/config says %q", k, os.Getenv(k), v)
		}
	}
}

// devAWS is an AWS configuration for the devstack's moto, for the tests to
// break things with.
func devAWS(d *devstack) aws.Config {
	return aws.Config{Region: d.Region, BaseEndpoint: aws.String(d.AWSEndpointURL),
		Credentials: credentials.NewStaticCredentialsProvider(d.AccessKeyID, d.SecretAccessKey, "")}
}

// TestDoctor runs wxctl --dev doctor against make dev: all ✓ as it
// starts; then each thing doctor checks is broken in turn, and doctor
// reports exactly that one ✗, with its fix, and exits 1. Each break is
// undone before the next, which the next run's single ✗ proves.
func TestDoctor(t *testing.T) {
	url := devURL(t)
	bareMachine(t)
	ctx := context.Background()
	d, err := loadDevstack(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var sandbox struct {
		URL string `json:"sandbox_url"`
	}
	getJSON(t, url+"/_dev/config", &sandbox)
	cfg := devAWS(d)
	sm, q, cw := secretsmanager.NewFromConfig(cfg), sqs.NewFromConfig(cfg), cloudWatch(cfg)
	original := secretString(t, sm, d.ConfigSecret)
	// raw is the secret as make dev wrote it (the new shape: every app in
	// its kind's list); apps is it as the functions read it.
	var raw config.Config
	if err := json.Unmarshal([]byte(original), &raw); err != nil {
		t.Fatal(err)
	}
	apps, err := raw.Normalize()
	if err != nil || len(raw.OfficialAccounts) < 2 || raw.OfficialAccount.AppID != "" {
		t.Fatalf("make dev's configuration secret: %v, %d official accounts listed", err, len(raw.OfficialAccounts))
	}
	putConfig := func(t *testing.T, change func(*config.Config)) {
		c := raw
		c.OfficialAccounts = slices.Clone(raw.OfficialAccounts)
		change(&c)
		b, _ := json.Marshal(c)
		putSecret(t, sm, d.ConfigSecret, string(b))
		t.Cleanup(func() { putSecret(t, sm, d.ConfigSecret, original) })
	}
	doctor := func(t *testing.T) (int, string, []string, []string) {
		t.Helper()
		code, out, errOut := wx("--dev", url, "doctor")
		passed, failed := checklist(out)
		// Nothing doctor prints shows a secret's value.
		values := []string{apps.SigningKey, apps.BindKey}
		for _, a := range apps.AllApps() {
			app, _ := apps.App(a.Kind, a.AppID)
			values = append(values, app.Secret)
		}
		for _, oa := range apps.OfficialAccountList() {
			values = append(values, oa.Token, oa.EncodingAESKey)
		}
		for _, v := range values {
			if v != "" && strings.Contains(out+errOut, v) {
				t.Errorf("doctor printed a secret value:\n%s%s", out, errOut)
			}
		}
		return code, out + errOut, passed, failed
	}

	t.Run("make_dev_passes", func(t *testing.T) {
		code, out, passed, failed := doctor(t)
		if code != 0 || len(failed) != 0 {
			t.Fatalf("exit %d, want 0:\n%s", code, out)
		}
		wants := []string{
			"✓ configuration secret: complete and well-formed (mini programs " + apps.MiniProgram.AppID + " (default), ",
			"✓ queues: ",
			"✓ dead-letter queues empty: ",
			"✓ alarms: ",
		}
		// Every app's token, each official account's push URL.
		for _, k := range []config.Kind{config.KindMiniProgram, config.KindOfficialAccount} {
			for _, a := range apps.Apps(k) {
				wants = append(wants, "✓ access token of the "+k.Name()+" "+a.AppID+": fresh, expires in ")
			}
		}
		for _, a := range d.Apps {
			if a.PushURL != "" {
				wants = append(wants, "✓ push URL "+a.PushURL+": answers WeChat's signed URL check")
			}
		}
		if len(wants) != 4+5+2 {
			t.Errorf("make dev has %d apps with a token or a push URL, want 7: %+v", len(wants)-4, d.Apps)
		}
		for _, want := range wants {
			if !strings.Contains(strings.Join(passed, "\n"), want) {
				t.Errorf("no line %q in\n%s", want, out)
			}
		}
		for _, dlq := range []string{"PushRetryDLQ", "SendDLQ", "SyncDLQ"} {
			if !strings.Contains(out, dlq) {
				t.Errorf("the dead-letter queue %s is not checked:\n%s", dlq, out)
			}
		}
	})

	oa, oa2, mp2 := apps.OfficialAccount.AppID, raw.OfficialAccounts[1].AppID, raw.MiniPrograms[1].AppID
	for _, tc := range []struct {
		name      string
		brk       func(t *testing.T)
		want, fix string
	}{
		{"bad_configuration_secret", func(t *testing.T) {
			putConfig(t, func(c *config.Config) {
				c.OfficialAccounts[0].EncodingAESKey = c.OfficialAccounts[0].EncodingAESKey[:42]
			})
		}, "✗ configuration secret: official_accounts[0].encoding_aes_key: not 43 letters or digits (42 characters)",
			"EncodingAESKey (消息加解密密钥)"},

		{"no_token_and_40164_recorded", func(t *testing.T) {
			// As on a first deploy: the token secret is empty and WeChat
			// refuses the refresher's IP. The refresher records why.
			post(t, sandbox.URL+"/sandbox/apps/"+oa+"/token-error", `{"errcode": 40164}`)
			putSecret(t, sm, d.Resources[oaTokenSecretID].ID, "{}")
			post(t, url+"/2015-03-31/functions/TokenRefresherFunction/invocations", `{"appid": "`+oa+`"}`)
			t.Cleanup(func() {
				post(t, sandbox.URL+"/sandbox/apps/"+oa+"/token-error", `{"errcode": 0}`)
				post(t, url+"/2015-03-31/functions/TokenRefresherFunction/invocations", `{"appid": "`+oa+`"}`)
			})
		}, "✗ access token of the official account " + oa + ": no token yet; the refresher's last attempt (",
			"WeChat refuses token calls from the refresher's egress IP (its NAT gateway's Elastic IP): add it to the service account's API IP whitelist"},

		{"push_url_with_another_token", func(t *testing.T) {
			// The secret's Token changed; follow-event still runs with the
			// one it read at its start.
			putConfig(t, func(c *config.Config) { c.OfficialAccounts[0].Token = "anotherToken2024" })
		}, "✗ push URL " + d.PushURL + ": refused a URL check signed with the configuration secret's token of official account " + oa + " (HTTP 403)",
			"follow-event runs with another Token than the configuration secret's"},

		{"second_push_url_with_another_token", func(t *testing.T) {
			putConfig(t, func(c *config.Config) { c.OfficialAccounts[1].Token = "anotherToken2024" })
		}, "✗ push URL " + d.PushURL + "/" + oa2 + ": refused a URL check signed with the configuration secret's token of official account " + oa2 + " (HTTP 403)",
			"follow-event runs with another Token"},

		{"no_token_yet_for_the_second_mini_program", func(t *testing.T) {
			// Its secret, which the refresher created under the prefix,
			// emptied.
			putSecret(t, sm, d.TokenSecretPrefix+mp2, "{}")
			t.Cleanup(func() {
				post(t, url+"/2015-03-31/functions/TokenRefresherFunction/invocations", `{"appid": "`+mp2+`"}`)
			})
		}, "✗ access token of the mini program " + mp2 + ": no token yet", "run it now: aws lambda invoke --endpoint-url " + url},

		{"message_in_a_dead_letter_queue", func(t *testing.T) {
			dlq := d.Resources["SendDLQ"].ID
			if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(`{"id":"dead"}`)}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(dlq)}) })
		}, "✗ dead-letter queue SendDLQ: 1 message", "aws sqs start-message-move-task --source-arn arn:aws:sqs:"},

		{"alarm_in_alarm", func(t *testing.T) {
			name := d.Resources["SendDLQAlarm"].ID
			setAlarm(t, cw, name, cwtypes.StateValueAlarm)
			t.Cleanup(func() { setAlarm(t, cw, name, cwtypes.StateValueOk) })
		}, "✗ alarm SendDLQAlarm: in ALARM since ", "docs/operations.md, SendDLQAlarm, says what it means"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.brk(t)
			code, out, _, failed := doctor(t)
			if code != 1 || len(failed) != 1 || !strings.HasPrefix(failed[0], tc.want) || !strings.Contains(failed[0], "\n    fix: ") || !strings.Contains(failed[0], tc.fix) {
				t.Fatalf("exit %d; want exit 1 and one ✗ line\n  %s\nwith the fix\n  %s\ngot\n%s", code, tc.want, tc.fix, out)
			}
			if !strings.Contains(out, "wxctl: doctor: 1 of ") {
				t.Errorf("no summary:\n%s", out)
			}
		})
	}
}

// TestDoctorFindsAStacksResources: without --dev, doctor finds what it
// checks from the CloudFormation stack named by -stack or WXB_STACK: its
// resources (every page of them) and its PushUrl output. Given make dev's
// resources as a stack's, it finds all well, as with --dev.
func TestDoctorFindsAStacksResources(t *testing.T) {
	url := devURL(t)
	bareMachine(t)
	d, err := loadDevstack(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	cf := httptest.NewServer(cloudFormation{"wxbridge-dev": {resources: d.Resources, outputs: map[string]string{pushURLOutput: d.PushURL}}})
	defer cf.Close()
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": d.AWSEndpointURL, "AWS_ENDPOINT_URL_CLOUDFORMATION": cf.URL,
		"AWS_REGION": d.Region, "AWS_ACCESS_KEY_ID": d.AccessKeyID, "AWS_SECRET_ACCESS_KEY": d.SecretAccessKey, "WXB_STACK": "wxbridge-dev"} {
		t.Setenv(k, v)
	}
	code, out, errOut := wx("doctor")
	passed, failed := checklist(out)
	_, devOut, _ := wx("--dev", url, "doctor")
	devPassed, _ := checklist(devOut)
	if code != 0 || len(failed) != 0 || fmt.Sprint(passed) != fmt.Sprint(devPassed) || !strings.HasPrefix(out, "wxctl doctor: stack wxbridge-dev in us-east-1\n") {
		t.Fatalf("exit %d, want 0 and the checklist of --dev:\n%s%s\n--dev:\n%s", code, out, errOut, devOut)
	}

	t.Setenv("WXB_STACK", "")
	code, out, errOut = wx("doctor", "-stack", "wxbridge-prod")
	if code != 1 || out != "" || !strings.Contains(errOut, "stack wxbridge-prod") || !strings.Contains(errOut, "Stack with id wxbridge-prod does not exist") {
		t.Errorf("an unknown stack: exit %d, %q %q", code, out, errOut)
	}
	code, _, errOut = wx("doctor")
	if code != 2 || !strings.Contains(errOut, "which stack?") {
		t.Errorf("no stack: exit %d, %q", code, errOut)
	}

	// Without CloudFormation, the flags name the resources.
	r := func(id string) string { return d.Resources[id].ID }
	code, out, errOut = wx("doctor", "-app-secret", r(configSecretID), "-mp-token-secret", r(mpTokenSecretID), "-oa-token-secret", r(oaTokenSecretID),
		"-token-secret-prefix", d.TokenSecretPrefix, "-push-url", d.PushURL, "-queues", r("SendQueue")+","+r("SendDLQ"), "-alarms", r("SendDLQAlarm")+","+r("SyncDLQAlarm"))
	passed, failed = checklist(out)
	// The configuration, 5 tokens, 2 push URLs, the queues, the
	// dead-letter queue and the alarms.
	if code != 0 || len(failed) != 0 || len(passed) != 11 || !strings.Contains(out, "✓ queues: wxbridge-dev-SendQueue\n✓ dead-letter queues empty: wxbridge-dev-SendDLQ\n✓ alarms: 2, none in ALARM") {
		t.Errorf("resources from the flags: exit %d:\n%s%s", code, out, errOut)
	}
}

// TestTokenCheck: what doctor says of each state a token secret can be in,
// as the token-refresher writes it (shared/tokens.Stored).
func TestTokenCheck(t *testing.T) {
	url := devURL(t)
	bareMachine(t)
	ctx := context.Background()
	d, err := loadDevstack(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(devAWS(d))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	name := fmt.Sprintf("doctor-token-%d", now.UnixNano()+time.Now().UnixNano())
	out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String("{}")})
	if err != nil {
		t.Fatal(err)
	}
	doc := &doctor{stack: stack{resources: map[string]resource{mpTokenSecretID: {ID: *out.ARN}, refresherID: {ID: "wxb-TokenRefresher-1"}}}, secrets: sm, now: func() time.Time { return now }}
	a := app{kind: "mini program", appid: "wx5a0dbe0c0de00001", secretID: mpTokenSecretID, whitelist: "WHITELIST-PAGE"}
	const token = "84_tOkEnVaLuE-never-printed"
	fresh := tokens.Stored{AccessToken: token, ExpiresAt: now.Add(90 * time.Minute), RefreshedAt: now.Add(-30 * time.Minute)}
	ipRefused := &tokens.Failure{At: now.Add(-2 * time.Minute), API: "/cgi-bin/stable_token", ErrCode: 40164,
		ErrMsg: "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist", RID: "65e1b2c3-1a2b3c4d-5e6f7a8b", Class: "config"}
	busy := &tokens.Failure{At: now.Add(-time.Minute), API: "/cgi-bin/stable_token", ErrCode: -1, ErrMsg: "system error", Class: "transient"}
	with := func(s tokens.Stored, f *tokens.Failure) tokens.Stored { s.Failure = f; return s }
	for _, tc := range []struct {
		name   string
		stored tokens.Stored
		ok     bool
		want   []string
	}{
		{"fresh", fresh, true, []string{"access token of the mini program wx5a0dbe0c0de00001: fresh, expires in 1h30m0s"}},
		{"fresh_after_a_passing_failure", with(fresh, busy), true, []string{"fresh, expires in 1h30m0s (the last refresh, 1m0s ago, failed: errcode -1 system error; it passes by itself)"}},
		{"valid_but_refused_since", with(fresh, ipRefused), false, []string{"still valid for 1h30m0s, but the refresher's last attempt (2m0s ago) failed: errcode 40164",
			"WeChat refuses token calls from 203.0.113.9: add it to WHITELIST-PAGE"}},
		{"none_and_40164", with(tokens.Stored{}, ipRefused), false, []string{
			"no token yet; the refresher's last attempt (2m0s ago) failed: errcode 40164 invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist (rid 65e1b2c3-1a2b3c4d-5e6f7a8b)",
			"then run the refresher: aws lambda invoke --function-name wxb-TokenRefresher-1 --payload '{}'"}},
		{"none_never_refreshed", tokens.Stored{}, false, []string{"no token yet", "it runs every 5 minutes; run it now: aws lambda invoke --function-name wxb-TokenRefresher-1"}},
		{"expired_without_failure", tokens.Stored{AccessToken: token, ExpiresAt: now.Add(-10 * time.Minute)}, false, []string{"expired 10m0s ago", "so it is not running"}},
		{"expired_and_quota", with(tokens.Stored{AccessToken: token, ExpiresAt: now.Add(-time.Hour)}, &tokens.Failure{At: now, ErrCode: 45009, ErrMsg: "reach max api daily quota limit", Class: "quota"}), false,
			[]string{"expired 1h0m0s ago; the refresher's last attempt (0s ago) failed: errcode 45009", "the daily quota of token calls is used up"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(tc.stored)
			putSecret(t, sm, *out.ARN, string(b))
			r := doc.token(ctx, a)
			text := r.what + "\n" + r.fix
			if r.ok != tc.ok || strings.Contains(text, token) {
				t.Errorf("ok = %v, want %v: %s", r.ok, tc.ok, text)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("%q not in\n%s", w, text)
				}
			}
		})
	}
}

// TestDevstackAlarms: make dev has every alarm of template.yaml in moto's
// CloudWatch, as a deployed stack has them, its dimensions and metric
// queries resolved to the devstack's queues and functions, for doctor to
// check.
func TestDevstackAlarms(t *testing.T) {
	d, err := loadDevstack(context.Background(), devURL(t))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	want := tpl.ResourcesOf(typeAlarm)
	got := stack{resources: d.Resources}.ofType(typeAlarm)
	if len(want) < 20 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the devstack's alarms\n  %v\nthe template's\n  %v", got, want)
	}
	var names []string
	for _, id := range []string{"SendDLQAlarm", "LoginErrorsAlarm", "TokenRefreshFailedAlarm"} {
		names = append(names, d.Resources[id].ID)
	}
	out, err := cloudWatch(devAWS(d)).DescribeAlarms(context.Background(), &cloudwatch.DescribeAlarmsInput{AlarmNames: names})
	if err != nil || len(out.MetricAlarms) != 3 {
		t.Fatalf("DescribeAlarms(%v): %v, %d alarms", names, err, len(out.MetricAlarms))
	}
	by := map[string]cwtypes.MetricAlarm{}
	for _, a := range out.MetricAlarms {
		by[aws.ToString(a.AlarmName)] = a
	}
	dim := func(a cwtypes.MetricAlarm) string {
		if len(a.Dimensions) != 1 {
			return fmt.Sprint(a.Dimensions)
		}
		return aws.ToString(a.Dimensions[0].Name) + "=" + aws.ToString(a.Dimensions[0].Value)
	}
	sendDLQ := d.Resources["SendDLQ"].ID
	if a := by[names[0]]; dim(a) != "QueueName="+sendDLQ[strings.LastIndex(sendDLQ, "/")+1:] || aws.ToString(a.MetricName) != "ApproximateNumberOfMessagesVisible" || aws.ToFloat64(a.Threshold) != 0 {
		t.Errorf("SendDLQAlarm: %s %s %v", dim(a), aws.ToString(a.MetricName), aws.ToFloat64(a.Threshold))
	}
	if a := by[names[1]]; dim(a) != "FunctionName=LoginFunction" || a.ComparisonOperator != cwtypes.ComparisonOperatorGreaterThanThreshold {
		t.Errorf("LoginErrorsAlarm: %s %s", dim(a), a.ComparisonOperator)
	}
	if a := by[names[2]]; len(a.Metrics) != 1 || !strings.HasPrefix(aws.ToString(a.Metrics[0].Expression), "SELECT SUM(TokenRefresh) FROM SCHEMA(") || aws.ToInt32(a.EvaluationPeriods) != 2 {
		t.Errorf("TokenRefreshFailedAlarm: %+v", a.Metrics)
	}
}
