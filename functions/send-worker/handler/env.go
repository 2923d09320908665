package handler

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/observe"
	"wxbridge/shared/reach"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// FromEnv builds the send-worker from its environment: WXB_TABLE,
// WXB_APP_SECRET, WXB_SEND_QUEUE, the token secrets and the refresher
// (shared/tokens), and optionally WXB_SEND_CONCURRENCY,
// WXB_SEND_MAX_ATTEMPTS, WXB_SEND_RECIPIENT_WAIT and WXB_WECHAT_API_BASE.
func FromEnv(ctx context.Context, env awsenv.Env) (*Handler, error) {
	vars, err := env.Require("WXB_TABLE", "WXB_APP_SECRET", "WXB_SEND_QUEUE")
	if err != nil {
		return nil, err
	}
	concurrency, err := positive(env, "WXB_SEND_CONCURRENCY", DefaultConcurrency)
	if err != nil {
		return nil, err
	}
	attempts, err := positive(env, "WXB_SEND_MAX_ATTEMPTS", DefaultMaxAttempts)
	if err != nil {
		return nil, err
	}
	wait, err := duration(env, "WXB_SEND_RECIPIENT_WAIT", notify.DefaultRecipientWait)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(ctx, secretsmanager.NewFromConfig(env.AWS), vars["WXB_APP_SECRET"])
	if err != nil {
		return nil, err
	}
	// Either channel alone is a working setup; neither is not.
	if cfg.Check(config.NeedOfficialAccount) != nil && cfg.Check(config.NeedMiniProgram) != nil {
		return nil, fmt.Errorf("%w: neither official_account nor mini_program is configured", config.ErrIncomplete)
	}
	log, metrics := observe.Logger(env.Out, "send-worker"), observe.NewMetrics(env.Out, "send-worker")
	db := dynamodb.NewFromConfig(env.AWS)
	sender := &notify.Sender{
		People:          identity.NewStore(db, vars["WXB_TABLE"]),
		Ledger:          notify.NewLedger(db, vars["WXB_TABLE"]),
		Reach:           reach.New(db, vars["WXB_TABLE"]),
		WeChat:          wechat.New(wechat.Options{APIBase: env.Get("WXB_WECHAT_API_BASE"), Tokens: tokens.FromEnv(env, cfg, log, metrics), Metrics: metrics}),
		OfficialAccount: cfg.OfficialAccount.AppID,
		MiniProgram:     cfg.MiniProgram.AppID,
		Apps:            cfg,
		RecipientWait:   wait,
		Unrecorded:      notify.NewUnrecorded(),
		Log:             log,
		Metrics:         metrics,
	}
	return &Handler{
		Sender:      sender,
		Queue:       sqs.NewFromConfig(env.AWS),
		QueueURL:    vars["WXB_SEND_QUEUE"],
		Concurrency: concurrency,
		MaxAttempts: attempts,
		Log:         log,
		Metrics:     metrics,
	}, nil
}

// positive reads an optional positive integer variable.
func positive(env awsenv.Env, name string, def int) (int, error) {
	v := env.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s: want a positive integer, got %q", name, v)
	}
	return n, nil
}

// duration reads an optional positive Go duration variable.
func duration(env awsenv.Env, name string, def time.Duration) (time.Duration, error) {
	v := env.Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: want a positive duration such as 15m, got %q", name, v)
	}
	return d, nil
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
