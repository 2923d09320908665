package tokens

import (
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/config"
	"wxbridge/shared/observe"
)

// The environment variables template.yaml sets for the functions that use
// tokens.
const (
	// EnvMiniProgramSecret names the mini program's token secret.
	EnvMiniProgramSecret = "WXB_TOKEN_SECRET_MP"
	// EnvOfficialAccountSecret names the official account's token secret.
	EnvOfficialAccountSecret = "WXB_TOKEN_SECRET_OA"
	// EnvRefresher names the token-refresher function, for LambdaInvoker.
	EnvRefresher = "WXB_TOKEN_REFRESHER"
)

// SecretIDs maps the appid of each app configured in cfg to its token
// secret; apps without an appid or a secret id are left out.
func SecretIDs(cfg config.Config, miniProgramSecret, officialAccountSecret string) map[string]string {
	out := map[string]string{}
	if id := cfg.MiniProgram.AppID; id != "" && miniProgramSecret != "" {
		out[id] = miniProgramSecret
	}
	if id := cfg.OfficialAccount.AppID; id != "" && officialAccountSecret != "" {
		out[id] = officialAccountSecret
	}
	return out
}

// FromEnv is the Source a function builds from its environment: the token
// secrets named by EnvMiniProgramSecret and EnvOfficialAccountSecret for the
// apps configured in cfg, and refresh requests sent to the function named by
// EnvRefresher through env's Lambda client.
func FromEnv(env awsenv.Env, cfg config.Config, log *slog.Logger, metrics *observe.Metrics) *Source {
	o := Options{
		Secrets: SecretIDs(cfg, env.Get(EnvMiniProgramSecret), env.Get(EnvOfficialAccountSecret)),
		Reader:  secretsmanager.NewFromConfig(env.AWS),
		Log:     log,
		Metrics: metrics,
	}
	if name := env.Get(EnvRefresher); name != "" && env.Lambda != nil {
		o.Refresher = LambdaInvoker{Client: env.Lambda, Function: name}
	}
	return NewSource(o)
}
