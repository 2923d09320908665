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
	// EnvSecretPrefix is the prefix of the token secrets of every mini
	// program and official account but the defaults: "<prefix><appid>",
	// created by the token-refresher on the app's first refresh.
	EnvSecretPrefix = "WXB_TOKEN_SECRET_PREFIX"
)

// SecretIDs maps the appid of every mini program and official account
// configured in cfg to its token secret: the default mini program's is
// miniProgramSecret and the default official account's is
// officialAccountSecret (the secrets of single-app deployments), every
// other one's is prefix+appid. Apps whose secret id would be empty are left
// out; website and mobile apps take no token.
func SecretIDs(cfg config.Config, miniProgramSecret, officialAccountSecret, prefix string) map[string]string {
	out := map[string]string{}
	for _, k := range []config.Kind{config.KindMiniProgram, config.KindOfficialAccount} {
		def := miniProgramSecret
		if k == config.KindOfficialAccount {
			def = officialAccountSecret
		}
		for i, a := range cfg.Apps(k) {
			id := prefix + a.AppID
			if i == 0 {
				id = def
			} else if prefix == "" {
				id = ""
			}
			if _, taken := out[a.AppID]; id != "" && !taken {
				out[a.AppID] = id
			}
		}
	}
	return out
}

// FromEnv is the Source a function builds from its environment: the token
// secrets of every mini program and official account configured in cfg
// (SecretIDs of EnvMiniProgramSecret, EnvOfficialAccountSecret and
// EnvSecretPrefix), and refresh requests sent to the function named by
// EnvRefresher through env's Lambda client.
func FromEnv(env awsenv.Env, cfg config.Config, log *slog.Logger, metrics *observe.Metrics) *Source {
	o := Options{
		Secrets: SecretIDs(cfg, env.Get(EnvMiniProgramSecret), env.Get(EnvOfficialAccountSecret), env.Get(EnvSecretPrefix)),
		Reader:  secretsmanager.NewFromConfig(env.AWS),
		Log:     log,
		Metrics: metrics,
	}
	if name := env.Get(EnvRefresher); name != "" && env.Lambda != nil {
		o.Refresher = LambdaInvoker{Client: env.Lambda, Function: name}
	}
	return NewSource(o)
}
