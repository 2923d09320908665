package notify

import (
	"slices"
	"strings"

	"wxbridge/shared/config"
	"wxbridge/shared/wechat"
)

// Reasons, at the start of an UNDELIVERABLE job's reason (and of a skipped
// channel's), that a business can branch on.
const (
	// UnknownApp: the job's from names an app wxbridge is not configured
	// with.
	UnknownApp = "unknown_app"
	// TwoAppsOfOneKind: the job's from names two apps of one kind (two
	// official accounts, say): which would send is not clear.
	TwoAppsOfOneKind = "two_apps_of_one_kind"
	// NoPersonWithPhone: nobody has verified the job's to.phone.
	NoPersonWithPhone = "no_person_with_phone"
	// NoIdentityInApp: the person has no openid in the app the job's from
	// names for the channel (they never used it): the channel is skipped.
	NoIdentityInApp = "no_identity_in_app"
)

// senders are the apps a job's channels send from: the official account
// of the template, oa_subscribe and customer_service channels, and the
// mini program of subscribe. oaNamed and mpNamed say whether the job's
// from named an app other than the default (a default named explicitly
// sends as a job without from does, reasons included). A website or
// mobile app in from is accepted, one of each kind, but no channel sends
// from it.
type senders struct {
	oa, mp           string
	oaNamed, mpNamed bool
}

// sendersOf picks the apps job sends from: those its from names, and for
// each kind it does not name that kind's default. why, when not empty, is
// why the job cannot be sent at all (UnknownApp, TwoAppsOfOneKind): the
// worker records it UNDELIVERABLE without calling WeChat.
func (s *Sender) sendersOf(job Job) (from senders, why string) {
	from = senders{oa: s.OfficialAccount, mp: s.MiniProgram}
	named := map[config.Kind]string{}
	for _, appid := range job.From {
		k, ok := s.kindOf(appid)
		if !ok {
			return senders{}, UnknownApp + ": " + appid + " is not an app wxbridge is configured with"
		}
		if other, twice := named[k]; twice {
			return senders{}, TwoAppsOfOneKind + ": " + other + " and " + appid + " are both " + k.Name() + "s"
		}
		named[k] = appid
		switch k {
		case config.KindOfficialAccount:
			from.oa, from.oaNamed = appid, appid != s.OfficialAccount
		case config.KindMiniProgram:
			from.mp, from.mpNamed = appid, appid != s.MiniProgram
		}
	}
	return from, ""
}

// kindOf is the kind appid is configured as: by Apps, or without it, as
// one of the two defaults.
func (s *Sender) kindOf(appid string) (config.Kind, bool) {
	switch {
	case s.Apps != nil:
		return s.Apps.KindOf(appid)
	case appid == "":
		return "", false
	case appid == s.OfficialAccount:
		return config.KindOfficialAccount, true
	case appid == s.MiniProgram:
		return config.KindMiniProgram, true
	}
	return "", false
}

// noIdentity is why a channel of kind k is skipped for a person without
// an identity in app appid: the reason of old (named false, the default
// app) or NoIdentityInApp for an app the job's from named. others are the
// apps of kind k the person does have an identity in: the reason of old
// names them, for the sender to name one in from.
func noIdentity(k config.Kind, appid string, named bool, others []string) string {
	if !named {
		why := "no official-account identity"
		if k == config.KindMiniProgram {
			why = "no mini-program identity"
		}
		if appid != "" && len(others) > 0 {
			why += " in the default " + k.Name() + " " + appid + " (the person has one in " + strings.Join(others, ", ") + ": name it in the job's from)"
		}
		return why
	}
	return NoIdentityInApp + ": no identity in " + k.Name() + " " + appid
}

// elsewhere lists the apps other than appid in which ids holds an openid
// (openid reads it), sorted.
func elsewhere[T any](ids map[string]T, appid string, openid func(T) string) []string {
	var out []string
	for a, id := range ids {
		if a != appid && openid(id) != "" {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// recorded is the recipient as the ledger (and so every outcome event)
// keeps it: a phone number masked to its last four digits.
func recorded(to Recipient) *Recipient {
	if to.Phone != "" {
		to.Phone = wechat.MaskPhone(to.Phone)
	}
	return &to
}
