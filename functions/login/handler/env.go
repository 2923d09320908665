package handler

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/reach"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// FromEnv builds the login function from its environment (template.yaml's
// variables): WXB_TABLE, WXB_APP_SECRET, the mini programs' token secrets
// and the refresher (shared/tokens: getuserphonenumber takes an access
// token), and optionally WXB_LONG_TERM_TEMPLATES and WXB_WECHAT_API_BASE.
func FromEnv(ctx context.Context, env awsenv.Env) (*Handler, error) {
	vars, err := env.Require("WXB_TABLE", "WXB_APP_SECRET")
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(ctx, secretsmanager.NewFromConfig(env.AWS), vars["WXB_APP_SECRET"])
	if err != nil {
		return nil, err
	}
	log, metrics := observe.Logger(env.Out, "login"), observe.NewMetrics(env.Out, "login")
	wc := wechat.New(wechat.Options{APIBase: env.Get("WXB_WECHAT_API_BASE"), Tokens: tokens.FromEnv(env, cfg, log, metrics), Metrics: metrics})
	db := dynamodb.NewFromConfig(env.AWS)
	people := identity.NewStore(db, vars["WXB_TABLE"])
	people.Metrics = metrics // merges and binding conflicts, counted where they happen
	return New(cfg, wc, people, log, metrics, WithTokenUses(binding.NewUses(db, vars["WXB_TABLE"])),
		WithConsents(reach.New(db, vars["WXB_TABLE"]), reach.ParseLongTerm(env.Get("WXB_LONG_TERM_TEMPLATES"))))
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
