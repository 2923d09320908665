// Package config is wxbridge's configuration secret: the WeChat app
// credentials and wxbridge's own signing keys, kept as one JSON secret in
// Secrets Manager and read once per cold start.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"wxbridge/shared/awsenv"
)

// App is one WeChat app's credentials.
type App struct {
	AppID  string `json:"appid"`
	Secret string `json:"secret"`
}

// OfficialAccount adds the server-push settings of the OA console.
type OfficialAccount struct {
	App
	Token          string `json:"token,omitempty"`
	EncodingAESKey string `json:"encoding_aes_key,omitempty"`
}

// Config is the secret's JSON.
type Config struct {
	MiniProgram     App             `json:"mini_program"`
	OfficialAccount OfficialAccount `json:"official_account"`
	// SigningKey signs wxbridge's own sessions and OAuth states (JSON
	// "session_key" for compatibility; not WeChat's per-user session_key);
	// SigningKeyPrevious still verifies them during a rotation.
	SigningKey         string `json:"session_key"`
	SigningKeyPrevious string `json:"session_key_previous,omitempty"`
	// BindKey is shared with the business backend, which signs binding
	// tokens with it; BindKeyPrevious still verifies during a rotation.
	BindKey         string `json:"bind_key,omitempty"`
	BindKeyPrevious string `json:"bind_key_previous,omitempty"`
	// VerifyFiles are WeChat's domain verification files, served by
	// oauth-callback at the API's root (README, "Domain verification files").
	VerifyFiles VerifyFiles `json:"verify_files,omitempty"`
}

// MinKeyLength is the shortest signing key accepted, in bytes.
const MinKeyLength = 32

// ErrIncomplete reports a secret missing what a function needs.
var ErrIncomplete = errors.New("config: configuration secret is incomplete")

// Load reads and decodes the secret id, refusing verify_files that could
// not be served (VerifyFiles.Check).
func Load(ctx context.Context, sm awsenv.SecretGetter, id string) (Config, error) {
	var c Config
	if err := awsenv.SecretJSON(ctx, sm, id, &c); err != nil {
		return Config{}, err
	}
	// The secret is one document: an entry that could never be served is
	// refused wherever it is read, as a syntax error in it is.
	if err := c.VerifyFiles.Check(); err != nil {
		return Config{}, fmt.Errorf("%w (in secret %s)", err, id)
	}
	return c, nil
}

// Need names a part of the configuration a function requires.
type Need int

// The parts a function can require.
const (
	NeedMiniProgram Need = iota
	NeedOfficialAccount
	NeedSigningKey
	NeedBindKey
)

// Check reports, naming every missing field, whether c has what is needed.
func (c Config) Check(needs ...Need) error {
	var missing []string
	short := func(name, v string) {
		if v != "" && len(v) < MinKeyLength {
			missing = append(missing, fmt.Sprintf("%s (shorter than %d bytes)", name, MinKeyLength))
		}
	}
	for _, n := range needs {
		switch n {
		case NeedMiniProgram:
			if c.MiniProgram.AppID == "" || c.MiniProgram.Secret == "" {
				missing = append(missing, "mini_program.appid/secret")
			}
		case NeedOfficialAccount:
			if c.OfficialAccount.AppID == "" || c.OfficialAccount.Secret == "" {
				missing = append(missing, "official_account.appid/secret")
			}
		case NeedSigningKey:
			if c.SigningKey == "" {
				missing = append(missing, "session_key")
			}
			short("session_key", c.SigningKey)
			short("session_key_previous", c.SigningKeyPrevious)
		case NeedBindKey:
			if c.BindKey == "" {
				missing = append(missing, "bind_key")
			}
			short("bind_key", c.BindKey)
			short("bind_key_previous", c.BindKeyPrevious)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrIncomplete, strings.Join(missing, ", "))
	}
	return nil
}

// LogValue shows the appids only.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("mini_program", c.MiniProgram.AppID),
		slog.String("official_account", c.OfficialAccount.AppID),
	)
}

// String shows the appids only, so that printing a Config leaks nothing.
func (c Config) String() string {
	return fmt.Sprintf("config.Config{mini_program:%s official_account:%s}", c.MiniProgram.AppID, c.OfficialAccount.AppID)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }
