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
//
// It takes any number of apps of each kind. MiniProgram and OfficialAccount
// are the default mini program and official account (the old single-app
// shape, which keeps working unchanged); the lists add more. When only a
// list is given, Load makes its first entry the default. Apps, App, OA and
// Default read them whichever shape the secret has.
type Config struct {
	MiniProgram      App               `json:"mini_program"`
	OfficialAccount  OfficialAccount   `json:"official_account"`
	MiniPrograms     []App             `json:"mini_programs,omitempty"`
	OfficialAccounts []OfficialAccount `json:"official_accounts,omitempty"`
	// WebsiteApps are open platform website apps (QR login, snsapi_login);
	// MobileApps are open platform mobile apps (the WeChat SDK's login).
	// Neither takes an access token.
	WebsiteApps []App `json:"website_apps,omitempty"`
	MobileApps  []App `json:"mobile_apps,omitempty"`
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
// not be served (VerifyFiles.Check) and an appid configured as two kinds or
// twice with different settings. The default app of each kind ends up in
// MiniProgram and OfficialAccount whichever shape the secret has.
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
	if err := c.normalize(); err != nil {
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
			missing = append(missing, c.incomplete(KindMiniProgram, "mini_program")...)
		case NeedOfficialAccount:
			missing = append(missing, c.incomplete(KindOfficialAccount, "official_account")...)
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

// Normalize is what Load does to a decoded secret: the default app of each
// kind in MiniProgram and OfficialAccount, and an error for an appid
// configured as two kinds or twice with different settings. For
// configurations built in code.
func (c Config) Normalize() (Config, error) {
	err := c.normalize()
	return c, err
}

// incomplete names the apps of kind k without an appid or a secret, or
// single when there is no app of the kind at all.
func (c Config) incomplete(k Kind, single string) []string {
	var missing []string
	found := false
	for _, e := range c.entries(k) {
		switch {
		case e.app.AppID == "" && e.app.Secret == "" && e.where == single:
			// The old single field left empty: the lists may name the apps.
		case e.app.AppID == "" || e.app.Secret == "":
			missing = append(missing, e.where+".appid/secret")
		default:
			found = true
		}
	}
	if !found && len(missing) == 0 {
		missing = append(missing, single+".appid/secret")
	}
	return missing
}

// LogValue shows the appids only.
func (c Config) LogValue() slog.Value {
	var attrs []slog.Attr
	for _, k := range Kinds {
		var ids []string
		for _, a := range c.Apps(k) {
			ids = append(ids, a.AppID)
		}
		if len(ids) > 0 {
			attrs = append(attrs, slog.String(string(k), strings.Join(ids, ",")))
		}
	}
	return slog.GroupValue(attrs...)
}

// String shows the appids only, so that printing a Config leaks nothing.
func (c Config) String() string {
	var parts []string
	for _, k := range Kinds {
		var ids []string
		for _, a := range c.Apps(k) {
			ids = append(ids, a.AppID)
		}
		if len(ids) > 0 {
			parts = append(parts, string(k)+":"+strings.Join(ids, ","))
		}
	}
	return "config.Config{" + strings.Join(parts, " ") + "}"
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }
