package notify

import (
	"context"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
	"wxbridge/shared/reach"
)

// An OA subscribe-notification template id shaped like the platform's.
var oaSubTemplate = "oaSubscribe" + strings.Repeat("0", 32)

const (
	bizsend    = "/cgi-bin/message/subscribe/bizsend"
	customSend = "/cgi-bin/message/custom/send"
)

// sendPaths are every send API: a test counts all of them to show that
// nothing was called.
var sendPaths = []string{templateSend, subscribeSend, bizsend, customSend}

// channelEnv is a sendEnv whose Sender knows the reach store.
type channelEnv struct {
	*sendEnv
	reach *reach.Store
}

func newChannelEnv(t *testing.T) *channelEnv {
	t.Helper()
	e := newSendEnv(t)
	store := reach.New(e.te.DB, e.te.Table)
	store.Now = e.te.Now
	e.s.Reach = store
	return &channelEnv{sendEnv: e, reach: store}
}

// everyChannel is a job with a message for every channel, in the given
// order ("any" when none is given).
func everyChannel(id string, p sandbox.Person, channels ...Channel) Job {
	job := bothChannels(id, p, channels...)
	if len(channels) == 0 {
		job.Channels = contract.ChannelList{Any}
	}
	job.OASubscribe = &OASubscribeMessage{TemplateID: oaSubTemplate, Page: "https://shop.example.com/orders/8812",
		Data: map[string]string{"thing1": "Blue kettle", "phrase3": "已发货"}}
	job.CustomerService = &CustomerServiceMessage{Text: "Your Blue kettle is on its way"}
	return job
}

// calls is how often each send API was called so far.
func (e *channelEnv) calls() map[string]int {
	out := map[string]int{}
	for _, p := range sendPaths {
		out[p] = e.te.Sandbox.Calls(p)
	}
	return out
}

// called reports the calls made since before, by API.
func (e *channelEnv) called(before map[string]int) map[string]int {
	out := map[string]int{}
	for p, n := range e.calls() {
		if d := n - before[p]; d > 0 {
			out[p] = d
		}
	}
	return out
}

func (e *channelEnv) oaKey(p sandbox.Person) reach.Key {
	return reach.Key{AppID: sandbox.DevOfficialAccount.AppID, OpenID: p.OAOpenID}
}

func (e *channelEnv) mpKey(p sandbox.Person) reach.Key {
	return reach.Key{AppID: sandbox.DevMiniProgram.AppID, OpenID: p.MPOpenID}
}

// consented records consent events as follow-event and login record them.
func (e *channelEnv) consented(t *testing.T, k reach.Key, cs ...reach.Consent) {
	t.Helper()
	for i := range cs {
		if cs[i].At.IsZero() {
			cs[i].At = e.te.Now().Add(time.Duration(i) * time.Millisecond)
		}
	}
	if err := e.reach.Consented(context.Background(), k, cs); err != nil {
		t.Fatal(err)
	}
}

// unfollow records in the identity store that p unfollowed (as a push
// would), and makes it so on the platform.
func (e *channelEnv) unfollow(t *testing.T, p sandbox.Person) {
	t.Helper()
	if _, err := e.te.Sandbox.Unfollow(context.Background(), p.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.People.Link(context.Background(), identity.Sighting{OA: &identity.OASighting{
		AppID: sandbox.DevOfficialAccount.AppID, OpenID: p.OAOpenID, Follow: &identity.Follow{Subscribed: false, At: e.te.Now().Truncate(time.Second)},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *channelEnv) inbox(t *testing.T, p sandbox.Person) []sandbox.InboxMessage {
	t.Helper()
	in, err := e.te.Sandbox.Inbox(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestNewChannelsSend: an OA subscribe notification and a customer-service
// message (text and mini-program card) reach the person; a send spends
// one recorded one-time consent.
func TestNewChannelsSend(t *testing.T) {
	e := newChannelEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox

	t.Run("oa_subscribe_spends_a_recorded_one_time_consent", func(t *testing.T) {
		p := e.person(t, true)
		sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate}, sandbox.OAPopup{TemplateID: oaSubTemplate})
		e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate}, reach.Consent{TemplateID: oaSubTemplate})
		before := e.calls()
		res := e.deliver(everyChannel("oas-1", p, OASubscribe), 1)
		if res.Status != Sent || res.Channel != OASubscribe || res.MsgID == "" {
			t.Fatalf("%+v", res)
		}
		if c := e.called(before); len(c) != 1 || c[bizsend] != 1 {
			t.Fatalf("calls %v", c)
		}
		in := e.inbox(t, p)
		if len(in) != 1 || in[0].Channel != sandbox.ChannelOASubscribe || in[0].MsgID != res.MsgID || in[0].Data["thing1"] != "Blue kettle" {
			t.Fatalf("inbox %+v", in)
		}
		got := e.entry(t, "oas-1")
		checkTried(t, got.Tried, try{channel: OASubscribe, outcome: contract.TrySent})
		st, err := e.reach.Get(ctx, e.oaKey(p))
		if err != nil || st[e.oaKey(p)].Consents[oaSubTemplate].Left != 1 {
			t.Fatalf("reach after the send: %+v %v (want one consent left)", st, err)
		}
		// The delivery report (subscribe_msg_sent_event) finds the entry by
		// its msg_key, as a template message's.
		if ok, err := e.s.Ledger.Report(ctx, sandbox.DevOfficialAccount.AppID, res.MsgID, "success"); !ok || err != nil {
			t.Fatalf("report: %v %v", ok, err)
		}
		if got := e.entry(t, "oas-1"); got.Status != Delivered {
			t.Fatalf("after the report: %+v", got)
		}
	})

	t.Run("customer_service_text_and_card_within_the_window", func(t *testing.T) {
		p := e.person(t, true)
		if _, err := sb.Message(ctx, p.ID, "where is my kettle?"); err != nil {
			t.Fatal(err)
		}
		if err := e.reach.Interacted(ctx, e.oaKey(p), e.te.Now()); err != nil {
			t.Fatal(err)
		}
		before := e.calls()
		if res := e.deliver(everyChannel("cs-1", p, CustomerService), 1); res.Status != Sent || res.Channel != CustomerService {
			t.Fatalf("%+v", res)
		}
		card := everyChannel("cs-2", p, CustomerService)
		card.CustomerService = &CustomerServiceMessage{MiniProgramPage: &contract.MiniProgramCard{
			Title: "Your order", AppID: sandbox.DevMiniProgram.AppID, PagePath: "pages/order/detail?id=8812", ThumbMediaID: "MEDIA_ID_1"}}
		if res := e.deliver(card, 1); res.Status != Sent {
			t.Fatalf("card: %+v", res)
		}
		if c := e.called(before); len(c) != 1 || c[customSend] != 2 {
			t.Fatalf("calls %v", c)
		}
		in := e.inbox(t, p)
		if len(in) != 2 || in[0].Text != "Your Blue kettle is on its way" || in[1].Card == nil || in[1].Card.PagePath != "pages/order/detail?id=8812" {
			t.Fatalf("inbox %+v", in)
		}
	})
}

// TestSkipsWithoutCallingWeChat: a channel wxbridge knows cannot reach the
// person is not called; the entry says why (a skipped Try), and a job no
// channel reaches is UNDELIVERABLE in one write.
func TestSkipsWithoutCallingWeChat(t *testing.T) {
	e := newChannelEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		channels []Channel
		setup    func(t *testing.T, p sandbox.Person)
		skipped  map[Channel]string // reason part
	}{
		{"not_following", []Channel{Template, CustomerService}, func(t *testing.T, p sandbox.Person) {
			e.unfollow(t, p)
		}, map[Channel]string{Template: "does not follow", CustomerService: "does not follow"}},
		{"consents_rejected", []Channel{OASubscribe, Subscribe}, func(t *testing.T, p sandbox.Person) {
			e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate, Rejected: true})
			e.consented(t, e.mpKey(p), reach.Consent{TemplateID: mpTemplate}, reach.Consent{TemplateID: mpTemplate, Rejected: true})
		}, map[Channel]string{OASubscribe: "rejected", Subscribe: "rejected"}},
		{"consents_used_up", []Channel{OASubscribe, Subscribe}, func(t *testing.T, p sandbox.Person) {
			e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate})
			e.consented(t, e.mpKey(p), reach.Consent{TemplateID: mpTemplate})
			e.reach.Use(ctx, e.oaKey(p), oaSubTemplate)
			e.reach.Use(ctx, e.mpKey(p), mpTemplate)
		}, map[Channel]string{OASubscribe: "used up", Subscribe: "used up"}},
		{"window_closed", []Channel{CustomerService}, func(t *testing.T, p sandbox.Person) {
			e.reach.Interacted(ctx, e.oaKey(p), e.te.Now().Add(-reach.Window-time.Minute))
		}, map[Channel]string{CustomerService: "window closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.person(t, true)
			tc.setup(t, p)
			job := everyChannel("skip-"+tc.name, p, tc.channels...)
			before := e.calls()
			e.writes.Counts()
			res := e.deliver(job, 1)
			if res.Status != Undeliverable {
				t.Fatalf("%+v", res)
			}
			if c := e.called(before); len(c) != 0 {
				t.Fatalf("WeChat was called: %v", c)
			}
			if c := e.writes.Counts(); c["UpdateItem"]+c["PutItem"] != 1 {
				t.Fatalf("ledger requests %v, want 1 write", c)
			}
			got := e.entry(t, job.ID)
			var want []try
			for _, ch := range tc.channels {
				want = append(want, try{channel: ch, outcome: contract.TrySkipped, reason: tc.skipped[ch]})
				if !strings.Contains(got.Reason, string(ch)+": ") {
					t.Errorf("reason %q does not name %s", got.Reason, ch)
				}
			}
			checkTried(t, got.Tried, want...)
		})
	}
}

// TestFallbackThroughTheNewChannels: the channels are tried in the job's
// order; 43101, 45015 and 45047 move on to the next one, a skipped channel
// costs no call, and what WeChat said is learnt (43101: the next job skips
// the template without a call).
func TestFallbackThroughTheNewChannels(t *testing.T) {
	e := newChannelEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox

	t.Run("43101_then_45015_then_the_template", func(t *testing.T) {
		p := e.person(t, true)                  // follows; no OA consent, no message
		sb.Clock().Advance(sandbox.EventWindow) // the follow's minute is over
		job := everyChannel("fb-1", p, OASubscribe, CustomerService, Template)
		before := e.calls()
		if res := e.deliver(job, 1); res.Status != Sent || res.Channel != Template {
			t.Fatalf("%+v", res)
		}
		if c := e.called(before); c[bizsend] != 1 || c[customSend] != 1 || c[templateSend] != 1 || len(c) != 3 {
			t.Fatalf("calls %v", c)
		}
		checkTried(t, e.entry(t, job.ID).Tried,
			try{channel: OASubscribe, outcome: contract.TryFailed, errcode: 43101, class: "user_state", reason: "errcode 43101", rid: true},
			try{channel: CustomerService, outcome: contract.TryFailed, errcode: 45015, class: "user_state", reason: "errcode 45015", rid: true},
			try{channel: Template, outcome: contract.TrySent})
		// 43101 is recorded: the next job skips the notification.
		before = e.calls()
		if res := e.deliver(everyChannel("fb-2", p, OASubscribe, Template), 1); res.Status != Sent || res.Channel != Template {
			t.Fatalf("second job: %+v", res)
		}
		if c := e.called(before); c[bizsend] != 0 {
			t.Fatalf("second job called bizsend: %v", c)
		}
		checkTried(t, e.entry(t, "fb-2").Tried,
			try{channel: OASubscribe, outcome: contract.TrySkipped, reason: "used up"},
			try{channel: Template, outcome: contract.TrySent})
	})

	t.Run("45047_moves_on", func(t *testing.T) {
		p := e.person(t, true)
		sb.Clock().Advance(sandbox.EventWindow) // the follow's minute is over
		sb.Message(ctx, p.ID, "hello")
		e.reach.Interacted(ctx, e.oaKey(p), e.te.Now())
		// The platform allows five messages after the person's: the
		// sixth job falls back.
		for i := range sandbox.MessageAllowance {
			job := everyChannel("limit-"+string(rune('a'+i)), p, CustomerService, Template)
			if res := e.deliver(job, 1); res.Channel != CustomerService {
				t.Fatalf("send %d: %+v", i, res)
			}
		}
		res := e.deliver(everyChannel("limit-z", p, CustomerService, Template), 1)
		if res.Status != Sent || res.Channel != Template {
			t.Fatalf("%+v", res)
		}
		checkTried(t, e.entry(t, "limit-z").Tried,
			try{channel: CustomerService, outcome: contract.TryFailed, errcode: 45047, class: "user_state", reason: "errcode 45047", rid: true},
			try{channel: Template, outcome: contract.TrySent})
	})

	t.Run("skipped_channels_between_calls_are_noted_in_order", func(t *testing.T) {
		p := e.person(t, false) // does not follow on the platform; identity does not know
		e.consented(t, e.mpKey(p), reach.Consent{TemplateID: mpTemplate, Rejected: true})
		sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate, LongTerm: true})
		job := everyChannel("fb-3", p, Template, Subscribe, OASubscribe)
		if res := e.deliver(job, 1); res.Status != Sent || res.Channel != OASubscribe {
			t.Fatalf("%+v", res)
		}
		checkTried(t, e.entry(t, job.ID).Tried,
			try{channel: Template, outcome: contract.TryFailed, errcode: 43004, class: "user_state", reason: "errcode 43004", rid: true},
			try{channel: Subscribe, outcome: contract.TrySkipped, reason: "rejected"},
			try{channel: OASubscribe, outcome: contract.TrySent})
	})
}

// TestAnyChoosesTheCheapestReachable: with "channels": "any" the first
// channel called is the cheapest the person is known to be reachable on,
// and the known unreachable ones are noted as skipped.
func TestAnyChoosesTheCheapestReachable(t *testing.T) {
	e := newChannelEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox
	follow := func(t *testing.T, p sandbox.Person) {
		t.Helper()
		_, err := e.s.People.Link(ctx, identity.Sighting{OA: &identity.OASighting{AppID: sandbox.DevOfficialAccount.AppID, OpenID: p.OAOpenID,
			Follow: &identity.Follow{Subscribed: true, At: e.te.Now().Add(-72 * time.Hour).Truncate(time.Second)}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, p sandbox.Person)
		want  Channel
		path  string
	}{
		{"an_open_window", func(t *testing.T, p sandbox.Person) {
			follow(t, p)
			sb.Message(ctx, p.ID, "hi")
			e.reach.Interacted(ctx, e.oaKey(p), e.te.Now())
			sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate, LongTerm: true})
			e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate, LongTerm: true})
		}, CustomerService, customSend},
		{"a_long_term_consent_before_a_template", func(t *testing.T, p sandbox.Person) {
			follow(t, p)
			sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate, LongTerm: true})
			e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate, LongTerm: true})
		}, OASubscribe, bizsend},
		{"a_follower_before_a_one_time_consent", func(t *testing.T, p sandbox.Person) {
			follow(t, p)
			e.consented(t, e.mpKey(p), reach.Consent{TemplateID: mpTemplate})
		}, Template, templateSend},
		{"a_one_time_consent_of_a_non_follower", func(t *testing.T, p sandbox.Person) {
			e.unfollow(t, p)
			e.consented(t, e.mpKey(p), reach.Consent{TemplateID: mpTemplate})
		}, Subscribe, subscribeSend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.person(t, true)
			tc.setup(t, p)
			before := e.calls()
			res := e.deliver(everyChannel("any-"+tc.name, p), 1)
			if res.Status != Sent || res.Channel != tc.want {
				t.Fatalf("%+v", res)
			}
			if c := e.called(before); len(c) != 1 || c[tc.path] != 1 {
				t.Fatalf("calls %v, want one to %s", c, tc.path)
			}
		})
	}
	t.Run("skips_are_noted_first", func(t *testing.T) {
		p := e.person(t, true)
		e.unfollow(t, p)
		e.consented(t, e.mpKey(p), reach.Consent{TemplateID: mpTemplate})
		if res := e.deliver(everyChannel("any-noted", p), 1); res.Channel != Subscribe {
			t.Fatalf("%+v", res)
		}
		checkTried(t, e.entry(t, "any-noted").Tried,
			try{channel: Template, outcome: contract.TrySkipped, reason: "does not follow"},
			try{channel: CustomerService, outcome: contract.TrySkipped, reason: "does not follow"},
			try{channel: Subscribe, outcome: contract.TrySent})
	})
}

// TestNoFallbackAfterAnUnknownOutcome: a notification or customer-service
// message whose answer is lost may have reached the person; WeChat does
// not deduplicate either, so the job is UNKNOWN and no other channel is
// called.
func TestNoFallbackAfterAnUnknownOutcome(t *testing.T) {
	e := newChannelEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox
	for _, tc := range []struct {
		ch    Channel
		path  string
		setup func(p sandbox.Person)
	}{
		{OASubscribe, bizsend, func(p sandbox.Person) {
			sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate})
			e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate})
		}},
		{CustomerService, customSend, func(p sandbox.Person) {
			sb.Message(ctx, p.ID, "hi")
			e.reach.Interacted(ctx, e.oaKey(p), e.te.Now())
		}},
	} {
		t.Run(string(tc.ch), func(t *testing.T) {
			p := e.person(t, true)
			tc.setup(p)
			e.fault(t, sandbox.Fault{Path: tc.path, LostAnswer: true, Count: 1})
			job := everyChannel("lost-"+string(tc.ch), p, tc.ch, Template, Subscribe)
			before := e.calls()
			res := e.deliver(job, 1)
			if res.Status != Unknown || res.Channel != tc.ch || res.Retry != nil {
				t.Fatalf("%+v", res)
			}
			if c := e.called(before); len(c) != 1 || c[tc.path] != 1 {
				t.Fatalf("calls %v", c)
			}
			if in := e.inbox(t, p); len(in) != 1 || in[0].Channel != string(tc.ch) {
				t.Fatalf("inbox %+v", in)
			}
			checkTried(t, e.entry(t, job.ID).Tried, try{channel: tc.ch, outcome: contract.TryUnknown, class: "transient", reason: "not sent again"})
			// Its next delivery changes nothing.
			before = e.calls()
			if res := e.deliver(job, 2); !res.Duplicate || res.Status != Unknown {
				t.Fatalf("redelivery: %+v", res)
			}
			if c := e.called(before); len(c) != 0 {
				t.Fatalf("redelivery calls %v", c)
			}
		})
	}
}
