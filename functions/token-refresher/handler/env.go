package handler

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// FromEnv builds the token-refresher from its environment: WXB_TABLE,
// WXB_APP_SECRET, the token secrets (tokens.EnvMiniProgramSecret,
// tokens.EnvOfficialAccountSecret, tokens.EnvSecretPrefix) and optionally
// WXB_WECHAT_API_BASE.
func FromEnv(ctx context.Context, env awsenv.Env) (*Handler, error) {
	vars, err := env.Require("WXB_TABLE", "WXB_APP_SECRET")
	if err != nil {
		return nil, err
	}
	sm := secretsmanager.NewFromConfig(env.AWS)
	cfg, err := config.Load(ctx, sm, vars["WXB_APP_SECRET"])
	if err != nil {
		return nil, err
	}
	metrics := observe.NewMetrics(env.Out, "token-refresher")
	return New(Options{
		Apps:    Apps(cfg, env.Get(tokens.EnvMiniProgramSecret), env.Get(tokens.EnvOfficialAccountSecret), env.Get(tokens.EnvSecretPrefix)),
		WeChat:  wechat.New(wechat.Options{APIBase: env.Get("WXB_WECHAT_API_BASE"), Metrics: metrics}),
		Secrets: sm,
		DB:      dynamodb.NewFromConfig(env.AWS),
		Table:   vars["WXB_TABLE"],
		Log:     observe.Logger(env.Out, "token-refresher"),
		Metrics: metrics,
	})
}

// Build is the function's entry point for awsenv.Main and the devstack: the
// Lambda handler, built from env.
func Build(ctx context.Context, env awsenv.Env) (any, error) {
	h, err := FromEnv(ctx, env)
	if err != nil {
		return nil, err
	}
	return h.Handle, nil
}
