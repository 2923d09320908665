package tokens

import "wxbridge/shared/apps"

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
func SecretIDs(cfg apps.Config, miniProgramSecret, officialAccountSecret string) map[string]string {
	out := map[string]string{}
	if id := cfg.MiniProgram.AppID; id != "" && miniProgramSecret != "" {
		out[id] = miniProgramSecret
	}
	if id := cfg.OfficialAccount.AppID; id != "" && officialAccountSecret != "" {
		out[id] = officialAccountSecret
	}
	return out
}
