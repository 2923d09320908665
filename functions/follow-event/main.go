// Command follow-event is the official account's server push endpoint
// (GET and POST /wechat/push) and the consumer of its retry queue.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/functions/follow-event/handler"
	"wxbridge/shared/apps"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/follow"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

func main() {
	log := observe.Logger(os.Stdout, "follow-event")
	h, err := build(context.Background(), log)
	if err != nil {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

func build(ctx context.Context, log *slog.Logger) (*handler.Handler, error) {
	env, err := awsenv.Require("WXB_TABLE", "WXB_APP_SECRET", "WXB_PUSH_RETRY_QUEUE", tokens.EnvOfficialAccountSecret, tokens.EnvRefresher)
	if err != nil {
		return nil, err
	}
	window := push.DefaultWindow
	if v := os.Getenv("WXB_PUSH_WINDOW"); v != "" {
		if window, err = time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("WXB_PUSH_WINDOW: %w", err)
		}
	}
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	sm := secretsmanager.NewFromConfig(cfg)
	appCfg, err := apps.Load(ctx, sm, env["WXB_APP_SECRET"])
	if err != nil {
		return nil, err
	}
	if err := appCfg.Check(apps.NeedOfficialAccount); err != nil {
		return nil, err
	}
	oa := appCfg.OfficialAccount
	receiver, err := push.NewReceiver(oa.Token, oa.EncodingAESKey, oa.AppID, window)
	if err != nil {
		return nil, err
	}
	metrics := observe.NewMetrics(os.Stdout, "follow-event")
	source := tokens.NewSource(tokens.Options{
		Secrets:   tokens.SecretIDs(appCfg, "", env[tokens.EnvOfficialAccountSecret]),
		Reader:    sm,
		Refresher: tokens.LambdaInvoker{Client: awslambda.NewFromConfig(cfg), Function: env[tokens.EnvRefresher]},
		Log:       log,
		Metrics:   metrics,
	})
	db := dynamodb.NewFromConfig(cfg)
	proc := &follow.Processor{
		AppID:   oa.AppID,
		WeChat:  wechat.New(wechat.Options{APIBase: os.Getenv("WXB_WECHAT_API_BASE"), Tokens: source}),
		People:  identity.NewStore(db, env["WXB_TABLE"]),
		Log:     log,
		Metrics: metrics,
	}
	if appCfg.Check(apps.NeedBindKey) == nil {
		proc.Bindings = binding.NewVerifier(appCfg.BindKey, appCfg.BindKeyPrevious)
	}
	return &handler.Handler{
		Receiver:  receiver,
		Processor: proc,
		Claims:    idempotency.NewStore(db, env["WXB_TABLE"], "push"),
		Queue:     sqs.NewFromConfig(cfg),
		QueueURL:  env["WXB_PUSH_RETRY_QUEUE"],
		Log:       log,
		Metrics:   metrics,
	}, nil
}
