package config

import (
	"fmt"
	"regexp"
	"slices"
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
	webKeys    = "Open Platform → Management Center → Website Apps → the app's details (微信开放平台 → 管理中心 → 网站应用 → 查看)"
	mobileKeys = "Open Platform → Management Center → Mobile Apps → the app's details (微信开放平台 → 管理中心 → 移动应用 → 查看)"
	keyFix     = "at least %d random characters, e.g. openssl rand -base64 48"
)

// The shapes' descriptions in problems.
const (
	appIDWant  = `"wx" and 16 lowercase hex digits`
	secretWant = "32 hex digits"
)

// kindText is how problems name an app of kind k, and where its AppID and
// AppSecret are.
var kindText = map[Kind]struct{ name, keys string }{
	KindMiniProgram:     {"mini program", mpSettings},
	KindOfficialAccount: {"service account", oaKeys},
	KindWebsite:         {"website app", webKeys},
	KindMobile:          {"mobile app", mobileKeys},
}

// Validate reports every problem that keeps c from running a whole stack:
// the parts every function together needs (a mini program, unless mobile
// apps take its place at login; an official account with its push Token;
// the signing key) missing, and any value present but not in the shape
// WeChat issues it (an AppID is wx and 16 hex digits, an AppSecret 32 hex
// digits, the push Token 3 to 32 letters or digits, the EncodingAESKey 43
// letters or digits) or, for wxbridge's own keys, shorter than
// MinKeyLength. Every app of every kind is checked, each named by its JSON
// path (mini_program.secret, official_accounts[1].token); an AppID listed
// twice is a problem, except the single mini_program or official_account
// listed again, unchanged, in its kind's list (the way from the old shape
// to the new). An empty encoding_aes_key is not a problem: it is plaintext
// mode.
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
	type seen struct {
		kind  Kind
		where string
	}
	first := map[string]seen{} // appid -> the entry that named it first
	for _, k := range Kinds {
		es := c.validated(k)
		if len(es) == 0 && c.required(k) {
			es = []entry{{where: k.single()}} // the old shape's fields, all missing
		}
		t := kindText[k]
		for _, e := range es {
			shaped(e.where+".appid", e.app.AppID, appIDShape, true, appIDWant, "the "+t.name+"'s AppID from "+t.keys)
			shaped(e.where+".secret", e.app.Secret, appSecretShape, true, secretWant, "the "+t.name+"'s AppSecret from "+t.keys+"; reset it there if nobody kept it")
			if k == KindOfficialAccount {
				shaped(e.where+".token", e.oa.Token, pushTokenShape, true, "3 to 32 letters or digits",
					"the Token (令牌) of the push settings, "+oaPush+": the same value in both places")
				shaped(e.where+".encoding_aes_key", e.oa.EncodingAESKey, aesKeyShape, false, "43 letters or digits",
					"the EncodingAESKey (消息加解密密钥) of the push settings, "+oaPush+": let the console generate it, then copy it here")
			}
			if e.app.AppID == "" {
				continue
			}
			f, dup := first[e.app.AppID]
			switch {
			case !dup:
				first[e.app.AppID] = seen{k, e.where}
			case f.kind == k:
				add(e.where+".appid", "the same as "+f.where+".appid", "each app once: remove one of the two entries")
			default:
				add(e.where+".appid", "the same as "+f.where+".appid",
					fmt.Sprintf("the %s and the %s are two apps with two AppIDs", t.name, kindText[f.kind].name))
			}
		}
	}
	key("session_key", c.SigningKey, true)
	key("session_key_previous", c.SigningKeyPrevious, false)
	key("bind_key", c.BindKey, false)
	key("bind_key_previous", c.BindKeyPrevious, false)
	return ps
}

// single is the old shape's field of kind k: mini_program,
// official_account; the kinds without one name their list's first entry.
func (k Kind) single() string {
	switch k {
	case KindMiniProgram, KindOfficialAccount:
		return string(k)
	}
	return k.field() + "[0]"
}

// required reports whether a whole stack needs an app of kind k: an
// official account always (follow-event, follower-sync, H5 OAuth), a mini
// program unless mobile apps take its place at login.
func (c Config) required(k Kind) bool {
	switch k {
	case KindOfficialAccount:
		return true
	case KindMiniProgram:
		return len(c.entries(KindMobile)) == 0
	}
	return false
}

// validated lists the entries of kind k that Validate checks: the secret's
// entries, less the single field when it is left empty while the list
// names the apps, or when it is listed again, unchanged, in the list (as
// Load's normalizing also makes it: the list's entry is the one named).
func (c Config) validated(k Kind) []entry {
	es := c.entries(k)
	if len(es) == 0 || es[0].where != k.single() || (k != KindMiniProgram && k != KindOfficialAccount) {
		return es
	}
	single, list := es[0], es[1:]
	empty := single.app == App{} && single.oa == OfficialAccount{}
	again := slices.ContainsFunc(list, func(e entry) bool { return e.app == single.app && e.oa == single.oa })
	if (empty && len(list) > 0) || again {
		return list
	}
	if empty {
		return nil
	}
	return es
}
