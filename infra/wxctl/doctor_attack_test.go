package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/config"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat/push"
)

// TestAttackDoctor breaks each thing wxctl doctor checks, one at a time,
// in ways the devstack test does not: a secret that is not JSON or not
// there, a mini program's key of the wrong shape, a token secret missing
// or stale, a push URL that is down, malformed, someone else's or signed
// with another Token, a queue and an alarm that do not exist. Each run
// gives exactly its one ✗ and exit status 1, and no run prints any secret
// value, the push check's signature included. The stack is named by the
// flags, in the test binary's moto; no devstack is needed.
func TestAttackDoctor(t *testing.T) {
	bareMachine(t)
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": sharedMoto, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"} {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	cfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(sharedMoto), Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")}
	sm, sq, cw := secretsmanager.NewFromConfig(cfg), sqs.NewFromConfig(cfg), cloudWatch(cfg)
	prefix := "doctor-attack-" + randomHex(4)

	good := config.Config{
		MiniProgram: config.App{AppID: "wx5a0dbe0c0de00001", Secret: "0123456789abcdef0123456789abcdef"},
		OfficialAccount: config.OfficialAccount{App: config.App{AppID: "wx5a0dbe0c0de00002", Secret: "fedcba9876543210fedcba9876543210"},
			Token: "pushTokenAttack2026", EncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"},
		SigningKey: "signing-key-never-printed-0123456789-abcdef",
		BindKey:    "bind-key-never-printed-0123456789-abcdefgh",
	}
	const mpToken, oaToken = "84_mpAccessTokenNeverPrinted", "84_oaAccessTokenNeverPrinted"
	secretValues := []string{good.MiniProgram.Secret, good.OfficialAccount.Secret, good.OfficialAccount.Token, good.OfficialAccount.EncodingAESKey,
		good.SigningKey, good.BindKey, mpToken, oaToken}

	n := 0
	secret := func(v any) string {
		t.Helper()
		s, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			s = string(b)
		}
		n++
		out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(prefix + "-" + strings.Repeat("s", n)), SecretString: aws.String(s)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: out.ARN, ForceDeleteWithoutRecovery: aws.Bool(true)})
		})
		return *out.ARN
	}
	with := func(change func(*config.Config)) string {
		c := good
		change(&c)
		return secret(c)
	}
	now := time.Now()
	fresh := func(tok string) string {
		return secret(tokens.Stored{AccessToken: tok, ExpiresAt: now.Add(90 * time.Minute), RefreshedAt: now.Add(-30 * time.Minute)})
	}

	// follow-event's URL check: the echostr back for a signature made with
	// the Token it was given.
	pushServer := func(token string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if r.Method != http.MethodGet || q.Get("signature") != push.Signature(token, q.Get("timestamp"), q.Get("nonce")) {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			w.Write([]byte(q.Get("echostr")))
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/wechat/push"
	}
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String() + "/wechat/push"
	}()
	notOurs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>welcome</html>")) }))
	t.Cleanup(notOurs.Close)

	dlq, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(prefix + "-SendDLQ")})
	if err != nil {
		t.Fatal(err)
	}
	dlqArn := "arn:aws:sqs:us-east-1:123456789012:" + prefix + "-SendDLQ"
	work, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(prefix + "-SendQueue"),
		Attributes: map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"` + dlqArn + `","maxReceiveCount":"5"}`}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sq.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: work.QueueUrl})
		sq.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: dlq.QueueUrl})
	})
	alarm := prefix + "-SendDLQAlarm"
	if _, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{AlarmName: aws.String(alarm), Namespace: aws.String("AWS/SQS"), MetricName: aws.String("ApproximateNumberOfMessagesVisible"),
		Statistic: cwtypes.StatisticSum, Period: aws.Int32(60), EvaluationPeriods: aws.Int32(1), Threshold: aws.Float64(0), ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cw.DeleteAlarms(ctx, &cloudwatch.DeleteAlarmsInput{AlarmNames: []string{alarm}}) })
	missingQueue := strings.TrimSuffix(*work.QueueUrl, prefix+"-SendQueue") + prefix + "-SyncQueue"

	flags := map[string]string{
		"-app-secret": secret(good), "-mp-token-secret": fresh(mpToken), "-oa-token-secret": fresh(oaToken),
		"-push-url": pushServer(good.OfficialAccount.Token), "-queues": *work.QueueUrl + "," + *dlq.QueueUrl, "-alarms": alarm,
	}
	doctor := func(t *testing.T, over map[string]string) (int, string, []string, []string) {
		t.Helper()
		args := []string{"doctor"}
		for k, v := range flags {
			if o, ok := over[k]; ok {
				v = o
			}
			args = append(args, k, v)
		}
		code, out, errOut := wx(args...)
		passed, failed := checklist(out)
		for _, v := range secretValues {
			if strings.Contains(out+errOut, v) {
				t.Errorf("doctor printed the secret value %q:\n%s%s", v, out, errOut)
			}
		}
		if strings.Contains(out+errOut, "signature") {
			t.Errorf("doctor printed the push check's signature:\n%s%s", out, errOut)
		}
		return code, out + errOut, passed, failed
	}

	t.Run("all_well", func(t *testing.T) {
		code, out, passed, failed := doctor(t, nil)
		if code != 0 || len(failed) != 0 || len(passed) != 7 {
			t.Fatalf("exit %d, %d ✓ and %d ✗; want 0, 7 and 0:\n%s", code, len(passed), len(failed), out)
		}
	})
	notJSON, _ := json.Marshal(good)
	for _, tc := range []struct {
		name string
		over map[string]string
		want string // the one ✗ line starts with it
		fix  string
	}{
		{"configuration_not_JSON", map[string]string{"-app-secret": secret(string(notJSON[:len(notJSON)-40]))},
			"✗ configuration secret: awsenv: secret is not valid JSON for its purpose", "put-secret-value"},
		{"configuration_secret_missing", map[string]string{"-app-secret": prefix + "-none"},
			"✗ configuration secret: awsenv: read secret " + prefix + "-none", "put-secret-value"},
		{"mini_program_appid_not_wx", map[string]string{"-app-secret": with(func(c *config.Config) { c.MiniProgram.AppID = "gh_5a0dbe0c0de0" })},
			"✗ configuration secret: mini_program.appid: not \"wx\" and 16 lowercase hex digits (15 characters)", "the mini program's AppID"},
		{"mini_program_secret_one_short", map[string]string{"-app-secret": with(func(c *config.Config) { c.MiniProgram.Secret = c.MiniProgram.Secret[:31] })},
			"✗ configuration secret: mini_program.secret: not 32 hex digits (31 characters)", "AppSecret"},
		{"signing_key_short", map[string]string{"-app-secret": with(func(c *config.Config) { c.SigningKey = c.SigningKey[:31] })},
			"✗ configuration secret: session_key: 31 bytes, shorter than 32", "openssl rand"},
		// A token secret not there reads as one without a token yet: the
		// refresher creates the secrets of apps beyond the defaults.
		{"mini_program_token_secret_missing", map[string]string{"-mp-token-secret": prefix + "-none"},
			"✗ access token of the mini program wx5a0dbe0c0de00001: no token yet", "run it now"},
		{"mini_program_token_expired", map[string]string{"-mp-token-secret": secret(tokens.Stored{AccessToken: mpToken, ExpiresAt: now.Add(-time.Hour)})},
			"✗ access token of the mini program wx5a0dbe0c0de00001: expired 1h0m", "not running"},
		{"push_url_down", map[string]string{"-push-url": closed}, "✗ push URL " + closed + ": no answer", "WeChat must reach it"},
		{"push_url_malformed", map[string]string{"-push-url": "http://api.exa mple.com/wx/wechat/push"}, "✗ push URL http://api.exa mple.com/wx/wechat/push: not an http(s) URL", "-push-url"},
		{"push_url_without_scheme", map[string]string{"-push-url": "api.example.com/wx/wechat/push"}, "✗ push URL api.example.com/wx/wechat/push: not an http(s) URL", "-push-url"},
		{"push_url_someone_elses", map[string]string{"-push-url": notOurs.URL + "/wechat/push"}, "✗ push URL " + notOurs.URL + "/wechat/push: answered 200 without the echostr", "follow-event"},
		{"push_url_with_another_token", map[string]string{"-push-url": pushServer("anotherToken2026")}, "✗ push URL ", "another Token"},
		{"queue_missing", map[string]string{"-queues": *work.QueueUrl + "," + *dlq.QueueUrl + "," + missingQueue}, "✗ queue " + prefix + "-SyncQueue: missing", "sam deploy"},
		{"alarm_missing", map[string]string{"-alarms": alarm + "," + prefix + "-SyncDLQAlarm"}, "✗ alarms missing: " + prefix + "-SyncDLQAlarm", "sam deploy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, _, failed := doctor(t, tc.over)
			if code != 1 || len(failed) != 1 || !strings.HasPrefix(failed[0], tc.want) || !strings.Contains(failed[0], "\n    fix: ") || !strings.Contains(failed[0], tc.fix) {
				t.Fatalf("exit %d; want exit 1 and one ✗ line\n  %s…\nwith a fix naming %q; got\n%s", code, tc.want, tc.fix, out)
			}
		})
	}
}

// TestAttackDev: wxctl --dev pointed wrong says what is wrong in one line,
// at once, and never falls back to the machine's AWS.
func TestAttackDev(t *testing.T) {
	bareMachine(t)
	notDev := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/html/_dev/config":
			w.Write([]byte("<html>make dev is elsewhere</html>"))
		case "/old/_dev/config":
			w.Write([]byte(`{"api_url": "http://127.0.0.1:8080"}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"Not Found"}`))
		}
	}))
	defer notDev.Close()
	host := strings.TrimPrefix(notDev.URL, "http://")
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"the_API_URL_with_its_base_path", []string{"--dev", notDev.URL + "/wx", "doctor"}, "", notDev.URL + "/wx/_dev/config is not a devstack's configuration: HTTP 404"},
		{"a_web_page", []string{"--dev=" + notDev.URL + "/html", "doctor"}, "", "is not a devstack's configuration"},
		{"an_older_devstack", []string{"--dev", notDev.URL + "/old", "doctor"}, "", "names no AWS endpoint, region or credentials"},
		{"an_address_without_scheme", []string{"--dev", host + "/wx", "doctor"}, "", "http://" + host + "/wx/_dev/config is not a devstack's configuration"},
		{"WXB_DEV_without_scheme", []string{"doctor"}, host + "/wx", "http://" + host + "/wx/_dev/config is not a devstack's configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WXB_DEV", tc.env)
			start := time.Now()
			code, out, errOut := wx(tc.args...)
			if code != 1 || out != "" || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, out %q, err %q; want exit 1 and one line saying %q", code, out, errOut, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s to say so", d)
			}
		})
	}
	// --dev= with nothing after it, or blank, still means make dev: never
	// the machine's AWS.
	for _, args := range [][]string{{"--dev=", "doctor"}, {"-dev=", "doctor"}, {"--dev= ", "doctor"}} {
		if url, rest := devArgs(args, func(string) string { return "" }); url != devDefault || len(rest) != 1 {
			t.Errorf("devArgs(%q) = %q, %q; want %s", args, url, rest, devDefault)
		}
	}
}
