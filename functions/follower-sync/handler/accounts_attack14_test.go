package handler

// Attacks on issue 14's backfill per official account: two accounts'
// runs on one queue with a worker that dies mid-chunk (the whole batch
// redelivered, as SQS does after a crashed invocation), jobs that name
// another account's run, and jobs for an account taken out of the
// configuration.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/backfill"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat/push"
)

// dieMidChunk links the first half of one chunk's followers, then dies
// (a panic: the invocation ends, nothing of its batch is deleted).
type dieMidChunk struct {
	backfill.People
	mu   sync.Mutex
	died bool
}

func (d *dieMidChunk) LinkMany(ctx context.Context, ss []identity.Sighting) ([]identity.Result, []error) {
	d.mu.Lock()
	die := !d.died && len(ss) > 1
	d.died = d.died || die
	d.mu.Unlock()
	if die {
		d.People.LinkMany(ctx, ss[:len(ss)/2])
		panic("invocation killed mid-chunk")
	}
	return d.People.LinkMany(ctx, ss)
}

func (d *dieMidChunk) dead() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.died
}

// dead counts the workers of ds that died.
func dead(ds map[string]*dieMidChunk) int {
	n := 0
	for _, d := range ds {
		if d.dead() {
			n++
		}
	}
	return n
}

func TestAttack14BackfillAccounts(t *testing.T) {
	oa2 := sandbox.DevOfficialAccount2.AppID
	e := newEnv(t,
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			c.OfficialAccounts = []config.OfficialAccount{{App: config.App{AppID: oa2, Secret: sandbox.DevOfficialAccount2.Secret}, Token: testenv.PushToken}}
		}),
		testenv.Tokens(oaApp, oa2))
	ctx := context.Background()
	// The second account's follows reach wxbridge by the backfill alone.
	ack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("success")) }))
	t.Cleanup(ack.Close)
	if err := e.sb.SetPushTargetApp(oa2, sandbox.PushTarget{URL: ack.URL, Token: testenv.PushToken, Mode: push.Plaintext}); err != nil {
		t.Fatal(err)
	}
	// 9 follow the first account, 6 of them the second too, and 3 more
	// the second only.
	fs, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 9})
	if err != nil {
		t.Fatal(err)
	}
	var second []sandbox.Person
	for _, f := range fs[:6] {
		second = append(second, f.Person)
	}
	for range 3 {
		second = append(second, e.sb.CreatePerson(sandbox.PersonSpec{}))
	}
	for _, p := range second {
		if _, err := e.sb.FollowApp(ctx, p.ID, oa2, ""); err != nil {
			t.Fatal(err)
		}
	}
	dying := map[string]*dieMidChunk{}
	for appid, s := range e.accounts.Syncers {
		s.ChunkSize = 4
		dying[appid] = &dieMidChunk{People: s.People}
		s.People = dying[appid]
	}

	t.Run("two_accounts_die_mid_chunk_and_are_redelivered", func(t *testing.T) {
		runs := map[string]backfill.Run{}
		for _, appid := range []string{oaApp, oa2} {
			r, started, err := e.accounts.Syncers[appid].Start(ctx)
			if err != nil || !started {
				t.Fatalf("start %s: %v %v", appid, started, err)
			}
			runs[appid] = r
		}
		// Both page jobs in one batch, then their chunks, side by side.
		for round := 0; e.inFlight(t) > 0; round++ {
			if round > 20 {
				t.Fatal("the runs did not end in 20 batches")
			}
			ev, msgs := e.receive(t)
			if len(ev.Records) == 0 {
				continue
			}
			deaths := dead(dying)
			resp, err := e.h.Handle(ctx, ev)
			if err != nil {
				t.Fatal(err)
			}
			failed := map[string]bool{}
			for _, f := range resp.BatchItemFailures {
				failed[f.ItemIdentifier] = true
			}
			died := dead(dying) > deaths
			for _, m := range msgs {
				switch {
				case died:
					// The invocation died: SQS delivers its whole batch
					// again once the visibility timeout is out, the jobs it
					// finished included.
					_, err = e.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
				case !failed[*m.MessageId]:
					_, err = e.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		if !dying[oaApp].dead() || !dying[oa2].dead() {
			t.Fatal("setup: a worker did not die in each account's chunk")
		}
		for appid, want := range map[string]int{oaApp: 9, oa2: 9} {
			got, err := e.accounts.Syncers[appid].Status(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != runs[appid].ID || got.Status != backfill.Done || got.Seen != want || got.Processed() != want || got.Chunks != 3 || got.ChunksDone != 3 {
				t.Errorf("run of %s: %+v, want %d followers counted once in 3 chunks", appid, got, want)
			}
		}
		appOf := map[string]string{} // openid -> its app
		for _, p := range e.sb.People() {
			for appid, openid := range p.OpenIDs {
				appOf[openid] = appid
			}
		}
		people := e.livePeople(t)
		for _, p := range people {
			for appid, id := range p.OA {
				if appOf[id.OpenID] != appid {
					t.Errorf("%s: identity in %s is %s, an openid of %q", p.UID, appid, id.OpenID, appOf[id.OpenID])
				}
			}
		}
		if len(people) != 12 {
			t.Errorf("%d people, want 12", len(people))
		}
	})

	t.Run("a_job_never_does_another_accounts_run", func(t *testing.T) {
		r1, _ := e.accounts.Syncers[oaApp].Status(ctx, "")
		r2, _ := e.accounts.Syncers[oa2].Status(ctx, "")
		fs, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		other := fs[0].Person
		before := e.livePeople(t)
		for _, j := range []backfill.Job{
			{Kind: backfill.ChunkJob, AppID: oa2, Run: r1.ID, Page: 0, Chunk: 3, OpenIDs: []string{other.OAOpenID}},
			{Kind: backfill.PageJob, AppID: oaApp, Run: r2.ID, Page: 7},
			{Kind: backfill.ChunkJob, Run: r2.ID, Page: 0, Chunk: 3, OpenIDs: []string{other.OpenIDs[oa2]}}, // no appid: the default's
		} {
			if err := e.accounts.Process(ctx, j, 1); err == nil {
				t.Errorf("job %+v was done", j)
			}
		}
		for appid, r := range map[string]backfill.Run{oaApp: r1, oa2: r2} {
			if got, _ := e.accounts.Syncers[appid].Status(ctx, r.ID); got.Seen != r.Seen || got.ChunksDone != r.ChunksDone || got.Pages != r.Pages {
				t.Errorf("run of %s changed: %+v, was %+v", appid, got, r)
			}
			if p, err := e.runs.Page(ctx, appid, r.ID, 7); err != nil || p != nil {
				t.Errorf("page 7 of %s: %+v %v", appid, p, err)
			}
		}
		if after := e.livePeople(t); len(after) != len(before) {
			t.Errorf("%d people, was %d", len(after), len(before))
		}
	})

	t.Run("a_job_for_an_account_no_longer_configured_is_dropped", func(t *testing.T) {
		r2, _ := e.accounts.Syncers[oa2].Status(ctx, "")
		// Redeployed with the second account out of the configuration.
		h := *e.h
		h.Jobs = backfill.Accounts{Syncers: map[string]*backfill.Syncer{oaApp: e.accounts.Syncers[oaApp]}, Default: oaApp}
		body := `{"kind":"page","appid":"` + oa2 + `","run":"` + r2.ID + `","page":7}`
		if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &e.queueURL, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
		ev, _ := e.receive(t)
		resp, err := h.Handle(ctx, ev)
		if err != nil || len(ev.Records) != 1 || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("handle: %v, %d records, failures %+v", err, len(ev.Records), resp.BatchItemFailures)
		}
		e.handle(t, ev) // delete it, as the event source mapping does
		line := ""
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, `"outcome":"dropped"`) && strings.Contains(l, oa2) {
				line = l
			}
		}
		if !strings.Contains(line, backfill.ErrUnknownAccount.Error()) {
			t.Errorf("no dropped line naming %s as not configured: %q", oa2, line)
		}
		if p, err := e.runs.Page(ctx, oa2, r2.ID, 7); err != nil || p != nil || e.inFlight(t) != 0 {
			t.Errorf("the job was done: page %+v %v, %d queued", p, err, e.inFlight(t))
		}
	})
}
