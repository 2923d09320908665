// Command token-refresher keeps each WeChat app's access token in its
// Secrets Manager secret: on the 5-minute schedule, and on asynchronous
// invokes from functions whose token the platform refused. It is the only
// function that calls the token endpoints, so only its egress IP needs to be
// in the accounts' IP whitelists.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/functions/token-refresher/handler"
	"wxbridge/shared/apps"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

func main() {
	ctx := context.Background()
	log := observe.Logger(os.Stdout, "token-refresher")
	fail := func(err error) {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	env, err := awsenv.Require("WXB_TABLE", "WXB_APP_SECRET")
	if err != nil {
		fail(err)
	}
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		fail(err)
	}
	sm := secretsmanager.NewFromConfig(cfg)
	appCfg, err := apps.Load(ctx, sm, env["WXB_APP_SECRET"])
	if err != nil {
		fail(err)
	}
	h, err := handler.New(handler.Options{
		Apps:    handler.Apps(appCfg, os.Getenv(tokens.EnvMiniProgramSecret), os.Getenv(tokens.EnvOfficialAccountSecret)),
		WeChat:  wechat.New(wechat.Options{APIBase: os.Getenv("WXB_WECHAT_API_BASE")}),
		Secrets: sm,
		DB:      dynamodb.NewFromConfig(cfg),
		Table:   env["WXB_TABLE"],
		Log:     log,
		Metrics: observe.NewMetrics(os.Stdout, "token-refresher"),
	})
	if err != nil {
		fail(err)
	}
	lambda.Start(h.Handle)
}
