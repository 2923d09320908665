package tokens_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

func jsonOf(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func TestStoredJSON(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	st := tokens.Stored{AccessToken: "ACCESS", ExpiresAt: at.Add(2 * time.Hour), RefreshedAt: at}
	b, _ := jsonOf(st)
	if b != `{"access_token":"ACCESS","expires_at":"2026-03-02T12:00:00Z","refreshed_at":"2026-03-02T10:00:00Z"}` {
		t.Fatalf("JSON %s", b)
	}
	// What the stack stores at creation reads as no token.
	var empty tokens.Stored
	if err := json.Unmarshal([]byte(`{}`), &empty); err != nil || empty.Usable(at) {
		t.Fatalf("{} -> %v, %v", empty, err)
	}
	if !st.Usable(at.Add(2*time.Hour-2*time.Second)) || st.Usable(at.Add(2*time.Hour-time.Second)) {
		t.Fatal("Usable: a token is usable until one second before its expiry")
	}
}

func TestTokensStayOutOfLogs(t *testing.T) {
	st := tokens.Stored{AccessToken: "SECRET-TOKEN-VALUE", ExpiresAt: time.Now()}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "stored", st)
	for _, s := range []string{fmt.Sprint(st), fmt.Sprintf("%v %+v %#v %s", st, st, st, st), buf.String()} {
		if strings.Contains(s, "SECRET-TOKEN-VALUE") {
			t.Fatalf("token leaked: %s", s)
		}
	}
	if !strings.Contains(buf.String(), tokens.Fingerprint(st.AccessToken)) {
		t.Fatal("the log line should name the token by its fingerprint")
	}
	if fp := tokens.Fingerprint("a"); len(fp) != 32 || fp == tokens.Fingerprint("b") || tokens.Fingerprint("") != "" {
		t.Fatalf("Fingerprint: %q", fp)
	}
}

func TestFailureOf(t *testing.T) {
	at := time.Now()
	we := &wechat.Error{API: "/cgi-bin/stable_token", Code: 40164, Message: "invalid ip, not in whitelist", RID: "r-1"}
	f := tokens.FailureOf(fmt.Errorf("wrapped: %w", we), at)
	if f.ErrCode != 40164 || f.RID != "r-1" || f.Class != "config" || f.API != we.API {
		t.Fatalf("%+v", f)
	}
	if !f.Same(&tokens.Failure{API: we.API, ErrCode: 40164, Class: "config", RID: "other"}) || f.Same(nil) {
		t.Fatal("Same compares errcode, API and class only")
	}
	g := tokens.FailureOf(context.DeadlineExceeded, at)
	if g.Class != "transient" || g.ErrCode != 0 || g.ErrMsg == "" {
		t.Fatalf("%+v", g)
	}
}

func TestSecretIDs(t *testing.T) {
	app := func(id string) config.App { return config.App{AppID: id, Secret: "s"} }
	oa := func(id string) config.OfficialAccount { return config.OfficialAccount{App: app(id)} }
	multi := config.Config{
		MiniProgram:      app("wxmp"),
		OfficialAccount:  oa("wxoa"),
		MiniPrograms:     []config.App{app("wxmp"), app("wxmp2")},
		OfficialAccounts: []config.OfficialAccount{oa("wxoa2")},
		WebsiteApps:      []config.App{app("wxweb")},
		MobileApps:       []config.App{app("wxapp")},
	}
	for _, tc := range []struct {
		name   string
		cfg    config.Config
		prefix string
		want   map[string]string
	}{
		{"the old single-app shape keeps its two secrets", config.Config{MiniProgram: app("wxmp"), OfficialAccount: oa("wxoa")}, "stack/token/",
			map[string]string{"wxmp": "arn:mp", "wxoa": "arn:oa"}},
		{"an app without an appid is left out", config.Config{MiniProgram: app("wxmp")}, "",
			map[string]string{"wxmp": "arn:mp"}},
		{"every other mini program and official account takes prefix+appid; website and mobile apps none", multi, "stack/token/",
			map[string]string{"wxmp": "arn:mp", "wxoa": "arn:oa", "wxmp2": "stack/token/wxmp2", "wxoa2": "stack/token/wxoa2"}},
		{"without a prefix only the defaults have secrets", multi, "",
			map[string]string{"wxmp": "arn:mp", "wxoa": "arn:oa"}},
		{"the first of a list is the default when the single field is empty", config.Config{MiniPrograms: []config.App{app("wxa"), app("wxb")}}, "p/",
			map[string]string{"wxa": "arn:mp", "wxb": "p/wxb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokens.SecretIDs(tc.cfg, "arn:mp", "arn:oa", tc.prefix); !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// The Lambda invoker is checked against a recording HTTP server rather than
// moto: moto answers an asynchronous invoke only after trying to run the
// function in Docker. What matters is the request the real SDK sends.
func TestLambdaInvoker(t *testing.T) {
	var got struct {
		path, invocationType string
		body                 []byte
	}
	status := http.StatusAccepted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.path, got.invocationType = r.URL.Path, r.Header.Get("X-Amz-Invocation-Type")
		got.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	client := lambda.NewFromConfig(aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint:     aws.String(srv.URL),
		RetryMaxAttempts: 1,
	})
	inv := tokens.LambdaInvoker{Client: client, Function: "wxbridge-TokenRefresher"}
	req := tokens.RefreshRequest{AppID: appid, Refused: tokens.Fingerprint("bad")}
	if err := inv.Request(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got.path != "/2015-03-31/functions/wxbridge-TokenRefresher/invocations" || got.invocationType != "Event" {
		t.Fatalf("path %q, invocation type %q", got.path, got.invocationType)
	}
	var sent tokens.RefreshRequest
	if err := json.Unmarshal(got.body, &sent); err != nil || sent != req {
		t.Fatalf("payload %s", got.body)
	}
	if bytes.Contains(got.body, []byte("bad")) {
		t.Fatal("the payload carries the token instead of its fingerprint")
	}

	status = http.StatusOK // a synchronous answer means the invoke was not queued
	if err := inv.Request(context.Background(), req); err == nil {
		t.Fatal("want an error for a non-202 answer")
	}
	status = http.StatusTooManyRequests
	if err := inv.Request(context.Background(), req); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("throttled invoke: %v", err)
	}
}

// rawSecret creates a secret holding value as is (nil: created without a
// value, as a stack may create it) and returns its ARN.
func rawSecret(t *testing.T, value *string) string {
	t.Helper()
	sm := secretsmanager.NewFromConfig(awstest.Config(nil))
	out, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name: aws.String(awstest.Name(t, "wxb")), SecretString: value,
	})
	if err != nil {
		t.Fatalf("create secret: %v", err)
	}
	t.Cleanup(func() {
		sm.DeleteSecret(context.Background(), &secretsmanager.DeleteSecretInput{SecretId: out.ARN, ForceDeleteWithoutRecovery: aws.Bool(true)})
	})
	return *out.ARN
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	sm := secretsmanager.NewFromConfig(awstest.Config(nil))
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	stored := tokens.Stored{AccessToken: "TOKEN-VALUE-1", ExpiresAt: at.Add(2 * time.Hour), RefreshedAt: at}
	b, _ := jsonOf(stored)
	for _, c := range []struct {
		name  string
		value *string
		want  tokens.Stored
	}{
		{"a_token", aws.String(b), stored},
		{"created_by_the_stack", aws.String("{}"), tokens.Stored{}},
		{"no_value_yet", nil, tokens.Stored{}},
		{"empty", aws.String(""), tokens.Stored{}},
		{"placeholder", aws.String("placeholder"), tokens.Stored{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := tokens.Load(ctx, sm, rawSecret(t, c.value))
			if err != nil || st.AccessToken != c.want.AccessToken || !st.ExpiresAt.Equal(c.want.ExpiresAt) {
				t.Fatalf("Load = %v, %v; want %v", st, err, c.want)
			}
		})
	}
	t.Run("a_broken_record_is_an_error_that_hides_the_value", func(t *testing.T) {
		_, err := tokens.Load(ctx, sm, rawSecret(t, aws.String(`{"access_token":"TOKEN-VALUE-2","expires_at":"TOKEN-VALUE-2"}`)))
		if !errors.Is(err, awsenv.ErrSecretFormat) || strings.Contains(err.Error(), "TOKEN-VALUE") {
			t.Fatalf("err %v, want ErrSecretFormat without the value", err)
		}
	})
	t.Run("a_secret_not_created_yet_reads_as_no_token", func(t *testing.T) {
		// An app beyond the defaults: the refresher creates its secret.
		if st, err := tokens.Load(ctx, sm, awstest.Name(t, "wxb")+"/token/wxnosuchapp"); err != nil || st.AccessToken != "" {
			t.Fatalf("Load = %v, %v; want no token and no error", st, err)
		}
	})
	t.Run("an_unreadable_secret_is_an_error", func(t *testing.T) {
		denied := secretsmanager.NewFromConfig(awstest.Config(nil), func(o *secretsmanager.Options) {
			o.Retryer = aws.NopRetryer{}
			o.BaseEndpoint = aws.String("http://127.0.0.1:1") // nothing listens
		})
		if _, err := tokens.Load(ctx, denied, "wxb-any"); err == nil {
			t.Fatal("want an error when Secrets Manager cannot be reached")
		}
	})
}
