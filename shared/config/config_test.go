package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestCheckNamesEveryMissingPart(t *testing.T) {
	c := Config{MiniProgram: App{AppID: "wxmp"}, SigningKey: "short"}
	err := c.Check(NeedMiniProgram, NeedOfficialAccount, NeedSigningKey, NeedBindKey)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Check = %v, want ErrIncomplete", err)
	}
	for _, want := range []string{"mini_program.appid/secret", "official_account.appid/secret", "session_key (shorter than 32 bytes)", "bind_key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %q, want it to name %s", err, want)
		}
	}
	full := Config{
		MiniProgram:     App{AppID: "wxmp", Secret: "mp-secret"},
		OfficialAccount: OfficialAccount{App: App{AppID: "wxoa", Secret: "oa-secret"}},
		SigningKey:      strings.Repeat("k", MinKeyLength),
		BindKey:         strings.Repeat("b", MinKeyLength),
	}
	if err := full.Check(NeedMiniProgram, NeedOfficialAccount, NeedSigningKey, NeedBindKey); err != nil {
		t.Errorf("complete config: %v", err)
	}
}

// TestPrintingLeaksNoSecret: however a Config is printed or logged, only
// the appids show.
func TestPrintingLeaksNoSecret(t *testing.T) {
	c := Config{
		MiniProgram:     App{AppID: "wxmp", Secret: "mp-secret"},
		OfficialAccount: OfficialAccount{App: App{AppID: "wxoa", Secret: "oa-secret"}, Token: "push-token", EncodingAESKey: "aes-key"},
		SigningKey:      "signing-key", SigningKeyPrevious: "old-signing-key", BindKey: "bind-key", BindKeyPrevious: "old-bind-key",
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c)
	out := fmt.Sprintf("%v %+v %#v %s ", c, c, c, c) + logs.String()
	for _, secret := range []string{"mp-secret", "oa-secret", "push-token", "aes-key", "signing-key", "bind-key"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s printed: %s", secret, out)
		}
	}
	if !strings.Contains(out, "wxmp") || !strings.Contains(out, "wxoa") {
		t.Errorf("appids not printed: %s", out)
	}
}
