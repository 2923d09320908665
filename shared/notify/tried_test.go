package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat/push"
)

// Template ids shaped like the platform's (43 characters).
var (
	oaTemplate = "oaTemplate" + strings.Repeat("0", 33)
	mpTemplate = "mpTemplate" + strings.Repeat("0", 33)
)

// sendEnv is a Sender on moto and the sandbox, with the ledger's own
// DynamoDB requests counted apart from the identity store's.
type sendEnv struct {
	te     *testenv.Env
	s      *Sender
	writes *awstest.Counter // the ledger's requests only
}

func newSendEnv(t *testing.T) *sendEnv {
	t.Helper()
	te := testenv.New(t)
	// The sandbox pushes a follow before it counts; these tests link people
	// into the store themselves, so the push only has to be accepted.
	accept := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("success")) }))
	t.Cleanup(accept.Close)
	if err := te.Sandbox.SetPushTarget(sandbox.PushTarget{URL: accept.URL, Token: testenv.PushToken, Mode: push.Plaintext}); err != nil {
		t.Fatal(err)
	}
	writes := &awstest.Counter{}
	ledger := NewLedger(dynamodb.NewFromConfig(awstest.Config(writes)), te.Table)
	ledger.Now = te.Now
	s := &Sender{
		People: identity.NewStore(te.DB, te.Table), Ledger: ledger, WeChat: te.WeChat,
		OfficialAccount: sandbox.DevOfficialAccount.AppID, MiniProgram: sandbox.DevMiniProgram.AppID,
		Unrecorded: NewUnrecorded(), Log: te.Logger("send-worker"), Metrics: te.Metrics("send-worker"), Now: te.Now,
	}
	return &sendEnv{te: te, s: s, writes: writes}
}

// person is someone wxbridge has linked on both apps (its follow state
// unknown to wxbridge, so template messages are tried), who follows the
// official account or not, and has consented to one subscribe message.
func (e *sendEnv) person(t *testing.T, follows bool) sandbox.Person {
	t.Helper()
	sb := e.te.Sandbox
	p := sb.CreatePerson(sandbox.PersonSpec{})
	if follows {
		if d, err := sb.Follow(context.Background(), p.ID, ""); err != nil || !d.Delivered {
			t.Fatalf("follow: %+v %v", d, err)
		}
	}
	if _, err := sb.GrantConsent(p.ID, mpTemplate); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.People.Link(context.Background(), identity.Sighting{
		OA: &identity.OASighting{AppID: sandbox.DevOfficialAccount.AppID, OpenID: p.OAOpenID},
		MP: &identity.MPSighting{AppID: sandbox.DevMiniProgram.AppID, OpenID: p.MPOpenID}, UnionID: p.UnionID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func bothChannels(id string, p sandbox.Person, channels ...Channel) Job {
	return Job{
		ID: id, To: Recipient{UnionID: p.UnionID}, Channels: channels,
		Template:  &TemplateMessage{TemplateID: oaTemplate, Data: map[string]string{"thing1": "Blue kettle"}},
		Subscribe: &SubscribeMessage{TemplateID: mpTemplate, Data: map[string]string{"thing1": "Blue kettle", "phrase3": "已发货"}},
	}
}

// deliver is the job's receives-th delivery by the queue.
func (e *sendEnv) deliver(job Job, receives int) Result {
	now := e.te.Now()
	return e.s.Send(context.Background(), job, Attempt{Lease: now.Add(time.Minute), Receives: receives, FirstReceived: now})
}

func (e *sendEnv) entry(t *testing.T, id string) Entry {
	t.Helper()
	got, ok, err := e.s.Ledger.Get(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("ledger %s: %v %v", id, ok, err)
	}
	return got
}

func (e *sendEnv) fault(t *testing.T, f sandbox.Fault) {
	t.Helper()
	if err := e.te.Sandbox.InjectFault(f); err != nil {
		t.Fatal(err)
	}
}

const (
	templateSend  = "/cgi-bin/message/template/send"
	subscribeSend = "/cgi-bin/message/subscribe/send"
)

// try is a Try as the tests name one: the fields that must match exactly,
// and a part of the reason.
type try struct {
	channel Channel
	outcome string
	errcode int
	class   string
	reason  string // contained in the Try's reason
	rid     bool   // the Try carries WeChat's rid
}

func checkTried(t *testing.T, got []contract.Try, want ...try) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("tried = %+v, want %d entries", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Channel != w.channel || g.Outcome != w.outcome || g.ErrCode != w.errcode || g.Class != w.class ||
			!strings.Contains(g.Reason, w.reason) || (g.RID != "") != w.rid || strings.HasPrefix(g.Reason, string(g.Channel)+":") {
			t.Errorf("tried[%d] = %+v, want %+v", i, g, w)
		}
	}
}

// TestLedgerRecordsToAndTried: the entry names the recipient as the job
// did and each channel's answer in the order called, on the writes a job
// makes anyway; a retry that calls a channel again leaves one Try for it,
// with its latest answer.
func TestLedgerRecordsToAndTried(t *testing.T) {
	e := newSendEnv(t)
	ctx := context.Background()
	sb := e.te.Sandbox

	t.Run("sent_at_once_costs_two_writes", func(t *testing.T) {
		p := e.person(t, true)
		job := bothChannels("to-1", p)
		e.writes.Counts()
		if res := e.deliver(job, 1); res.Status != Sent || res.Channel != Template {
			t.Fatalf("%+v", res)
		}
		if c := e.writes.Counts(); c["UpdateItem"]+c["PutItem"] != 2 {
			t.Fatalf("ledger requests %v, want 2 writes", c)
		}
		got := e.entry(t, job.ID)
		if got.To == nil || *got.To != job.To {
			t.Fatalf("to = %+v, want %+v", got.To, job.To)
		}
		checkTried(t, got.Tried, try{channel: Template, outcome: contract.TrySent})
	})

	t.Run("fallback_after_43004_gives_two_tries_in_three_writes", func(t *testing.T) {
		p := e.person(t, false)
		job := bothChannels("to-2", p)
		e.writes.Counts()
		if res := e.deliver(job, 1); res.Status != Sent || res.Channel != Subscribe {
			t.Fatalf("%+v", res)
		}
		if c := e.writes.Counts(); c["UpdateItem"]+c["PutItem"] != 3 {
			t.Fatalf("ledger requests %v, want 3 writes (claim, fallback, settle)", c)
		}
		got := e.entry(t, job.ID)
		checkTried(t, got.Tried,
			try{channel: Template, outcome: contract.TryFailed, errcode: 43004, class: "user_state", reason: "errcode 43004", rid: true},
			try{channel: Subscribe, outcome: contract.TrySent})
	})

	t.Run("transient_failure_then_sent_leaves_one_try", func(t *testing.T) {
		p := e.person(t, true)
		job := bothChannels("to-3", p)
		e.fault(t, sandbox.Fault{Path: templateSend, ErrCode: -1, Count: 1})
		if res := e.deliver(job, 1); res.Retry == nil {
			t.Fatalf("first delivery: %+v", res)
		}
		released := e.entry(t, job.ID)
		if released.Status != InProgress {
			t.Fatalf("released: %+v", released)
		}
		checkTried(t, released.Tried, try{channel: Template, outcome: contract.TryFailed, errcode: -1, class: "transient", reason: "errcode -1", rid: true})
		if res := e.deliver(job, 2); res.Status != Sent {
			t.Fatalf("second delivery: %+v", res)
		}
		got := e.entry(t, job.ID)
		if got.Attempts != 2 || !got.CreatedAt.Equal(released.CreatedAt) {
			t.Fatalf("after the retry: %+v", got)
		}
		checkTried(t, got.Tried, try{channel: Template, outcome: contract.TrySent})
	})

	t.Run("released_fallback_keeps_the_first_channels_answer", func(t *testing.T) {
		p := e.person(t, false)
		job := bothChannels("to-4", p)
		e.fault(t, sandbox.Fault{Path: subscribeSend, ErrCode: -1, Count: 1})
		if res := e.deliver(job, 1); res.Retry == nil {
			t.Fatalf("first delivery: %+v", res)
		}
		checkTried(t, e.entry(t, job.ID).Tried,
			try{channel: Template, outcome: contract.TryFailed, errcode: 43004, class: "user_state", rid: true},
			try{channel: Subscribe, outcome: contract.TryFailed, errcode: -1, class: "transient", rid: true})
		// The 43004 taught wxbridge the person does not follow: the retry
		// calls only the mini program.
		calls := sb.Calls(templateSend)
		if res := e.deliver(job, 2); res.Status != Sent || res.Channel != Subscribe || sb.Calls(templateSend) != calls {
			t.Fatalf("second delivery: %+v (template calls %d -> %d)", res, calls, sb.Calls(templateSend))
		}
		checkTried(t, e.entry(t, job.ID).Tried,
			try{channel: Template, outcome: contract.TryFailed, errcode: 43004, class: "user_state", rid: true},
			try{channel: Subscribe, outcome: contract.TrySent})
	})

	t.Run("lost_answer_then_resend_is_one_sent_try", func(t *testing.T) {
		p := e.person(t, true)
		job := bothChannels("to-5", p)
		e.fault(t, sandbox.Fault{Path: templateSend, LostAnswer: true, Count: 1})
		if res := e.deliver(job, 1); res.Retry == nil {
			t.Fatalf("first delivery: %+v", res)
		}
		checkTried(t, e.entry(t, job.ID).Tried, try{channel: Template, outcome: contract.TryUnknown, class: "transient", reason: "no answer from WeChat"})
		if res := e.deliver(job, 2); res.Status != Sent {
			t.Fatalf("resend: %+v", res)
		}
		checkTried(t, e.entry(t, job.ID).Tried, try{channel: Template, outcome: contract.TrySent})
		if inbox, _ := sb.Inbox(p.ID); len(inbox) != 1 {
			t.Fatalf("inbox: %d messages", len(inbox))
		}
	})

	t.Run("subscribe_without_answer_is_unknown", func(t *testing.T) {
		p := e.person(t, true)
		job := bothChannels("to-6", p, Subscribe)
		e.fault(t, sandbox.Fault{Path: subscribeSend, LostAnswer: true, Count: 1})
		if res := e.deliver(job, 1); res.Status != Unknown {
			t.Fatalf("%+v", res)
		}
		checkTried(t, e.entry(t, job.ID).Tried, try{channel: Subscribe, outcome: contract.TryUnknown, class: "transient", reason: "not sent again"})
	})

	t.Run("expired_after_a_release_keeps_the_history", func(t *testing.T) {
		p := e.person(t, true)
		job := bothChannels("to-7", p)
		expires := e.te.Now().Add(time.Minute)
		job.ExpiresAt = &expires
		e.fault(t, sandbox.Fault{Path: templateSend, ErrCode: -1, Count: 1})
		if res := e.deliver(job, 1); res.Retry == nil {
			t.Fatalf("first delivery: %+v", res)
		}
		released := e.entry(t, job.ID)
		sb.Clock().Advance(2 * time.Minute)
		e.writes.Counts()
		if res := e.deliver(job, 2); res.Status != Expired {
			t.Fatalf("second delivery: %+v", res)
		}
		if c := e.writes.Counts(); c["UpdateItem"]+c["PutItem"] != 1 {
			t.Fatalf("ledger requests %v, want 1 write", c)
		}
		got := e.entry(t, job.ID)
		if got.Status != Expired || got.Attempts != 1 || !got.CreatedAt.Equal(released.CreatedAt) || got.UID != released.UID ||
			got.To == nil || *got.To != job.To || got.Class != "expired" || got.ErrCode != 0 || got.RID != "" || got.Channel != "" || got.LeaseUntil != 0 {
			t.Fatalf("expired entry: %+v (released %+v)", got, released)
		}
		checkTried(t, got.Tried, try{channel: Template, outcome: contract.TryFailed, errcode: -1, class: "transient", rid: true})
	})

	t.Run("rejected_job_names_no_recipient_and_no_try", func(t *testing.T) {
		res := e.s.Reject(ctx, "to-8", contract.ErrInvalid, Attempt{Lease: e.te.Now().Add(time.Minute), Receives: 1})
		got := e.entry(t, "to-8")
		if res.Status != Failed || got.Status != Failed || got.To != nil || got.Tried != nil || got.Class != "invalid" {
			t.Fatalf("rejected: %+v %+v", res, got)
		}
	})
}
