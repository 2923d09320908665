// Command oauth-callback is the official account's web OAuth for H5 pages:
// GET /oauth/authorize and GET /oauth/callback.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/functions/oauth-callback/handler"
	"wxbridge/shared/apps"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/identity"
	"wxbridge/shared/oauthstate"
	"wxbridge/shared/observe"
	"wxbridge/shared/profiles"
	"wxbridge/shared/wechat"
)

func main() {
	ctx := context.Background()
	log := observe.Logger(os.Stdout, "oauth-callback")
	fail := func(err error) {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	env, err := awsenv.Require("WXB_TABLE", "WXB_APP_SECRET", "WXB_H5_ORIGINS")
	if err != nil {
		fail(err)
	}
	origins, err := handler.ParseOrigins(env["WXB_H5_ORIGINS"])
	if err != nil {
		fail(err)
	}
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		fail(err)
	}
	appCfg, err := apps.Load(ctx, secretsmanager.NewFromConfig(cfg), env["WXB_APP_SECRET"])
	if err != nil {
		fail(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	h, err := handler.New(appCfg, handler.Options{Origins: origins, PublicURL: os.Getenv("WXB_PUBLIC_URL")}, handler.Deps{
		WeChat: wechat.New(wechat.Options{
			APIBase:  os.Getenv("WXB_WECHAT_API_BASE"),
			OpenBase: os.Getenv("WXB_WECHAT_OPEN_BASE"),
		}),
		People:   identity.NewStore(db, env["WXB_TABLE"]),
		States:   oauthstate.NewLedger(db, env["WXB_TABLE"]),
		Profiles: profiles.NewStore(db, env["WXB_TABLE"]),
		Log:      log,
		Metrics:  observe.NewMetrics(os.Stdout, "oauth-callback"),
	})
	if err != nil {
		fail(err)
	}
	lambda.Start(h.Handle)
}
