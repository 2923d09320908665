package notify

import (
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
// from named them (else they are the defaults). A website or mobile app in
// from is accepted, one of each kind, but no channel sends from it.
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
			return senders{}, TwoAppsOfOneKind + ": " + other + " and " + appid + " are both " + kindName(k) + "s"
		}
		named[k] = appid
		switch k {
		case config.KindOfficialAccount:
			from.oa, from.oaNamed = appid, true
		case config.KindMiniProgram:
			from.mp, from.mpNamed = appid, true
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

func kindName(k config.Kind) string {
	switch k {
	case config.KindOfficialAccount:
		return "official account"
	case config.KindMiniProgram:
		return "mini program"
	case config.KindWebsite:
		return "website app"
	case config.KindMobile:
		return "mobile app"
	}
	return strings.ReplaceAll(string(k), "_", " ")
}

// noIdentity is why a channel of kind k is skipped for a person without
// an identity in app appid: the reason of old (named false, the default
// app) or NoIdentityInApp for an app the job's from named.
func noIdentity(k config.Kind, appid string, named bool) string {
	if !named {
		if k == config.KindMiniProgram {
			return "no mini-program identity"
		}
		return "no official-account identity"
	}
	return NoIdentityInApp + ": no identity in " + kindName(k) + " " + appid
}

// recorded is the recipient as the ledger (and so every outcome event)
// keeps it: a phone number masked to its last four digits.
func recorded(to Recipient) *Recipient {
	if to.Phone != "" {
		to.Phone = wechat.MaskPhone(to.Phone)
	}
	return &to
}
