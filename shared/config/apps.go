package config

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is the kind of a WeChat app. The values are the JSON names used in
// /_dev/config and in metrics.
type Kind string

// The kinds of apps one open platform account binds.
const (
	KindMiniProgram     Kind = "mini_program"     // a mini program: wx.login, subscribe messages
	KindOfficialAccount Kind = "official_account" // a service or subscription account: push, H5 OAuth, templates
	KindWebsite         Kind = "website"          // an open platform website app: QR login (snsapi_login)
	KindMobile          Kind = "mobile"           // an open platform mobile app: the WeChat SDK's login
)

// Kinds lists every kind, in the order configurations show them.
var Kinds = []Kind{KindMiniProgram, KindOfficialAccount, KindWebsite, KindMobile}

// Name is how messages name an app of kind k: "mini program", "official
// account", "website app", "mobile app".
func (k Kind) Name() string {
	switch k {
	case KindMiniProgram:
		return "mini program"
	case KindOfficialAccount:
		return "official account"
	case KindWebsite:
		return "website app"
	case KindMobile:
		return "mobile app"
	}
	return strings.ReplaceAll(string(k), "_", " ")
}

// TakesToken reports whether apps of kind k have an access token (kept by
// the token-refresher). Website and mobile apps take none.
func (k Kind) TakesToken() bool { return k == KindMiniProgram || k == KindOfficialAccount }

// field is the JSON name of the list of apps of kind k.
func (k Kind) field() string {
	switch k {
	case KindMiniProgram:
		return "mini_programs"
	case KindOfficialAccount:
		return "official_accounts"
	case KindWebsite:
		return "website_apps"
	case KindMobile:
		return "mobile_apps"
	}
	return string(k)
}

// Apps lists the configured apps of kind k, the default first: the single
// mini_program or official_account of the old shape when set, then the
// lists in their order, each appid once. Entries without an appid are left
// out.
func (c Config) Apps(k Kind) []App {
	var out []App
	for _, e := range c.unique(k) {
		out = append(out, e.app)
	}
	return out
}

// OfficialAccountList lists the configured official accounts with their
// push settings, the default first (as Apps).
func (c Config) OfficialAccountList() []OfficialAccount {
	var out []OfficialAccount
	for _, e := range c.unique(KindOfficialAccount) {
		out = append(out, e.oa)
	}
	return out
}

// unique is entries(k) without the entries that have no appid and with each
// appid once, at its first place.
func (c Config) unique(k Kind) []entry {
	var out []entry
	for _, e := range c.entries(k) {
		if e.app.AppID != "" && !slices.ContainsFunc(out, func(f entry) bool { return f.app.AppID == e.app.AppID }) {
			out = append(out, e)
		}
	}
	return out
}

// Default is the default app of kind k: the one today's routes without an
// appid serve, and jobs without "from" send from. ok is false when no app
// of the kind is configured.
func (c Config) Default(k Kind) (App, bool) {
	if as := c.Apps(k); len(as) > 0 {
		return as[0], true
	}
	return App{}, false
}

// App finds the app of kind k with appid; appid "" is the default of k.
func (c Config) App(k Kind, appid string) (App, bool) {
	if appid == "" {
		return c.Default(k)
	}
	for _, a := range c.Apps(k) {
		if a.AppID == appid {
			return a, true
		}
	}
	return App{}, false
}

// OA finds the official account with appid, with its push settings; appid
// "" is the default one.
func (c Config) OA(appid string) (OfficialAccount, bool) {
	for _, oa := range c.OfficialAccountList() {
		if appid == "" || oa.AppID == appid {
			return oa, true
		}
	}
	return OfficialAccount{}, false
}

// KindOf says which kind of app appid is configured as.
func (c Config) KindOf(appid string) (Kind, bool) {
	if appid == "" {
		return "", false
	}
	for _, k := range Kinds {
		if _, ok := c.App(k, appid); ok {
			return k, true
		}
	}
	return "", false
}

// AppRef names one configured app and its kind.
type AppRef struct {
	Kind  Kind   `json:"kind"`
	AppID string `json:"appid"`
}

// AllApps lists every configured app, kind by kind, each kind's default
// first.
func (c Config) AllApps() []AppRef {
	var out []AppRef
	for _, k := range Kinds {
		for _, a := range c.Apps(k) {
			out = append(out, AppRef{Kind: k, AppID: a.AppID})
		}
	}
	return out
}

// entry is one app as the secret lists it.
type entry struct {
	where string // its JSON path
	app   App
	oa    OfficialAccount // for official accounts: the app with its push settings
}

// entries lists the apps of kind k as the secret has them, duplicates and
// all.
func (c Config) entries(k Kind) []entry {
	var out []entry
	list := func(as []App) {
		for i, a := range as {
			out = append(out, entry{where: fmt.Sprintf("%s[%d]", k.field(), i), app: a})
		}
	}
	switch k {
	case KindMiniProgram:
		out = append(out, entry{where: "mini_program", app: c.MiniProgram})
		list(c.MiniPrograms)
	case KindOfficialAccount:
		out = append(out, entry{where: "official_account", app: c.OfficialAccount.App, oa: c.OfficialAccount})
		for i, oa := range c.OfficialAccounts {
			out = append(out, entry{where: fmt.Sprintf("%s[%d]", k.field(), i), app: oa.App, oa: oa})
		}
	case KindWebsite:
		list(c.WebsiteApps)
	case KindMobile:
		list(c.MobileApps)
	}
	return out
}

// normalize makes the old single-app fields name the default app of each
// kind, so that code reading c.MiniProgram or c.OfficialAccount serves the
// default, and refuses an appid configured as two kinds, or twice in one
// kind with different settings.
func (c *Config) normalize() error {
	if c.MiniProgram.AppID == "" && len(c.MiniPrograms) > 0 {
		c.MiniProgram = c.MiniPrograms[0]
	}
	if c.OfficialAccount.AppID == "" && len(c.OfficialAccounts) > 0 {
		c.OfficialAccount = c.OfficialAccounts[0]
	}
	type first struct {
		kind Kind
		e    entry
	}
	seen := map[string]first{}
	for _, k := range Kinds {
		for _, e := range c.entries(k) {
			if e.app.AppID == "" {
				continue
			}
			f, ok := seen[e.app.AppID]
			switch {
			case !ok:
				seen[e.app.AppID] = first{k, e}
			case f.kind != k:
				return fmt.Errorf("%w: appid %s is configured as two kinds of app (%s and %s)", ErrIncomplete, e.app.AppID, f.e.where, e.where)
			case f.e.app != e.app || f.e.oa != e.oa:
				return fmt.Errorf("%w: appid %s is configured twice with different settings (%s and %s)", ErrIncomplete, e.app.AppID, f.e.where, e.where)
			}
		}
	}
	return nil
}
