package handler

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/oauthstate"
	"wxbridge/shared/observe"
	"wxbridge/shared/profiles"
	"wxbridge/shared/wechat"
)

// FromEnv builds the oauth-callback function from its environment:
// WXB_TABLE, WXB_APP_SECRET, WXB_H5_ORIGINS, and optionally WXB_PUBLIC_URL,
// WXB_WECHAT_API_BASE and WXB_WECHAT_OPEN_BASE.
func FromEnv(ctx context.Context, env awsenv.Env) (*Handler, error) {
	vars, err := env.Require("WXB_TABLE", "WXB_APP_SECRET", "WXB_H5_ORIGINS")
	if err != nil {
		return nil, err
	}
	origins, err := ParseOrigins(vars["WXB_H5_ORIGINS"])
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(ctx, secretsmanager.NewFromConfig(env.AWS), vars["WXB_APP_SECRET"])
	if err != nil {
		return nil, err
	}
	db := dynamodb.NewFromConfig(env.AWS)
	metrics := observe.NewMetrics(env.Out, "oauth-callback")
	people := identity.NewStore(db, vars["WXB_TABLE"])
	people.Metrics = metrics // merges a sign-in causes
	return New(cfg, Options{Origins: origins, PublicURL: env.Get("WXB_PUBLIC_URL")}, Deps{
		WeChat:   wechat.New(wechat.Options{APIBase: env.Get("WXB_WECHAT_API_BASE"), OpenBase: env.Get("WXB_WECHAT_OPEN_BASE"), Metrics: metrics}),
		People:   people,
		States:   oauthstate.NewLedger(db, vars["WXB_TABLE"]),
		Profiles: profiles.NewStore(db, vars["WXB_TABLE"]),
		Log:      observe.Logger(env.Out, "oauth-callback"),
		Metrics:  metrics,
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
