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
	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/reach"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// FromEnv builds the follow-event function from its environment: WXB_TABLE,
// WXB_APP_SECRET, WXB_PUSH_RETRY_QUEUE, the OA token secret and the
// refresher (shared/tokens), and optionally WXB_PUSH_DLQ (the retry
// queue's dead-letter queue), WXB_PUSH_RETRY_CONCURRENCY, WXB_PUSH_BUDGET,
// WXB_PUSH_WINDOW, WXB_LONG_TERM_TEMPLATES and WXB_WECHAT_API_BASE.
func FromEnv(ctx context.Context, env awsenv.Env) (*Handler, error) {
	vars, err := env.Require("WXB_TABLE", "WXB_APP_SECRET", "WXB_PUSH_RETRY_QUEUE", tokens.EnvOfficialAccountSecret)
	if err != nil {
		return nil, err
	}
	budget := DefaultBudget
	if v := env.Get("WXB_PUSH_BUDGET"); v != "" {
		// Keep it under WeChat's 5 s in production; tests that are not
		// about timing raise it so that a loaded machine does not queue.
		if budget, err = time.ParseDuration(v); err != nil || budget <= 0 {
			return nil, fmt.Errorf("WXB_PUSH_BUDGET: want a positive duration, got %q", v)
		}
	}
	concurrency := DefaultConcurrency
	if v := env.Get("WXB_PUSH_RETRY_CONCURRENCY"); v != "" {
		if concurrency, err = strconv.Atoi(v); err != nil || concurrency <= 0 {
			return nil, fmt.Errorf("WXB_PUSH_RETRY_CONCURRENCY: want a positive number, got %q", v)
		}
	}
	window := push.DefaultWindow
	if v := env.Get("WXB_PUSH_WINDOW"); v != "" {
		if window, err = time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("WXB_PUSH_WINDOW: %w", err)
		}
	}
	cfg, err := config.Load(ctx, secretsmanager.NewFromConfig(env.AWS), vars["WXB_APP_SECRET"])
	if err != nil {
		return nil, err
	}
	if err := cfg.Check(config.NeedOfficialAccount); err != nil {
		return nil, err
	}
	oa := cfg.OfficialAccount
	receiver, err := push.NewReceiver(oa.Token, oa.EncodingAESKey, oa.AppID, window)
	if err != nil {
		return nil, err
	}
	log, metrics := observe.Logger(env.Out, "follow-event"), observe.NewMetrics(env.Out, "follow-event")
	db := dynamodb.NewFromConfig(env.AWS)
	people := identity.NewStore(db, vars["WXB_TABLE"])
	people.Metrics = metrics // merges and link conflicts a push causes
	proc := &pushevent.Processor{
		AppID:    oa.AppID,
		WeChat:   wechat.New(wechat.Options{APIBase: env.Get("WXB_WECHAT_API_BASE"), Tokens: tokens.FromEnv(env, cfg, log, metrics), Metrics: metrics}),
		People:   people,
		Reports:  notify.NewLedger(db, vars["WXB_TABLE"]),
		Reach:    reach.New(db, vars["WXB_TABLE"]),
		LongTerm: reach.ParseLongTerm(env.Get("WXB_LONG_TERM_TEMPLATES")),
		Log:      log,
		Metrics:  metrics,
	}
	if cfg.Check(config.NeedBindKey) == nil {
		proc.Bindings = binding.NewVerifier(cfg.BindKey, cfg.BindKeyPrevious)
		proc.Uses = binding.NewUses(db, vars["WXB_TABLE"])
	}
	return &Handler{
		Receiver:      receiver,
		Processor:     proc,
		Claims:        idempotency.NewStore(db, vars["WXB_TABLE"], "push"),
		Queue:         sqs.NewFromConfig(env.AWS),
		QueueURL:      vars["WXB_PUSH_RETRY_QUEUE"],
		DeadLetterURL: env.Get("WXB_PUSH_DLQ"),
		Budget:        budget,
		Concurrency:   concurrency,
		Log:           log,
		Metrics:       metrics,
	}, nil
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
