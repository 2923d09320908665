package handler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/contract"
	"wxbridge/shared/notify"
)

// oaSubTemplate is an OA subscribe-notification template id shaped like
// the platform's.
var oaSubTemplate = "oaSubscribe" + strings.Repeat("0", 32)

const (
	bizsendPath = "/cgi-bin/message/subscribe/bizsend"
	customPath  = "/cgi-bin/message/custom/send"
)

var sendPaths = []string{"/cgi-bin/message/template/send", "/cgi-bin/message/subscribe/send", bizsendPath, customPath}

// allChannels is job with a message for every channel, in the given order
// ("any" when none is given).
func allChannels(id string, p sandbox.Person, channels ...notify.Channel) notify.Job {
	j := job(id, notify.Recipient{UnionID: p.UnionID}, channels...)
	if len(channels) == 0 {
		j.Channels = contract.ChannelList{notify.Any}
	}
	j.OASubscribe = &notify.OASubscribeMessage{TemplateID: oaSubTemplate, Page: "https://shop.example.com/orders/8812",
		Data: map[string]string{"thing1": "Blue kettle", "phrase3": "已发货"}}
	j.CustomerService = &notify.CustomerServiceMessage{Text: "Your Blue kettle is on its way"}
	return j
}

// calls is how often each send API was called so far.
func (e *env) calls() map[string]int {
	out := map[string]int{}
	for _, p := range sendPaths {
		out[p] = e.sb.Calls(p)
	}
	return out
}

// called is the calls made since before, by API.
func (e *env) called(before map[string]int) map[string]int {
	out := map[string]int{}
	for p, n := range e.calls() {
		if d := n - before[p]; d > 0 {
			out[p] = d
		}
	}
	return out
}

// TestChannelsLearntFromThePushes: what the person does on WeChat reaches
// the worker through follow-event's pushes (a message opens the
// customer-service window, the popup records a consent, the settings
// withdraw it), and the worker picks or skips channels by it.
func TestChannelsLearntFromThePushes(t *testing.T) {
	ctx := context.Background()
	t.Run("a_message_makes_any_choose_customer_service", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.sb.Clock().Advance(sandbox.EventWindow) // the follow's minute is over
		if d, err := e.sb.Message(ctx, p.ID, "is my kettle on its way?"); err != nil || !d.Delivered {
			t.Fatalf("message: %+v %v", d, err)
		}
		before := e.calls()
		e.enqueue(t, allChannels("any-cs", p))
		e.drain(t)
		if got := e.entry(t, "any-cs"); got.Status != notify.Sent || got.Channel != notify.CustomerService {
			t.Fatalf("ledger = %+v", got)
		}
		if c := e.called(before); len(c) != 1 || c[customPath] != 1 {
			t.Fatalf("calls %v", c)
		}
		if in := e.inbox(t, p); len(in) != 1 || in[0].Channel != sandbox.ChannelCustomerService || in[0].Text == "" {
			t.Fatalf("inbox %+v", in)
		}
	})
	t.Run("a_popup_consent_is_used_once_then_skipped", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		if d, err := e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate}); err != nil || !d.Delivered {
			t.Fatalf("popup: %+v %v", d, err)
		}
		e.enqueue(t, allChannels("oas-1", p, notify.OASubscribe, notify.Template))
		e.drain(t)
		got := e.entry(t, "oas-1")
		if got.Status != notify.Sent || got.Channel != notify.OASubscribe || got.MsgID == "" {
			t.Fatalf("ledger = %+v", got)
		}
		// subscribe_msg_sent_event settles it, as a template's report.
		if _, err := e.sb.PushTemplateReports(ctx); err != nil {
			t.Fatal(err)
		}
		if got := e.entry(t, "oas-1"); got.Status != notify.Delivered {
			t.Fatalf("after the sent event: %+v", got)
		}
		// The one-time consent is spent: the next job does not call bizsend.
		before := e.calls()
		e.enqueue(t, allChannels("oas-2", p, notify.OASubscribe, notify.Template))
		e.drain(t)
		got = e.entry(t, "oas-2")
		if got.Status != notify.Sent || got.Channel != notify.Template || e.called(before)[bizsendPath] != 0 {
			t.Fatalf("ledger = %+v, calls %v", got, e.called(before))
		}
		if len(got.Tried) != 2 || got.Tried[0].Outcome != contract.TrySkipped || !strings.Contains(got.Tried[0].Reason, "used up") {
			t.Fatalf("tried = %+v", got.Tried)
		}
	})
	t.Run("a_withdrawn_consent_is_skipped", func(t *testing.T) {
		e := newEnv(t)
		p := e.follower(t)
		e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate, LongTerm: true})
		if d, err := e.sb.OARevoke(ctx, p.ID, oaSubTemplate); err != nil || !d.Delivered {
			t.Fatalf("revoke: %+v %v", d, err)
		}
		before := e.calls()
		e.enqueue(t, allChannels("oas-revoked", p, notify.OASubscribe))
		e.drain(t)
		if got := e.entry(t, "oas-revoked"); got.Status != notify.Undeliverable || !strings.Contains(got.Reason, "rejected") {
			t.Fatalf("ledger = %+v", got)
		}
		if c := e.called(before); len(c) != 0 {
			t.Fatalf("calls %v", c)
		}
	})
}

// TestFromEnvUsesTheReachStore: the worker FromEnv builds reads and
// writes consents (REACH#) within its policy in template.yaml.
func TestFromEnvUsesTheReachStore(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	h, err := FromEnv(ctx, e.te.FunctionEnv("SendWorkerFunction"))
	if err != nil {
		t.Fatal(err)
	}
	p := e.follower(t)
	e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate})
	for _, id := range []string{"env-1", "env-2"} {
		e.enqueue(t, allChannels(id, p, notify.OASubscribe, notify.Template))
		resp, err := h.Handle(ctx, awstest.Receive(t, e.sqs, e.queueURL, 1))
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("%s: %+v %v\n%s", id, resp, err, e.logs.String())
		}
	}
	if a, b := e.entry(t, "env-1"), e.entry(t, "env-2"); a.Channel != notify.OASubscribe || b.Channel != notify.Template ||
		b.Tried[0].Outcome != contract.TrySkipped {
		t.Fatalf("entries %+v\n%+v", a, b)
	}
	if d := e.te.IAM().Denials(); len(d) != 0 {
		t.Fatalf("denied: %+v", d)
	}
}

// TestAnUnreadableReachStoreTriesEveryChannel: when the consents and
// interactions cannot be read (DynamoDB failing), the job is still sent:
// every channel is tried, and WeChat's answers say what the record would
// have (here a withdrawn consent: 43101, then the template).
func TestAnUnreadableReachStoreTriesEveryChannel(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p := e.follower(t)
	e.sb.OAConsent(ctx, p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate})
	e.sb.OARevoke(ctx, p.ID, oaSubTemplate)
	_, cfg := e.faults(t, awsfault.Rule{Service: awsfault.DynamoDB, Operation: "BatchGetItem", Error: awsfault.InternalServerError})
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 20 * time.Millisecond })
	})
	s := *e.sender
	s.Reach = reachStore(db, e.table, e.sb)
	e.h.Sender = &s
	before := e.calls()
	e.enqueue(t, allChannels("unreadable", p, notify.OASubscribe, notify.Template))
	e.drain(t)
	if got := e.entry(t, "unreadable"); got.Status != notify.Sent || got.Channel != notify.Template {
		t.Fatalf("ledger = %+v", got)
	}
	if c := e.called(before); c[bizsendPath] != 1 {
		t.Fatalf("calls %v: the notification was not tried", c)
	}
	if e.logLines(`"outcome":"not_read"`) != 1 {
		t.Fatalf("no warning that the reach state was not read:\n%s", e.logs.String())
	}
}
