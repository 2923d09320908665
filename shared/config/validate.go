package config

import (
	"fmt"
	"regexp"
)

// Problem is one field of a configuration secret that is missing or not in
// the shape WeChat issues it. It names the field and never holds its value.
type Problem struct {
	Field string // the JSON path, such as official_account.encoding_aes_key
	What  string // what is wrong with it
	Fix   string // where the right value comes from
}

func (p Problem) String() string { return p.Field + ": " + p.What }

// The shapes WeChat gives these values in its consoles.
var (
	// An AppID is "wx" and 16 lowercase hex digits.
	appIDShape = regexp.MustCompile(`^wx[0-9a-f]{16}$`)
	// An AppSecret is 32 hex digits.
	appSecretShape = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
	// The push Token is 3 to 32 letters or digits (the console refuses
	// anything else).
	pushTokenShape = regexp.MustCompile(`^[A-Za-z0-9]{3,32}$`)
	// The EncodingAESKey is 43 letters or digits: the base64 of a 32-byte
	// AES key without its "=".
	aesKeyShape = regexp.MustCompile(`^[A-Za-z0-9]{43}$`)
)

// Where each value is set in WeChat's consoles, in English and Chinese
// (README, "Before you deploy", has the whole table).
const (
	mpSettings = "Mini Program admin → Management → Development Management → Development Settings (微信公众平台 (小程序) → 管理 → 开发管理 → 开发设置)"
	oaKeys     = "WeChat Developer Platform → My Business → Service Account → Basic Info → Development Key (微信开发者平台 → 我的业务 → 服务号 → 基础信息 → 开发密钥)"
	oaPush     = "WeChat Developer Platform → My Business → Service Account → Basic Info → Domains and Message Push (微信开发者平台 → 我的业务 → 服务号 → 基础信息 → 域名与消息推送配置)"
	keyFix     = "at least %d random characters, e.g. openssl rand -base64 48"
)

// Validate reports every problem that keeps c from running a whole stack:
// the parts every function together needs (both apps, the push Token, the
// signing key) missing, and any value present but not in the shape WeChat
// issues it (an AppID is wx and 16 hex digits, an AppSecret 32 hex digits,
// the push Token 3 to 32 letters or digits, the EncodingAESKey 43 letters
// or digits) or, for wxbridge's own keys, shorter than MinKeyLength. An
// empty encoding_aes_key is not a problem: it is plaintext mode.
func (c Config) Validate() []Problem {
	var ps []Problem
	add := func(field, what, fix string) { ps = append(ps, Problem{Field: field, What: what, Fix: fix}) }
	shaped := func(field, v string, shape *regexp.Regexp, required bool, want, fix string) {
		switch {
		case v == "" && required:
			add(field, "missing", fix)
		case v != "" && !shape.MatchString(v):
			n := "characters"
			if len(v) == 1 {
				n = "character"
			}
			add(field, fmt.Sprintf("not %s (%d %s)", want, len(v), n), fix)
		}
	}
	key := func(field, v string, required bool) {
		fix := fmt.Sprintf(keyFix, MinKeyLength)
		switch {
		case v == "" && required:
			add(field, "missing", fix)
		case v != "" && len(v) < MinKeyLength:
			add(field, fmt.Sprintf("%d bytes, shorter than %d", len(v), MinKeyLength), fix)
		}
	}
	const appID, secret = `"wx" and 16 lowercase hex digits`, "32 hex digits"
	shaped("mini_program.appid", c.MiniProgram.AppID, appIDShape, true, appID, "the mini program's AppID from "+mpSettings)
	shaped("mini_program.secret", c.MiniProgram.Secret, appSecretShape, true, secret, "the mini program's AppSecret from "+mpSettings+"; reset it there if nobody kept it")
	oa := c.OfficialAccount
	shaped("official_account.appid", oa.AppID, appIDShape, true, appID, "the service account's AppID from "+oaKeys)
	shaped("official_account.secret", oa.Secret, appSecretShape, true, secret, "the service account's AppSecret from "+oaKeys+"; reset it there if nobody kept it")
	shaped("official_account.token", oa.Token, pushTokenShape, true, "3 to 32 letters or digits",
		"the Token (令牌) of the push settings, "+oaPush+": the same value in both places")
	shaped("official_account.encoding_aes_key", oa.EncodingAESKey, aesKeyShape, false, "43 letters or digits",
		"the EncodingAESKey (消息加解密密钥) of the push settings, "+oaPush+": let the console generate it, then copy it here")
	if oa.AppID != "" && oa.AppID == c.MiniProgram.AppID {
		add("official_account.appid", "the same as mini_program.appid", "the official account and the mini program are two apps with two AppIDs")
	}
	key("session_key", c.SigningKey, true)
	key("session_key_previous", c.SigningKeyPrevious, false)
	key("bind_key", c.BindKey, false)
	key("bind_key_previous", c.BindKeyPrevious, false)
	return ps
}
