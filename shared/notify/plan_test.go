package notify

import (
	"strings"
	"testing"
	"time"

	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
	"wxbridge/shared/reach"
)

// TestOptions: which channels a job tries for a person, in which order,
// and why the others are skipped, from what the identity and reach stores
// know (plain Go: no store, no WeChat).
func TestOptions(t *testing.T) {
	const (
		oaApp, mpApp   = "wxoa", "wxmp"
		oaOpen, mpOpen = "o-oa", "o-mp"
		oaTpl, mpTpl   = "tpl-oa-sub", "tpl-mp-sub"
	)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	oaKey, mpKey := reach.Key{AppID: oaApp, OpenID: oaOpen}, reach.Key{AppID: mpApp, OpenID: mpOpen}
	s := &Sender{OfficialAccount: oaApp, MiniProgram: mpApp}

	// People by what identity knows of their follow.
	follower := identity.OAIdentity{OpenID: oaOpen, Subscribed: true, SubscribedAt: ago(30 * 24 * time.Hour)}
	newFollower := identity.OAIdentity{OpenID: oaOpen, Subscribed: true, SubscribedAt: ago(time.Hour)}
	unfollowed := identity.OAIdentity{OpenID: oaOpen, SubscribedAt: ago(60 * 24 * time.Hour), UnsubscribedAt: ago(24 * time.Hour)}
	followUnknown := identity.OAIdentity{OpenID: oaOpen}
	person := func(oa *identity.OAIdentity, mp bool) identity.Person {
		p := identity.Person{UID: "u1"}
		if oa != nil {
			p.OA = map[string]identity.OAIdentity{oaApp: *oa}
		}
		if mp {
			p.MP = map[string]identity.MPIdentity{mpApp: {OpenID: mpOpen}}
		}
		return p
	}
	consents := func(cs ...reach.Consent) map[string]reach.Consent {
		out := map[string]reach.Consent{}
		for _, c := range cs {
			out[c.TemplateID] = c
		}
		return out
	}
	every := func(channels ...Channel) Job {
		return Job{ID: "j", Channels: channels,
			Template:        &TemplateMessage{TemplateID: "tpl-template", Data: map[string]string{"thing1": "x"}},
			Subscribe:       &SubscribeMessage{TemplateID: mpTpl, Data: map[string]string{"thing1": "x"}},
			OASubscribe:     &OASubscribeMessage{TemplateID: oaTpl, Data: map[string]string{"thing1": "x"}},
			CustomerService: &CustomerServiceMessage{Text: "Your kettle is on its way"},
		}
	}
	all := []Channel{Template, Subscribe, OASubscribe, CustomerService}
	anyOrder := every(Any)

	// want is one option as "channel" (called) or "channel!reason part"
	// (skipped), in order.
	cases := []struct {
		name  string
		job   Job
		p     identity.Person
		known map[reach.Key]reach.State
		want  []string
		spend map[Channel]string // the one-time consent a send uses up
	}{
		{"nothing_known_tries_every_channel_in_the_jobs_order", every(all...), person(&followUnknown, true), nil,
			[]string{"template", "subscribe", "oa_subscribe", "customer_service"}, nil},
		{"not_following_skips_template_and_customer_service", every(all...), person(&unfollowed, true), nil,
			[]string{"template!does not follow", "subscribe", "oa_subscribe", "customer_service!does not follow"}, nil},
		{"no_identities", every(all...), person(nil, false), nil,
			[]string{"template!no official-account identity", "subscribe!no mini-program identity",
				"oa_subscribe!no official-account identity", "customer_service!no official-account identity"}, nil},
		{"rejected_consents_are_skipped", every(OASubscribe, Subscribe), person(&follower, true),
			map[reach.Key]reach.State{
				oaKey: {Known: true, Consents: consents(reach.Consent{TemplateID: oaTpl, LongTerm: true, Rejected: true})},
				mpKey: {Known: true, Consents: consents(reach.Consent{TemplateID: mpTpl, Rejected: true})},
			},
			[]string{"oa_subscribe!rejected", "subscribe!rejected"}, nil},
		{"used_up_one_time_consents_are_skipped", every(OASubscribe, Subscribe, Template), person(&follower, true),
			map[reach.Key]reach.State{
				oaKey: {Known: true, Consents: consents(reach.Consent{TemplateID: oaTpl, Left: 0})},
				mpKey: {Known: true, Consents: consents(reach.Consent{TemplateID: mpTpl, Left: 0})},
			},
			[]string{"oa_subscribe!used up", "subscribe!used up", "template"}, nil},
		{"a_consent_to_another_template_says_nothing_of_this_one", every(Subscribe), person(&follower, true),
			map[reach.Key]reach.State{mpKey: {Known: true, Consents: consents(reach.Consent{TemplateID: "other", Rejected: true})}},
			[]string{"subscribe"}, nil},
		{"one_time_consents_left_are_spent", every(OASubscribe, Subscribe), person(&follower, true),
			map[reach.Key]reach.State{
				oaKey: {Known: true, Consents: consents(reach.Consent{TemplateID: oaTpl, Left: 2})},
				mpKey: {Known: true, Consents: consents(reach.Consent{TemplateID: mpTpl, Left: 1})},
			},
			[]string{"oa_subscribe", "subscribe"}, map[Channel]string{OASubscribe: oaTpl, Subscribe: mpTpl}},
		{"a_long_term_consent_is_not_spent", every(OASubscribe), person(&follower, false),
			map[reach.Key]reach.State{oaKey: {Known: true, Consents: consents(reach.Consent{TemplateID: oaTpl, LongTerm: true})}},
			[]string{"oa_subscribe"}, nil},
		{"window_closed_48_hours_after_the_last_message", every(CustomerService, Template), person(&follower, false),
			map[reach.Key]reach.State{oaKey: {Known: true, LastInteraction: now.Add(-reach.Window - time.Second), LastBrief: now.Add(-time.Hour)}},
			[]string{"customer_service!last message", "template"}, nil},
		{"window_open_within_48_hours_of_a_message", every(CustomerService), person(&follower, false),
			map[reach.Key]reach.State{oaKey: {Known: true, LastInteraction: now.Add(-reach.Window)}},
			[]string{"customer_service"}, nil},
		{"window_open_a_minute_after_a_menu_click", every(CustomerService), person(&follower, false),
			map[reach.Key]reach.State{oaKey: {Known: true, LastBrief: now.Add(-30 * time.Second)}},
			[]string{"customer_service"}, nil},
		{"a_follow_an_hour_ago_without_a_message_may_have_one_unseen", every(CustomerService), person(&newFollower, false),
			map[reach.Key]reach.State{oaKey: {Known: true, LastBrief: *newFollower.SubscribedAt}},
			[]string{"customer_service"}, nil},
		{"a_follow_older_than_48_hours_and_no_message_closes_it", every(CustomerService), person(&follower, false), nil,
			[]string{"customer_service!no message from the person recorded since"}, nil},
		{"a_click_older_than_48_hours_and_no_message_closes_it", every(CustomerService), person(&followUnknown, false),
			map[reach.Key]reach.State{oaKey: {Known: true, LastBrief: now.Add(-72 * time.Hour)}},
			[]string{"customer_service!no message from the person recorded since"}, nil},
		{"follow_unknown_and_nothing_recorded_may_try", every(CustomerService), person(&followUnknown, false), nil,
			[]string{"customer_service"}, nil},
		{"any_prefers_an_open_window", anyOrder, person(&follower, true),
			map[reach.Key]reach.State{
				oaKey: {Known: true, LastInteraction: now.Add(-time.Hour), Consents: consents(reach.Consent{TemplateID: oaTpl, LongTerm: true})},
				mpKey: {Known: true, Consents: consents(reach.Consent{TemplateID: mpTpl, Left: 1})},
			},
			[]string{"customer_service", "oa_subscribe", "template", "subscribe"}, map[Channel]string{Subscribe: mpTpl}},
		{"any_prefers_a_long_term_consent_to_a_template_message", anyOrder, person(&follower, true),
			map[reach.Key]reach.State{oaKey: {Known: true, Consents: consents(reach.Consent{TemplateID: oaTpl, LongTerm: true})}},
			// The window closed long ago; nothing is known of the mini program's consent.
			[]string{"customer_service!window closed", "oa_subscribe", "template", "subscribe"}, nil},
		{"any_prefers_a_follower_to_one_time_consents", anyOrder, person(&follower, true),
			map[reach.Key]reach.State{
				oaKey: {Known: true, Consents: consents(reach.Consent{TemplateID: oaTpl, Left: 1})},
				mpKey: {Known: true, Consents: consents(reach.Consent{TemplateID: mpTpl, Left: 3})},
			},
			[]string{"customer_service!window closed", "template", "subscribe", "oa_subscribe"},
			map[Channel]string{OASubscribe: oaTpl, Subscribe: mpTpl}},
		{"any_tries_known_consents_before_an_unknown_follow", anyOrder, person(&followUnknown, true),
			map[reach.Key]reach.State{mpKey: {Known: true, Consents: consents(reach.Consent{TemplateID: mpTpl, Left: 1})}},
			[]string{"subscribe", "template", "oa_subscribe", "customer_service"}, map[Channel]string{Subscribe: mpTpl}},
		{"any_of_a_non_follower_without_consents_known", anyOrder, person(&unfollowed, true), nil,
			[]string{"template!does not follow", "customer_service!does not follow", "subscribe", "oa_subscribe"}, nil},
		{"any_uses_only_the_messages_the_job_has", Job{ID: "j", Channels: contract.ChannelList{Any},
			CustomerService: &CustomerServiceMessage{Text: "hi"}, Template: &TemplateMessage{TemplateID: "t", Data: map[string]string{"a": "b"}}},
			person(&follower, false), map[reach.Key]reach.State{oaKey: {Known: true, LastInteraction: now.Add(-time.Minute)}},
			[]string{"customer_service", "template"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			from, why := s.sendersOf(tc.job)
			if why != "" {
				t.Fatal(why)
			}
			opts := options(tc.job, from, tc.p, tc.known, now)
			var got []string
			for _, o := range opts {
				if o.skip != "" {
					got = append(got, string(o.channel)+"!"+o.skip)
				} else {
					got = append(got, string(o.channel))
				}
				if w := tc.spend[o.channel]; o.spend != w {
					t.Errorf("%s spends %q, want %q", o.channel, o.spend, w)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("options %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				ch, reason, skip := strings.Cut(w, "!")
				g := got[i]
				if skip && !(strings.HasPrefix(g, ch+"!") && strings.Contains(g, reason)) || !skip && g != ch {
					t.Fatalf("options %q, want %q", got, tc.want)
				}
			}
		})
	}
}

// TestReachKeys: the reach state is read only for the identities the job's
// channels need, in one request.
func TestReachKeys(t *testing.T) {
	s := &Sender{OfficialAccount: "wxoa", MiniProgram: "wxmp"}
	p := identity.Person{OA: map[string]identity.OAIdentity{"wxoa": {OpenID: "o1"}}, MP: map[string]identity.MPIdentity{"wxmp": {OpenID: "m1"}}}
	tpl := &TemplateMessage{TemplateID: "t", Data: map[string]string{"a": "b"}}
	for _, tc := range []struct {
		name string
		job  Job
		want int
	}{
		{"template_only_reads_nothing", Job{Template: tpl}, 0},
		{"customer_service_reads_the_oa_identity", Job{Template: tpl, CustomerService: &CustomerServiceMessage{Text: "x"}}, 1},
		{"every_channel_reads_both", Job{Template: tpl, CustomerService: &CustomerServiceMessage{Text: "x"},
			Subscribe: &SubscribeMessage{TemplateID: "m", Data: map[string]string{"a": "b"}}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, _ := s.sendersOf(tc.job)
			if got := reachKeys(tc.job, from, p); len(got) != tc.want {
				t.Fatalf("keys %+v, want %d", got, tc.want)
			}
		})
	}
}
