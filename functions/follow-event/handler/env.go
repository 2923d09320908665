package handler

import (
	"context"
	"fmt"
	"log/slog"
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
// WXB_APP_SECRET, WXB_PUSH_RETRY_QUEUE, the OA token secrets and the
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
	log, metrics := observe.Logger(env.Out, "follow-event"), observe.NewMetrics(env.Out, "follow-event")
	db := dynamodb.NewFromConfig(env.AWS)
	people := identity.NewStore(db, vars["WXB_TABLE"])
	people.Metrics = metrics // merges and link conflicts a push causes
	base := pushevent.Processor{
		WeChat:   wechat.New(wechat.Options{APIBase: env.Get("WXB_WECHAT_API_BASE"), Tokens: tokens.FromEnv(env, cfg, log, metrics), Metrics: metrics}),
		People:   people,
		Reports:  notify.NewLedger(db, vars["WXB_TABLE"]),
		Reach:    reach.New(db, vars["WXB_TABLE"]),
		LongTerm: reach.ParseLongTerm(env.Get("WXB_LONG_TERM_TEMPLATES")),
		Log:      log,
		Metrics:  metrics,
	}
	if cfg.Check(config.NeedBindKey) == nil {
		base.Bindings = binding.NewVerifier(cfg.BindKey, cfg.BindKeyPrevious)
		base.Uses = binding.NewUses(db, vars["WXB_TABLE"])
	}
	as, err := accounts(ctx, cfg.OfficialAccountList(), window, base, log)
	if err != nil {
		return nil, err
	}
	return &Handler{
		Accounts:      as,
		Default:       cfg.OfficialAccount.AppID,
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

// accounts makes the push endpoint of every official account in oas (the
// default first, as config.OfficialAccountList lists them), each applying
// its pushes with a copy of base under its own appid. It makes no AWS or
// WeChat call, so that a cold start costs the same however many accounts
// there are. The default account's push settings must be usable; another
// account's that are not (no Token: it does not use server push) leave it
// out, logged, and its push URL answers 404, so that one account's
// settings do not stop every other account's pushes.
func accounts(ctx context.Context, oas []config.OfficialAccount, window time.Duration, base pushevent.Processor, log *slog.Logger) (map[string]Account, error) {
	out := map[string]Account{}
	plain := map[string]string{} // token -> appid, of plaintext accounts
	for i, oa := range oas {
		r, err := push.NewReceiver(oa.Token, oa.EncodingAESKey, oa.AppID, window)
		switch {
		case err != nil && i == 0:
			return nil, fmt.Errorf("official account %s: %w", oa.AppID, err)
		case err != nil:
			log.WarnContext(ctx, "push settings unusable, its push URL answers 404", "outcome", "push_disabled", "official_account", oa.AppID, "error", err)
			continue
		}
		if r.Cipher == nil {
			// Only ciphertext names its appid: a plaintext push signed
			// with a Token two accounts share is good at either URL.
			if other, ok := plain[oa.Token]; ok {
				log.WarnContext(ctx, "official accounts share a push Token in plaintext mode: a push to one is accepted at the other's URL", "outcome", "push_token_shared", "official_accounts", other+","+oa.AppID)
			}
			plain[oa.Token] = oa.AppID
		}
		p := base
		p.AppID = oa.AppID
		out[oa.AppID] = Account{Receiver: r, Processor: &p}
	}
	return out, nil
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
