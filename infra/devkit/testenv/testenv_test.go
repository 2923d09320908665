package testenv_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	followersync "wxbridge/functions/follower-sync/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/tokens"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// TestNewWiresEveryPart: the configuration secret reads back, the token
// secrets hold tokens the sandbox accepts, and the table and queues are the
// test's own.
func TestNewWiresEveryPart(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	cfg, err := config.Load(ctx, e.Secrets, e.ConfigSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(config.NeedMiniProgram, config.NeedOfficialAccount, config.NeedSigningKey, config.NeedBindKey); err != nil {
		t.Fatal(err)
	}
	if cfg.OfficialAccount.AppID != sandbox.DevOfficialAccount.AppID || cfg.MiniProgram.Secret != sandbox.DevMiniProgram.Secret {
		t.Errorf("config = %v", cfg)
	}
	// user/get with the stored OA token: the sandbox accepts it.
	e.Sandbox.CreateFollowers(sandbox.FollowersSpec{Count: 3})
	if p, err := e.WeChat.FollowerPage(ctx, cfg.OfficialAccount.AppID, ""); err != nil || len(p.OpenIDs) != 3 {
		t.Fatalf("user/get with the stored token: %+v %v", p, err)
	}
	if _, err := e.Tokens.Token(ctx, cfg.MiniProgram.AppID); err != nil {
		t.Errorf("mini-program token: %v", err)
	}
	if _, err := e.DB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &e.Table}); err != nil {
		t.Fatal(err)
	}
	if e.Counter.Counts()["DescribeTable"] != 1 {
		t.Error("DB's requests are not counted")
	}
	url := e.Queue("SyncQueue")
	if again := e.Queue("SyncQueue"); again != url || !strings.Contains(url, "SyncQueue") {
		t.Errorf("queue %q, then %q", url, again)
	}
	if _, err := e.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url}); err != nil {
		t.Fatal(err)
	}
}

// TestOptions: Tokens leaves the other secrets as a fresh deploy has them,
// Configure changes the secret, Sandbox the sandbox.
func TestOptions(t *testing.T) {
	e := testenv.New(t,
		testenv.Tokens(),
		testenv.Configure(func(c *config.Config) { c.OfficialAccount = config.OfficialAccount{}; c.BindKey = "" }),
		testenv.Sandbox(func(c *sandbox.Config) { c.RevealUnionID = false }),
	)
	ctx := context.Background()
	var stored tokens.Stored
	for appid, arn := range e.TokenSecrets {
		stored = tokens.Stored{}
		if err := awsenv.SecretJSON(ctx, e.Secrets, arn, &stored); err != nil || stored.AccessToken != "" {
			t.Errorf("%s token secret = %+v, %v; want {}", appid, stored, err)
		}
	}
	cfg, err := config.Load(ctx, e.Secrets, e.ConfigSecret)
	if err != nil || cfg.OfficialAccount.AppID != "" || cfg.BindKey != "" || cfg.SigningKey != testenv.SigningKey {
		t.Errorf("config = %v, %v", cfg, err)
	}
	if e.Sandbox.Calls("/cgi-bin/stable_token") != 0 {
		t.Error("a token was fetched")
	}
}

// TestFunctionEnvResolvesTheTemplate: every variable template.yaml gives
// every function resolves, and a function builds from it as in Lambda.
func TestFunctionEnvResolvesTheTemplate(t *testing.T) {
	e := testenv.New(t)
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	fns, err := tpl.Functions()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fns {
		env := e.FunctionEnv(f.LogicalID)
		for name, v := range f.Env {
			if _, param := tpl.Parameters[v.Ref]; env.Get(name) == "" && v.Ref != "" && !param {
				t.Errorf("%s: %s (!Ref %s) resolved to nothing", f.LogicalID, name, v.Ref)
			}
		}
	}
	env := e.FunctionEnv("FollowerSyncFunction", "WXB_EXTRA", "x")
	if env.Get("WXB_TABLE") != e.Table || env.Get("WXB_SYNC_QUEUE") != e.Queue("SyncQueue") ||
		env.Get(tokens.EnvOfficialAccountSecret) != e.TokenSecrets[sandbox.DevOfficialAccount.AppID] ||
		env.Get("WXB_WECHAT_API_BASE") != e.URL || env.Get("WXB_EXTRA") != "x" || env.Get(tokens.EnvRefresher) != "TokenRefresherFunction" {
		t.Errorf("follower-sync environment: %v", env.Vars)
	}
	if _, err := followersync.FromEnv(context.Background(), env); err != nil {
		t.Fatalf("follower-sync from its environment: %v", err)
	}
	if got := testenv.New(t, testenv.Parameter("PublicUrl", "https://api.example.com/wx")).FunctionEnv("OAuthCallbackFunction").Get("WXB_PUBLIC_URL"); got != "https://api.example.com/wx" {
		t.Errorf("WXB_PUBLIC_URL = %q", got)
	}
}
