package handler

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/backfill"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// EnvQueue names the sync queue's URL: the queue this function consumes
// and sends its next jobs to.
const EnvQueue = "WXB_SYNC_QUEUE"

// FromEnv builds the follower-sync function from its environment:
// WXB_TABLE, WXB_APP_SECRET, WXB_SYNC_QUEUE, the official accounts' token
// secrets and the refresher (shared/tokens), and optionally
// WXB_WECHAT_API_BASE. It backfills every configured official account.
func FromEnv(ctx context.Context, env awsenv.Env) (*Handler, error) {
	vars, err := env.Require("WXB_TABLE", "WXB_APP_SECRET", EnvQueue, tokens.EnvOfficialAccountSecret)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(ctx, secretsmanager.NewFromConfig(env.AWS), vars["WXB_APP_SECRET"])
	if err != nil {
		return nil, err
	}
	if err := cfg.Check(config.NeedOfficialAccount); err != nil {
		return nil, err
	}
	log, metrics := observe.Logger(env.Out, "follower-sync"), observe.NewMetrics(env.Out, "follower-sync")
	db := dynamodb.NewFromConfig(env.AWS)
	q := sqs.NewFromConfig(env.AWS)
	people := identity.NewStore(db, vars["WXB_TABLE"])
	people.Metrics = metrics
	var oas []string
	for _, oa := range cfg.OfficialAccountList() {
		oas = append(oas, oa.AppID)
	}
	// Each official account's jobs use its own access token and
	// checkpoints; the default account comes first.
	return &Handler{
		Jobs: backfill.NewAccounts(backfill.Syncer{
			WeChat:  wechat.New(wechat.Options{APIBase: env.Get("WXB_WECHAT_API_BASE"), Tokens: tokens.FromEnv(env, cfg, log, metrics), Metrics: metrics}),
			People:  people,
			Store:   backfill.NewStore(db, vars["WXB_TABLE"]),
			Queue:   backfill.Queue{Client: q, URL: vars[EnvQueue]},
			Log:     log,
			Metrics: metrics,
		}, oas...),
		Queue:    q,
		QueueURL: vars[EnvQueue],
		Log:      log,
		Metrics:  metrics,
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
