package notify

import (
	"strings"
	"testing"

	"wxbridge/shared/config"
	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
)

// TestSendersOf: which apps a job's channels send from (plain Go: the
// configuration and the job alone).
func TestSendersOf(t *testing.T) {
	const (
		oa1, oa2 = "wx0000000000000a01", "wx0000000000000a02"
		mp1, mp2 = "wx0000000000000b01", "wx0000000000000b02"
		web      = "wx0000000000000c01"
	)
	cfg := config.Config{
		OfficialAccount:  config.OfficialAccount{App: config.App{AppID: oa1}},
		OfficialAccounts: []config.OfficialAccount{{App: config.App{AppID: oa2}}},
		MiniProgram:      config.App{AppID: mp1},
		MiniPrograms:     []config.App{{AppID: mp2}},
		WebsiteApps:      []config.App{{AppID: web}},
	}
	s := &Sender{OfficialAccount: oa1, MiniProgram: mp1, Apps: cfg}
	for _, tc := range []struct {
		name   string
		from   contract.AppIDs
		oa, mp string
		why    string // the start of why the job cannot be sent
	}{
		{"none_sends_from_the_defaults", nil, oa1, mp1, ""},
		{"an_official_account_leaves_the_mini_program_default", contract.AppIDs{oa2}, oa2, mp1, ""},
		{"a_mini_program_leaves_the_official_account_default", contract.AppIDs{mp2}, oa1, mp2, ""},
		{"one_of_each", contract.AppIDs{mp2, oa2}, oa2, mp2, ""},
		{"the_defaults_named", contract.AppIDs{oa1, mp1}, oa1, mp1, ""},
		{"a_website_app_sends_nothing_but_is_no_error", contract.AppIDs{web, oa2}, oa2, mp1, ""},
		{"an_app_not_configured", contract.AppIDs{oa2, "wx0000000000000d01"}, "", "", UnknownApp},
		{"two_official_accounts", contract.AppIDs{oa1, oa2}, "", "", TwoAppsOfOneKind},
		{"two_mini_programs", contract.AppIDs{mp2, oa2, mp1}, "", "", TwoAppsOfOneKind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := s.sendersOf(Job{From: tc.from})
			if !strings.HasPrefix(why, tc.why) || (why == "") != (tc.why == "") {
				t.Fatalf("why %q, want %q", why, tc.why)
			}
			if tc.why == "" && (got.oa != tc.oa || got.mp != tc.mp) {
				t.Fatalf("sends from %s and %s, want %s and %s", got.oa, got.mp, tc.oa, tc.mp)
			}
		})
	}
	// Without Apps only the defaults are known.
	bare := &Sender{OfficialAccount: oa1, MiniProgram: mp1}
	if _, why := bare.sendersOf(Job{From: contract.AppIDs{oa2}}); !strings.HasPrefix(why, UnknownApp) {
		t.Errorf("without Apps, %s: %q", oa2, why)
	}
	// The default named sends as a job without from does (reasons too).
	if from, why := bare.sendersOf(Job{From: contract.AppIDs{mp1}}); why != "" || from.mp != mp1 || from.mpNamed {
		t.Errorf("without Apps, the default named: %+v %q", from, why)
	}
}

// TestOptionsFromAnotherApp: a job from a second official account reaches
// the person through their openid there, and skips (NoIdentityInApp) the
// channels of an app they never used, while the default mini program still
// serves subscribe.
func TestOptionsFromAnotherApp(t *testing.T) {
	const oa1, oa2, mp1 = "wx0000000000000a01", "wx0000000000000a02", "wx0000000000000b01"
	s := &Sender{OfficialAccount: oa1, MiniProgram: mp1, Apps: config.Config{
		OfficialAccount:  config.OfficialAccount{App: config.App{AppID: oa1}},
		OfficialAccounts: []config.OfficialAccount{{App: config.App{AppID: oa2}}},
		MiniProgram:      config.App{AppID: mp1},
	}}
	job := Job{ID: "j", From: contract.AppIDs{oa2},
		Template:  &TemplateMessage{TemplateID: "t", Data: map[string]string{"a": "b"}},
		Subscribe: &SubscribeMessage{TemplateID: "m", Data: map[string]string{"thing1": "x"}}}
	from, _ := s.sendersOf(job)
	both := identity.Person{UID: "u", OA: map[string]identity.OAIdentity{oa1: {OpenID: "o-1"}, oa2: {OpenID: "o-2"}}, MP: map[string]identity.MPIdentity{mp1: {OpenID: "m-1"}}}
	opts := options(job, from, both, nil, s.now())
	if opts[0].skip != "" || opts[0].appid != oa2 || opts[0].openid != "o-2" || opts[1].appid != mp1 || opts[1].openid != "m-1" {
		t.Fatalf("options %+v", opts)
	}
	onlyFirst := identity.Person{UID: "u", OA: map[string]identity.OAIdentity{oa1: {OpenID: "o-1"}}, MP: map[string]identity.MPIdentity{mp1: {OpenID: "m-1"}}}
	opts = options(job, from, onlyFirst, nil, s.now())
	if !strings.HasPrefix(opts[0].skip, NoIdentityInApp) || !strings.Contains(opts[0].skip, oa2) || opts[0].skipped().AppID != oa2 {
		t.Fatalf("template for someone without an identity in %s: %+v", oa2, opts[0])
	}
	if opts[1].skip != "" || opts[1].openid != "m-1" {
		t.Fatalf("subscribe from the default mini program: %+v", opts[1])
	}
	// A job without from keeps the reasons of old.
	job.From = nil
	from, _ = s.sendersOf(job)
	if o := options(job, from, identity.Person{UID: "u"}, nil, s.now()); o[0].skip != "no official-account identity" || o[1].skip != "no mini-program identity" {
		t.Fatalf("old job: %+v", o)
	}
}

// TestRecordedMasksThePhone: the ledger, and so every outcome event, keeps
// a phone number masked.
func TestRecordedMasksThePhone(t *testing.T) {
	if got := recorded(Recipient{Phone: "+8613800001234"}); got.Phone != "+****1234" {
		t.Errorf("recorded %q", got.Phone)
	}
	if got := recorded(Recipient{UID: "u1"}); got.UID != "u1" || got.Phone != "" {
		t.Errorf("recorded %+v", got)
	}
}
