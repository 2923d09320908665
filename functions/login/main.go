// Command login is the mini-program login function: POST /mp/login,
// POST /mp/profile and GET /me.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/functions/login/handler"
	"wxbridge/shared/apps"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/wechat"
)

func main() {
	ctx := context.Background()
	log := observe.Logger(os.Stdout, "login")
	env, err := awsenv.Require("WXB_TABLE", "WXB_APP_SECRET")
	if err != nil {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	appCfg, err := apps.Load(ctx, secretsmanager.NewFromConfig(cfg), env["WXB_APP_SECRET"])
	if err != nil {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	wc := wechat.New(wechat.Options{APIBase: os.Getenv("WXB_WECHAT_API_BASE")})
	people := identity.NewStore(dynamodb.NewFromConfig(cfg), env["WXB_TABLE"])
	h, err := handler.New(appCfg, wc, people, log, observe.NewMetrics(os.Stdout, "login"))
	if err != nil {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
