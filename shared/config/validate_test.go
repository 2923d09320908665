package config

import (
	"fmt"
	"strings"
	"testing"
)

// wellFormed is a configuration as WeChat's consoles issue it.
func wellFormed() Config {
	return Config{
		MiniProgram: App{AppID: "wx5a0dbe0c0de00001", Secret: "5a0dbe0c5ec7e700000000000000a001"},
		OfficialAccount: OfficialAccount{
			App:            App{AppID: "wx5a0dbe0c0de00002", Secret: "5A0DBE0C5EC7E700000000000000A002"},
			Token:          "pushToken2024",
			EncodingAESKey: strings.Repeat("aB3", 14) + "z",
		},
		SigningKey: strings.Repeat("s", MinKeyLength),
		BindKey:    strings.Repeat("b", MinKeyLength+10),
	}
}

// Further apps, as the consoles issue them.
var (
	mp2     = App{AppID: "wx5a0dbe0c0de00003", Secret: "5a0dbe0c5ec7e700000000000000a003"}
	oa2     = OfficialAccount{App: App{AppID: "wx5a0dbe0c0de00004", Secret: "5a0dbe0c5ec7e700000000000000a004"}, Token: "secondOA"}
	web1    = App{AppID: "wx5a0dbe0c0de00005", Secret: "5a0dbe0c5ec7e700000000000000a005"}
	mobile1 = App{AppID: "wx5a0dbe0c0de00007", Secret: "5a0dbe0c5ec7e700000000000000a007"}
)

// multiApp is a well-formed configuration of the new shape: lists of every
// kind (the second official account in plaintext mode), the defaults kept
// in the single fields.
func multiApp(signingKey string) Config {
	c := wellFormed()
	c.SigningKey = signingKey
	c.MiniPrograms = []App{c.MiniProgram, mp2}
	c.OfficialAccounts = []OfficialAccount{c.OfficialAccount, oa2}
	c.WebsiteApps = []App{web1}
	c.MobileApps = []App{mobile1}
	return c
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Config)
		want   []string // "field: what" of every problem, in order
	}{
		{"well_formed", func(*Config) {}, nil},
		{"plaintext_mode_without_aes_key", func(c *Config) { c.OfficialAccount.EncodingAESKey = "" }, nil},
		{"a_fresh_stack_has_only_its_generated_signing_key", func(c *Config) {
			*c = Config{SigningKey: c.SigningKey}
		}, []string{"mini_program.appid: missing", "mini_program.secret: missing", "official_account.appid: missing",
			"official_account.secret: missing", "official_account.token: missing"}},
		{"appid_not_wx_and_16_hex", func(c *Config) {
			c.MiniProgram.AppID = "wx5A0DBE0C0DE00001"
			c.OfficialAccount.AppID = "gh_0123456789ab"
		}, []string{`mini_program.appid: not "wx" and 16 lowercase hex digits (18 characters)`,
			`official_account.appid: not "wx" and 16 lowercase hex digits (15 characters)`}},
		{"secret_not_32_hex", func(c *Config) { c.MiniProgram.Secret = "5a0dbe0c5ec7e700000000000000a00" },
			[]string{"mini_program.secret: not 32 hex digits (31 characters)"}},
		{"aes_key_of_42", func(c *Config) { c.OfficialAccount.EncodingAESKey = c.OfficialAccount.EncodingAESKey[:42] },
			[]string{"official_account.encoding_aes_key: not 43 letters or digits (42 characters)"}},
		{"aes_key_with_base64_symbols", func(c *Config) { c.OfficialAccount.EncodingAESKey = "+/" + c.OfficialAccount.EncodingAESKey[2:] },
			[]string{"official_account.encoding_aes_key: not 43 letters or digits (43 characters)"}},
		{"token_too_short_or_with_symbols", func(c *Config) { c.OfficialAccount.Token = "ab" },
			[]string{"official_account.token: not 3 to 32 letters or digits (2 characters)"}},
		{"token_with_symbols", func(c *Config) { c.OfficialAccount.Token = "my-token" },
			[]string{"official_account.token: not 3 to 32 letters or digits (8 characters)"}},
		{"token_of_33", func(c *Config) { c.OfficialAccount.Token = strings.Repeat("t", 33) },
			[]string{"official_account.token: not 3 to 32 letters or digits (33 characters)"}},
		{"one_appid_for_both_apps", func(c *Config) { c.OfficialAccount.AppID = c.MiniProgram.AppID },
			[]string{"official_account.appid: the same as mini_program.appid"}},
		{"every_kind_listed", func(c *Config) { *c = multiApp(c.SigningKey) }, nil},
		{"lists_only_after_load", func(c *Config) {
			m := multiApp(c.SigningKey)
			m.MiniProgram, m.OfficialAccount = App{}, OfficialAccount{}
			*c, _ = m.Normalize() // the default copied into the single fields, as Load does
		}, nil},
		{"single_fields_listed_again_unchanged", func(c *Config) {
			c.MiniPrograms = []App{mp2, c.MiniProgram}
			c.OfficialAccounts = []OfficialAccount{c.OfficialAccount}
		}, nil},
		{"mobile_apps_without_a_mini_program", func(c *Config) {
			c.MiniProgram = App{}
			c.MobileApps = []App{mobile1}
		}, nil},
		{"lists_name_each_field_by_its_path", func(c *Config) {
			*c = multiApp(c.SigningKey)
			c.OfficialAccounts[1].Token = ""
			c.OfficialAccounts[1].EncodingAESKey = "short"
			c.WebsiteApps[0].Secret = "nothex"
			c.MobileApps = append(c.MobileApps, App{Secret: mobile1.Secret})
		}, []string{"official_accounts[1].token: missing", "official_accounts[1].encoding_aes_key: not 43 letters or digits (5 characters)",
			"website_apps[0].secret: not 32 hex digits (6 characters)", "mobile_apps[1].appid: missing"}},
		{"an_appid_twice_in_a_list", func(c *Config) {
			c.MiniPrograms = []App{mp2, mp2}
		}, []string{"mini_programs[1].appid: the same as mini_programs[0].appid"}},
		{"an_appid_as_two_kinds", func(c *Config) {
			c.WebsiteApps = []App{c.MiniProgram}
			c.OfficialAccounts = []OfficialAccount{{App: mobile1, Token: "tok"}}
			c.MobileApps = []App{mobile1}
		}, []string{"website_apps[0].appid: the same as mini_program.appid", "mobile_apps[0].appid: the same as official_accounts[0].appid"}},
		{"the_default_listed_again_with_other_settings", func(c *Config) {
			changed := c.OfficialAccount
			changed.Token = "otherToken"
			c.OfficialAccounts = []OfficialAccount{changed}
		}, []string{"official_accounts[0].appid: the same as official_account.appid"}},
		{"no_official_account_in_either_shape", func(c *Config) {
			c.OfficialAccount = OfficialAccount{}
			c.WebsiteApps = []App{web1}
		}, []string{"official_account.appid: missing", "official_account.secret: missing", "official_account.token: missing"}},
		{"short_keys", func(c *Config) {
			c.SigningKey, c.SigningKeyPrevious, c.BindKey, c.BindKeyPrevious = "", "short", strings.Repeat("b", MinKeyLength-1), strings.Repeat("p", MinKeyLength)
		}, []string{"session_key: missing", "session_key_previous: 5 bytes, shorter than 32", "bind_key: 31 bytes, shorter than 32"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := wellFormed()
			tc.change(&c)
			ps := c.Validate()
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
				if p.Fix == "" {
					t.Errorf("%s has no fix", p)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Validate =\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
}

// TestValidateNamesNoValue: a problem names the field and its length,
// never the value, however wrong the value is.
func TestValidateNamesNoValue(t *testing.T) {
	c := Config{
		MiniProgram:     App{AppID: "wxSECRETAPPID", Secret: "not-a-secret-shape-but-secret"},
		OfficialAccount: OfficialAccount{App: App{AppID: "wxoa", Secret: "oa-secret-value"}, Token: "tok en!", EncodingAESKey: "aes-key-value"},
		SigningKey:      "signing-key-value", BindKey: "bind-key-value",
	}
	out := fmt.Sprint(c.Validate())
	for _, v := range []string{"SECRETAPPID", "not-a-secret-shape", "oa-secret-value", "tok en!", "aes-key-value", "signing-key-value", "bind-key-value"} {
		if strings.Contains(out, v) {
			t.Errorf("a problem shows %q: %s", v, out)
		}
	}
}
