package notify

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
	"wxbridge/shared/reach"
)

// Attacks on issue 15's promises: no wasted calls, no fallback after an
// unknown outcome, at most once per job across channels, a one-time
// consent spent once per send, the 48-hour window at its edge, and the
// platform's refusals (45015, 45047, 43101) moving the job on and being
// remembered.

// sentOn counts p's inbox messages by channel.
func (e *channelEnv) sentOn(t *testing.T, p sandbox.Person) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range e.inbox(t, p) {
		out[m.Channel]++
	}
	return out
}

// recordFollow tells the identity store that p followed at at, as the
// follow push would.
func (e *channelEnv) recordFollow(t *testing.T, p sandbox.Person, at time.Time) {
	t.Helper()
	_, err := e.s.People.Link(context.Background(), identity.Sighting{OA: &identity.OASighting{AppID: sandbox.DevOfficialAccount.AppID, OpenID: p.OAOpenID,
		Follow: &identity.Follow{Subscribed: true, At: at.Truncate(time.Second)}}})
	if err != nil {
		t.Fatal(err)
	}
}

// wrote records the person's message as follow-event does: at the push's
// CreateTime, whole seconds.
func (e *channelEnv) wrote(t *testing.T, p sandbox.Person) time.Time {
	t.Helper()
	if _, err := e.te.Sandbox.Message(context.Background(), p.ID, "where is my kettle?"); err != nil {
		t.Fatal(err)
	}
	at := e.te.Now().Truncate(time.Second)
	if err := e.reach.Interacted(context.Background(), e.oaKey(p), at); err != nil {
		t.Fatal(err)
	}
	return at
}

// TestAttackAnySkipsWhatIsKnownWithoutACall: "any" for a person every
// channel is known not to reach costs no WeChat call at all, and the
// entry says why for each.
func TestAttackAnySkipsWhatIsKnownWithoutACall(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	ctx := context.Background()
	p := e.person(t, true)
	e.unfollow(t, p)
	e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate})
	if err := e.reach.Use(ctx, e.oaKey(p), oaSubTemplate); err != nil {
		t.Fatal(err)
	}
	e.consented(t, e.mpKey(p), reach.Consent{TemplateID: mpTemplate, Rejected: true})
	before := e.calls()
	res := e.deliver(everyChannel("atk-any-none", p), 1)
	if res.Status != Undeliverable {
		t.Fatalf("%+v", res)
	}
	if c := e.called(before); len(c) != 0 {
		t.Fatalf("WeChat was called: %v", c)
	}
	got := e.entry(t, "atk-any-none")
	if len(got.Tried) != 4 {
		t.Fatalf("tried %+v, want the four channels skipped", got.Tried)
	}
	for _, tr := range got.Tried {
		if tr.Outcome != contract.TrySkipped || tr.Reason == "" {
			t.Errorf("try %+v, want skipped with a reason", tr)
		}
	}
}

// TestAttackNoFallbackAfterALostAnswer: an attempt whose answer is lost
// ends the job UNKNOWN, even when it was itself a fallback or chosen by
// "any"; a later delivery of the job calls nothing. The consent the lost
// send may have spent costs at most one call to find out (43101, then
// remembered).
func TestAttackNoFallbackAfterALostAnswer(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox

	t.Run("bizsend_after_a_45015_fallback", func(t *testing.T) {
		p := e.person(t, true)
		sb.Clock().Advance(sandbox.EventWindow) // the follow's minute is over; nothing recorded
		sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate})
		e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate})
		e.fault(t, sandbox.Fault{Path: bizsend, LostAnswer: true, Count: 1})
		job := everyChannel("atk-lost-2nd", p, CustomerService, OASubscribe, Template, Subscribe)
		before := e.calls()
		res := e.deliver(job, 1)
		if res.Status != Unknown || res.Channel != OASubscribe || res.Retry != nil {
			t.Fatalf("%+v", res)
		}
		if c := e.called(before); len(c) != 2 || c[customSend] != 1 || c[bizsend] != 1 {
			t.Fatalf("calls %v, want custom/send then bizsend only", c)
		}
		checkTried(t, e.entry(t, job.ID).Tried,
			try{channel: CustomerService, outcome: contract.TryFailed, errcode: 45015, class: "user_state", reason: "45015", rid: true},
			try{channel: OASubscribe, outcome: contract.TryUnknown, class: "transient", reason: "not sent again"})
		for n := 2; n <= 3; n++ {
			before = e.calls()
			if res := e.deliver(job, n); !res.Duplicate || res.Status != Unknown {
				t.Fatalf("delivery %d: %+v", n, res)
			}
			if c := e.called(before); len(c) != 0 {
				t.Fatalf("delivery %d called %v", n, c)
			}
		}
		if got := e.sentOn(t, p); got[sandbox.ChannelOASubscribe] != 1 || len(got) != 1 {
			t.Fatalf("inbox by channel %v", got)
		}
		// The lost send did spend the consent: the next job pays one
		// bizsend to learn it (43101), the one after pays none.
		before = e.calls()
		if res := e.deliver(everyChannel("atk-lost-next-1", p, OASubscribe, Template), 1); res.Channel != Template {
			t.Fatalf("%+v", res)
		}
		if res := e.deliver(everyChannel("atk-lost-next-2", p, OASubscribe, Template), 1); res.Channel != Template {
			t.Fatalf("%+v", res)
		}
		if c := e.called(before); c[bizsend] > 1 {
			t.Fatalf("calls %v: more than one bizsend wasted on a consent a lost send spent", c)
		}
	})

	t.Run("custom_send_chosen_by_any", func(t *testing.T) {
		p := e.person(t, true)
		e.wrote(t, p)
		sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate, LongTerm: true})
		e.consented(t, e.oaKey(p), reach.Consent{TemplateID: oaSubTemplate, LongTerm: true})
		e.fault(t, sandbox.Fault{Path: customSend, LostAnswer: true, Count: 1})
		before := e.calls()
		res := e.deliver(everyChannel("atk-lost-any", p), 1)
		if res.Status != Unknown || res.Channel != CustomerService {
			t.Fatalf("%+v", res)
		}
		if c := e.called(before); len(c) != 1 || c[customSend] != 1 {
			t.Fatalf("calls %v", c)
		}
	})
}

// TestAttackWorkerStopsMidCall: a worker whose lease runs out while its
// fallback call to bizsend hangs is replaced by another delivery, which
// must not call any channel: the entry names the channel in flight
// before the call is made. The message reaches the person once.
func TestAttackWorkerStopsMidCall(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox
	p := e.person(t, true)
	sb.Clock().Advance(sandbox.EventWindow)
	sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate})
	e.fault(t, sandbox.Fault{Path: bizsend, Latency: 1500 * time.Millisecond, Count: 1})
	job := everyChannel("atk-takeover", p, CustomerService, OASubscribe, Template)
	before := e.calls()
	first := make(chan Result, 1)
	now := e.te.Now()
	go func() {
		first <- e.s.Send(ctx, job, Attempt{Lease: now.Add(30 * time.Second), Receives: 1, FirstReceived: now})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for sb.Calls(bizsend) == before[bizsend] {
		if time.Now().After(deadline) {
			t.Fatal("bizsend never called")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sb.Clock().Advance(time.Minute) // the first worker's lease is over
	second := e.deliver(job, 2)
	if second.Status != Unknown || second.Channel != OASubscribe {
		t.Fatalf("takeover: %+v", second)
	}
	r1 := <-first
	if r1.Status == Sent && !r1.Duplicate && r1.Err == nil {
		t.Fatalf("the first worker settled over the takeover: %+v", r1)
	}
	if c := e.called(before); c[templateSend] != 0 || c[bizsend] != 1 || c[customSend] != 1 {
		t.Fatalf("calls %v", c)
	}
	if got := e.sentOn(t, p); got[sandbox.ChannelOASubscribe] != 1 || len(got) != 1 {
		t.Fatalf("inbox by channel %v", got)
	}
	if got := e.entry(t, job.ID); got.Status != Unknown {
		t.Fatalf("entry %+v", got)
	}
}

// TestAttackConcurrentDeliveriesOfOneJob: eight workers deliver the same
// job at once, each falling back through 43101 and 45015: one message
// reaches the person, and each channel is called once.
func TestAttackConcurrentDeliveriesOfOneJob(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	sb := e.te.Sandbox
	p := e.person(t, true)
	sb.Clock().Advance(sandbox.EventWindow)
	job := everyChannel("atk-dup", p, OASubscribe, CustomerService, Template)
	before := e.calls()
	results := make(chan Result, 8)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { results <- e.deliver(job, i+1) })
	}
	wg.Wait()
	close(results)
	sent := 0
	for r := range results {
		switch {
		case r.Status == Sent && !r.Duplicate:
			sent++
		case r.Duplicate || r.Retry != nil:
		default:
			t.Errorf("unexpected result %+v", r)
		}
	}
	if sent != 1 {
		t.Fatalf("%d deliveries sent the job", sent)
	}
	if c := e.called(before); c[bizsend] != 1 || c[customSend] != 1 || c[templateSend] != 1 {
		t.Fatalf("calls %v, want each channel once", c)
	}
	if got := e.sentOn(t, p); got[sandbox.ChannelTemplate] != 1 || len(got) != 1 {
		t.Fatalf("inbox by channel %v", got)
	}
	// Redelivered after all of it: nothing more.
	before = e.calls()
	if r := e.deliver(job, 9); !r.Duplicate || r.Status != Sent {
		t.Fatalf("%+v", r)
	}
	if c := e.called(before); len(c) != 0 {
		t.Fatalf("calls %v", c)
	}
}

// TestAttackConsentsSpentOncePerSend: six jobs to one person race for
// two one-time consents (recorded, and held on the platform): exactly two
// go out on the subscribe channel, the others fall back; the store ends
// with none left (never below zero), and the next job skips the channel
// without a call.
func TestAttackConsentsSpentOncePerSend(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox
	for _, tc := range []struct {
		ch      Channel
		path    string
		inbox   string
		key     func(sandbox.Person) reach.Key
		tpl     string
		consent func(p sandbox.Person)
	}{
		{OASubscribe, bizsend, sandbox.ChannelOASubscribe, e.oaKey, oaSubTemplate, func(p sandbox.Person) {
			sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate}, sandbox.OAPopup{TemplateID: oaSubTemplate})
		}},
		{Subscribe, subscribeSend, sandbox.ChannelSubscribe, e.mpKey, mpTemplate, func(p sandbox.Person) {
			sb.GrantConsent(p.ID, mpTemplate) // person() granted the first
		}},
	} {
		t.Run(string(tc.ch), func(t *testing.T) {
			p := e.person(t, true)
			tc.consent(p)
			e.consented(t, tc.key(p), reach.Consent{TemplateID: tc.tpl}, reach.Consent{TemplateID: tc.tpl})
			var wg sync.WaitGroup
			results := make([]Result, 6)
			for i := range results {
				wg.Go(func() {
					results[i] = e.deliver(everyChannel(fmt.Sprintf("atk-race-%s-%d", tc.ch, i), p, tc.ch, Template), 1)
				})
			}
			wg.Wait()
			on := map[Channel]int{}
			for _, r := range results {
				if r.Status != Sent {
					t.Fatalf("%+v", r)
				}
				on[r.Channel]++
			}
			if on[tc.ch] != 2 || on[Template] != 4 {
				t.Fatalf("sent on %v, want 2 on %s", on, tc.ch)
			}
			if got := e.sentOn(t, p); got[tc.inbox] != 2 {
				t.Fatalf("inbox by channel %v", got)
			}
			st, err := e.reach.Get(ctx, tc.key(p))
			if err != nil {
				t.Fatal(err)
			}
			if c := st[tc.key(p)].Consents[tc.tpl]; c.Left != 0 || !c.Gone() {
				t.Fatalf("recorded after the race: %+v", c)
			}
			before := e.calls()
			if r := e.deliver(everyChannel("atk-race-after-"+string(tc.ch), p, tc.ch, Template), 1); r.Channel != Template {
				t.Fatalf("%+v", r)
			}
			if c := e.called(before); c[tc.path] != 0 {
				t.Fatalf("calls %v: the used-up consent was tried", c)
			}
		})
	}
}

// TestAttackWindowAtItsEdge: the customer-service window on the sandbox
// clock, just inside and just past 48 hours after the person's message
// (and one minute after a menu click): inside, custom/send is called and
// delivers; past 48 hours the worker skips without a call. The recorded
// time has whole seconds (the push's CreateTime), so the worker closes the
// window up to a second before the platform does, never after.
//
// Past a click's minute with no message recorded, the worker does not
// know the window closed (a message from before wxbridge received the
// account's pushes may hold it open for 48 hours): it calls, hears 45015
// and moves on.
func TestAttackWindowAtItsEdge(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	sb := e.te.Sandbox
	message := func(p sandbox.Person) time.Time { e.wrote(t, p); return sb.Clock().Now() }
	click := func(p sandbox.Person) time.Time { return e.clicked(t, p) }
	for _, tc := range []struct {
		name  string
		open  func(p sandbox.Person) time.Time // the platform's time of the interaction
		after time.Duration
		want  string // "sent", "skipped" (no call), "refused" (45015, then the template)
	}{
		// The sandbox clock runs on: "sent" cases keep a few seconds from
		// the edge so that a loaded machine does not carry them past it.
		{"message_47h59m55s", message, reach.Window - 5*time.Second, "sent"},
		{"message_48h_and_a_second", message, reach.Window + time.Second, "skipped"},
		{"click_55s", click, reach.BriefWindow - 5*time.Second, "sent"},
		{"click_61s", click, reach.BriefWindow + time.Second, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Everything happens tc.after ago on the sandbox clock (moving
			// it forward 48 hours would expire the stored access token).
			now := sb.Clock().Now()
			sb.Clock().Set(now.Add(-tc.after - sandbox.EventWindow - time.Second))
			p := e.person(t, true)
			sb.Clock().Set(now.Add(-tc.after))
			at := tc.open(p)
			sb.Clock().Set(at.Add(tc.after))
			job := everyChannel("atk-edge-"+tc.name, p, CustomerService, Template)
			before := e.calls()
			res := e.deliver(job, 1)
			c := e.called(before)
			tried := e.entry(t, job.ID).Tried
			switch tc.want {
			case "sent":
				if res.Channel != CustomerService || c[customSend] != 1 || c[templateSend] != 0 {
					t.Fatalf("inside the window: %+v, calls %v", res, c)
				}
			case "skipped":
				if res.Channel != Template || c[customSend] != 0 {
					t.Fatalf("past the window: %+v, calls %v", res, c)
				}
				checkTried(t, tried,
					try{channel: CustomerService, outcome: contract.TrySkipped, reason: "window closed"},
					try{channel: Template, outcome: contract.TrySent})
			case "refused":
				if res.Channel != Template || c[customSend] != 1 {
					t.Fatalf("past the minute: %+v, calls %v", res, c)
				}
				checkTried(t, tried,
					try{channel: CustomerService, outcome: contract.TryFailed, errcode: 45015, class: "user_state", reason: "45015", rid: true},
					try{channel: Template, outcome: contract.TrySent})
			}
		})
	}
}

// clicked plays a click on the account's menu and records it as
// follow-event does; it returns the platform's time of the click.
func (e *channelEnv) clicked(t *testing.T, p sandbox.Person) time.Time {
	t.Helper()
	if _, err := e.te.Sandbox.MenuClick(context.Background(), p.ID, "ORDERS"); err != nil {
		t.Fatal(err)
	}
	now := e.te.Now()
	if err := e.reach.InteractedBriefly(context.Background(), e.oaKey(p), now.Truncate(time.Second)); err != nil {
		t.Fatal(err)
	}
	return now
}

// TestAttackRefusalsAreLearnt: 45047 (the messages one interaction allows
// are used up) moves the job on, and is remembered: later jobs with
// "any" do not pay a custom/send each to hear it again, until the person
// writes again; 45015 likewise.
func TestAttackRefusalsAreLearnt(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	sb := e.te.Sandbox
	p := e.person(t, true)
	e.recordFollow(t, p, e.te.Now())
	sb.Clock().Advance(sandbox.EventWindow + time.Second)
	e.wrote(t, p)
	for i := range sandbox.MessageAllowance {
		if res := e.deliver(everyChannel(fmt.Sprintf("atk-limit-%d", i), p), 1); res.Channel != CustomerService {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	before := e.calls()
	res := e.deliver(everyChannel("atk-limit-hit", p), 1)
	if res.Status != Sent || res.Channel == CustomerService {
		t.Fatalf("%+v", res)
	}
	if got := e.entry(t, "atk-limit-hit").Tried; len(got) == 0 || got[0].Channel != CustomerService || got[0].ErrCode != 45047 {
		t.Fatalf("tried %+v, want 45047 first", got)
	}
	if c := e.called(before); c[customSend] != 1 {
		t.Fatalf("calls %v", c)
	}
	before = e.calls()
	for i := range 3 {
		if res := e.deliver(everyChannel(fmt.Sprintf("atk-limit-after-%d", i), p), 1); res.Status != Sent {
			t.Fatalf("%+v", res)
		}
	}
	if c := e.called(before); c[customSend] != 0 {
		t.Fatalf("calls %v: custom/send called again after its 45047", c)
	}
	// The person writes again: the window opens anew.
	sb.Clock().Advance(time.Second)
	e.wrote(t, p)
	if res := e.deliver(everyChannel("atk-limit-reopened", p), 1); res.Channel != CustomerService {
		t.Fatalf("after a new message: %+v", res)
	}

	// 45015 to a person with nothing recorded (the window was unknown):
	// the next job skips custom/send and says why.
	q := e.person(t, true)
	sb.Clock().Advance(sandbox.EventWindow + time.Second)
	before = e.calls()
	for i := range 2 {
		if res := e.deliver(everyChannel(fmt.Sprintf("atk-closed-%d", i), q, CustomerService, Template), 1); res.Channel != Template {
			t.Fatalf("job %d: %+v", i, res)
		}
	}
	if c := e.called(before); c[customSend] != 1 {
		t.Fatalf("calls %v, want one custom/send", c)
	}
	checkTried(t, e.entry(t, "atk-closed-1").Tried,
		try{channel: CustomerService, outcome: contract.TrySkipped, reason: "45015 or 45047"},
		try{channel: Template, outcome: contract.TrySent})
}

// TestAttackAnyWithNothingRecorded: "any" for an openid wxbridge has never
// met (no identity, no reach item) tries the template first, then the
// other OA channels, each at most once and none that the answers so far
// rule out, and never the mini program's (no openid there); a uid nobody
// has is retried without a call.
func TestAttackAnyWithNothingRecorded(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	sb := e.te.Sandbox

	t.Run("an_unknown_follower", func(t *testing.T) {
		p := sb.CreatePerson(sandbox.PersonSpec{})
		if _, err := sb.Follow(context.Background(), p.ID, ""); err != nil {
			t.Fatal(err)
		}
		job := everyChannel("atk-unknown-follower", p)
		job.To = Recipient{OAOpenID: p.OAOpenID}
		before := e.calls()
		res := e.deliver(job, 1)
		if res.Status != Sent || res.Channel != Template {
			t.Fatalf("%+v", res)
		}
		if c := e.called(before); len(c) != 1 || c[templateSend] != 1 {
			t.Fatalf("calls %v", c)
		}
	})

	t.Run("an_unknown_non_follower", func(t *testing.T) {
		p := sb.CreatePerson(sandbox.PersonSpec{})
		job := everyChannel("atk-unknown-stranger", p)
		job.To = Recipient{OAOpenID: p.OAOpenID}
		before := e.calls()
		res := e.deliver(job, 1)
		if res.Status != Undeliverable {
			t.Fatalf("%+v", res)
		}
		c := e.called(before)
		// 43004 to the template says they do not follow: custom/send,
		// which only reaches followers, is not called after it.
		if c[subscribeSend] != 0 || c[templateSend] != 1 || c[bizsend] != 1 || c[customSend] != 0 {
			t.Fatalf("calls %v", c)
		}
		got := e.entry(t, job.ID).Tried
		if len(got) != 4 || got[0].Channel != Subscribe || got[0].Outcome != contract.TrySkipped || got[1].Channel != Template {
			t.Fatalf("tried %+v", got)
		}
	})

	t.Run("a_uid_nobody_has", func(t *testing.T) {
		job := everyChannel("atk-unknown-uid", sandbox.Person{})
		job.To = Recipient{UID: "u-nobody"}
		before := e.calls()
		if res := e.deliver(job, 1); res.Retry == nil || res.Status != "" {
			t.Fatalf("%+v", res)
		}
		if c := e.called(before); len(c) != 0 {
			t.Fatalf("calls %v", c)
		}
	})
}

// TestAttackCustomerServiceTextLimits: the contract's text limit is
// characters, and any text within it fits the platform's 2048 bytes:
// 512 four-byte characters are accepted and delivered whole, 513 are
// refused before anything is sent.
func TestAttackCustomerServiceTextLimits(t *testing.T) {
	t.Parallel()
	e := newChannelEnv(t)
	p := e.person(t, true)
	e.wrote(t, p)
	for _, tc := range []struct {
		name string
		text string
		ok   bool
	}{
		{"512_four_byte_characters", strings.Repeat("𝄞", contract.MaxTextLength), true},
		{"escaped_markup", strings.Repeat("<&>", contract.MaxTextLength/3), true},
		{"513_characters", strings.Repeat("好", contract.MaxTextLength+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := everyChannel("atk-text-"+tc.name, p, CustomerService)
			job.CustomerService = &CustomerServiceMessage{Text: tc.text}
			err := Validate(job)
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v", err)
			}
			if !tc.ok {
				return
			}
			if res := e.deliver(job, 1); res.Status != Sent {
				t.Fatalf("%+v", res)
			}
			in := e.inbox(t, p)
			if got := in[len(in)-1]; got.Text != tc.text {
				t.Fatalf("delivered %d bytes, want %d", len(got.Text), len(tc.text))
			}
		})
	}
}
