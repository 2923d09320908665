package handler

// Attacks on "a job is sent at most once and says why not" (issue 12):
// the same job id on three workers at once with lost answers, the SENT
// record failing many times over, a worker whose context ends right after
// WeChat accepted, a claim whose DynamoDB answer was lost, a send that
// never went out for want of a token, and a job that expires after an
// attempt whose outcome is unknown. Each checks the inbox against the
// ledger: at most one message per job, one terminal status, and a status
// that tells the truth about the inbox.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/notify"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// truthful checks that job id ended in one terminal status that matches
// what reached p: SENT (or a report of it) with exactly one message,
// UNKNOWN with at most one, anything else with none.
func (e *env) truthful(t testing.TB, id string, p sandbox.Person) notify.Entry {
	t.Helper()
	got := e.entry(t, id)
	n := len(e.inbox(t, p))
	switch {
	case !got.Final():
		t.Fatalf("job %s not settled: %+v", id, got)
	case n > 1:
		t.Fatalf("job %s reached the person %d times (ledger %+v)", id, n, got)
	case (got.Status == notify.Sent || got.Status == notify.Delivered) && n != 1:
		t.Fatalf("job %s is %s but the inbox has %d messages", id, got.Status, n)
	case got.Status != notify.Sent && got.Status != notify.Delivered && got.Status != notify.Unknown && n != 0:
		t.Fatalf("job %s is %s (%s) but the person received it", id, got.Status, got.Reason)
	case got.Trying != "" || got.LeaseUntil != 0:
		t.Fatalf("job %s settled with an attempt still open: %+v", id, got)
	}
	return got
}

// worker is another send-worker instance (its own memory of unrecorded
// outcomes) over the same queue, table and WeChat.
func (e *env) worker() *Handler {
	s := *e.sender
	s.Unrecorded = notify.NewUnrecorded()
	h := *e.h
	h.Sender = &s
	return &h
}

// pollWith receives what is visible and hands each message to one of
// workers, all at once, each as its own one-message batch (as Lambda runs
// concurrent invocations); it deletes what they did not hand back and
// returns the messages handed back.
func (e *env) pollWith(t testing.TB, workers []*Handler) (received int, failed []sqstypes.Message) {
	t.Helper()
	ctx := context.Background()
	out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queueURL, MaxNumberOfMessages: 10, VisibilityTimeout: 360,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, m := range out.Messages {
		w := workers[i%len(workers)]
		wg.Go(func() {
			ev := events.SQSEvent{Records: []events.SQSMessage{awstest.Record(m)}}
			resp, _ := w.Handle(ctx, ev)
			if len(resp.BatchItemFailures) > 0 {
				mu.Lock()
				failed = append(failed, m)
				mu.Unlock()
				return
			}
			e.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle})
		})
	}
	wg.Wait()
	return len(out.Messages), failed
}

// TestAttackSameJobOnThreeWorkersAtOnce: a job enqueued three times is
// picked up by three workers at the same instant, with its first answer
// lost on the chosen channel; the copies come back, leases run out, and
// they race again until the queue is empty.
func TestAttackSameJobOnThreeWorkersAtOnce(t *testing.T) {
	for _, ch := range []notify.Channel{notify.Template, notify.Subscribe} {
		t.Run(string(ch), func(t *testing.T) {
			e := newEnv(t)
			p := e.follower(t)
			e.consent(t, p)
			e.consent(t, p)
			path := map[notify.Channel]string{notify.Template: templatePath, notify.Subscribe: subscribePath}[ch]
			e.sb.InjectFault(sandbox.Fault{Path: path, Count: 1, LostAnswer: true, Latency: 100 * time.Millisecond})
			other := map[notify.Channel]notify.Channel{notify.Template: notify.Subscribe, notify.Subscribe: notify.Template}[ch]
			j := job("three-"+string(ch), notify.Recipient{UnionID: p.UnionID}, ch, other)
			e.enqueue(t, j, j, j)
			workers := []*Handler{e.worker(), e.worker(), e.worker()}
			for round := 0; ; round++ {
				if round == 8 {
					t.Fatal("the queue did not settle in 8 rounds")
				}
				received, failed := e.pollWith(t, workers)
				if received == 0 {
					break
				}
				e.sb.Clock().Advance(time.Minute) // well within client_msg_id's window
				e.later(t, failed)
			}
			got := e.truthful(t, j.ID, p)
			if got.Channel != ch {
				t.Fatalf("ledger %+v: the job moved to another channel", got)
			}
			if ch == notify.Template && got.Status != notify.Sent {
				t.Fatalf("a template resent within its dedup window ended %s: %+v", got.Status, got)
			}
		})
	}
}

// TestAttackSentRecordFailsManyTimes: WeChat accepted a subscribe message
// (no dedup: a second send would reach the person twice) and DynamoDB
// refuses the SENT record N times over, across deliveries of the message.
func TestAttackSentRecordFailsManyTimes(t *testing.T) {
	for _, n := range []int{1, 30} {
		t.Run(fmt.Sprint(n, "_failures"), func(t *testing.T) {
			e := newEnv(t)
			p := e.follower(t)
			e.consent(t, p)
			e.consent(t, p)
			proxy := e.faultyLedger(t)
			if _, err := proxy.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `{"S":"SENT"}`, Count: n, Error: awsfault.InternalServerError}); err != nil {
				t.Fatal(err)
			}
			e.enqueue(t, job("rec-fails", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template))
			e.settleAll(t)
			got := e.truthful(t, "rec-fails", p)
			if got.Status != notify.Sent || e.sb.Calls(subscribePath) != 1 || e.sb.Calls(templatePath) != 0 {
				t.Fatalf("ledger %+v; subscribe calls %d, template calls %d", got, e.sb.Calls(subscribePath), e.sb.Calls(templatePath))
			}
		})
	}
}

// cancelAfter cancels the invocation's context as soon as WeChat has
// answered a call to path: the worker's deadline falls right after
// WeChat accepted the message.
type cancelAfter struct {
	path   string
	cancel atomic.Pointer[context.CancelFunc]
}

func (c *cancelAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := httpClient.Transport.RoundTrip(r)
	if r.URL.Path == c.path {
		if f := c.cancel.Swap(nil); f != nil {
			(*f)()
		}
	}
	return resp, err
}

// TestAttackContextEndsRightAfterAccept: the worker's context ends the
// moment WeChat accepted a subscribe message. The job is not sent again,
// by this worker or by another one that takes it over later.
func TestAttackContextEndsRightAfterAccept(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		t.Run(map[bool]string{false: "same_worker", true: "another_worker"}[takeover], func(t *testing.T) {
			e := newEnv(t)
			p := e.follower(t)
			e.consent(t, p)
			e.consent(t, p)
			cut := &cancelAfter{path: subscribePath}
			s := *e.sender
			s.WeChat = wechat.New(wechat.Options{APIBase: e.apiURL, Tokens: e.source, HTTPClient: &http.Client{Transport: cut}})
			e.h.Sender = &s
			e.enqueue(t, job("cut", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe, notify.Template))
			ctx, cancel := context.WithCancel(context.Background())
			cut.cancel.Store(&cancel)
			out, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &e.queueURL, MaxNumberOfMessages: 1, VisibilityTimeout: 360,
				MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
			if err != nil || len(out.Messages) != 1 {
				t.Fatalf("receive: %v", err)
			}
			m := out.Messages[0]
			resp, _ := e.h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{awstest.Record(m)}})
			if len(e.inbox(t, p)) != 1 {
				t.Fatal("setup: WeChat did not take the message")
			}
			if len(resp.BatchItemFailures) != 1 {
				t.Fatalf("setup: the worker whose context ended let the message go: %+v", e.entry(t, "cut"))
			}
			e.later(t, []sqstypes.Message{m})
			if takeover {
				e.h = e.worker()
				e.h.Sender.(*notify.Sender).WeChat = e.wc
				e.sb.Clock().Advance(DefaultLease + time.Minute)
			} else {
				e.h.Sender.(*notify.Sender).WeChat = e.wc
			}
			e.settleAll(t)
			got := e.truthful(t, "cut", p)
			if e.sb.Calls(subscribePath) != 1 || e.sb.Calls(templatePath) != 0 || got.Channel != notify.Subscribe {
				t.Fatalf("ledger %+v; subscribe calls %d, template calls %d", got, e.sb.Calls(subscribePath), e.sb.Calls(templatePath))
			}
		})
	}
}

// TestAttackClaimWhoseAnswerIsLost: the worker's claim of a subscribe job
// is written, its answer lost, and the SDK's retry finds the job held —
// by this worker. Nothing was sent, yet the job waits out its own lease
// and is then taken over as one whose subscribe message "may have gone
// out": UNKNOWN, and the person never gets it.
func TestAttackClaimWhoseAnswerIsLost(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	e.consent(t, p)
	lost, cfg := e.faults(t, awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `":inprogress"`, Count: 1, Error: awsfault.LostAnswer})
	ledger := notify.NewLedger(dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
	}), e.table)
	ledger.Now = e.sb.Clock().Now
	s := *e.sender
	s.Ledger = ledger
	e.h.Sender = &s
	e.enqueue(t, job("claim-lost", notify.Recipient{UnionID: p.UnionID}, notify.Subscribe))
	r := e.poll(t)
	if lost.List()[0].Fired != 1 {
		t.Fatal("setup: no claim answer was lost")
	}
	e.sb.Clock().Advance(DefaultLease + time.Minute)
	e.later(t, r.failed)
	e.settleAll(t)
	got := e.truthful(t, "claim-lost", p)
	if got.Status != notify.Sent {
		t.Fatalf("a job whose claim answer was lost ended %s (%s), subscribe calls %d: never sent", got.Status, got.Reason, e.sb.Calls(subscribePath))
	}
}

// emptyTokenSecret empties the token secret of appid (as the stack
// creates it; the refresher has not run, or could not be asked), gives
// the worker a token source that has not read it yet, and returns a
// function that stores a working token in it.
func (e *env) emptyTokenSecret(t testing.TB, appid string) (store func()) {
	t.Helper()
	secrets := e.secrets
	sm := secretsmanager.NewFromConfig(awstest.Config(nil))
	if _, err := sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: aws.String(secrets[appid]), SecretString: aws.String("{}")}); err != nil {
		t.Fatal(err)
	}
	src := tokens.NewSource(tokens.Options{Secrets: secrets, Reader: e.te.As("SendWorkerFunction").Secrets, Now: e.sb.Clock().Now})
	s := *e.sender
	s.WeChat = wechat.New(wechat.Options{APIBase: e.apiURL, Tokens: src, HTTPClient: &httpClient})
	e.h.Sender = &s
	return func() {
		app := map[string]sandbox.App{sandbox.DevMiniProgram.AppID: sandbox.DevMiniProgram, sandbox.DevOfficialAccount.AppID: sandbox.DevOfficialAccount}[appid]
		tok, err := wechat.New(wechat.Options{APIBase: e.apiURL}).StableToken(context.Background(), app.AppID, app.Secret, false)
		if err != nil {
			t.Fatal(err)
		}
		now := e.sb.Clock().Now()
		b, _ := json.Marshal(tokens.Stored{AccessToken: tok.Token, ExpiresAt: now.Add(tok.ExpiresIn), RefreshedAt: now})
		if _, err := sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: aws.String(secrets[appid]), SecretString: aws.String(string(b))}); err != nil {
			t.Fatal(err)
		}
		e.sb.Clock().Advance(5 * time.Second) // past the source's memory of "no token"
	}
}

// TestAttackNoTokenIsNotAnUnknownOutcome: the app has no usable access
// token (a fresh deploy whose refresher has not run, an expired token, a
// Secrets Manager outage): the send fails before any request leaves.
// Nothing can have been sent, so the job must wait and be sent once a
// token is there; instead the failure (class transient, not a WeChat
// answer) is read as "no answer from WeChat, the message may have been
// sent": a subscribe job is settled UNKNOWN at once, a template job once
// the outage outlasts client_msg_id's window. Neither is ever sent.
func TestAttackNoTokenIsNotAnUnknownOutcome(t *testing.T) {
	for _, tc := range []struct {
		name    string
		channel notify.Channel
		appid   string
		outage  time.Duration
	}{
		{"subscribe", notify.Subscribe, sandbox.DevMiniProgram.AppID, time.Minute},
		{"template_outage_past_ten_minutes", notify.Template, sandbox.DevOfficialAccount.AppID, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.follower(t)
			e.consent(t, p)
			storeToken := e.emptyTokenSecret(t, tc.appid)
			e.enqueue(t, job("no-token", notify.Recipient{UnionID: p.UnionID}, tc.channel))
			r := e.poll(t)
			if e.sb.Calls(templatePath)+e.sb.Calls(subscribePath) != 0 {
				t.Fatal("setup: a send went out without a token")
			}
			e.sb.Clock().Advance(tc.outage)
			storeToken()
			e.later(t, r.failed)
			e.settleAll(t)
			got := e.truthful(t, "no-token", p)
			if got.Status != notify.Sent {
				t.Fatalf("a job that never went out (no token) ended %s: %q", got.Status, got.Reason)
			}
		})
	}
}

// TestAttackExpiresAfterAnUnansweredAttempt: a template send's answer is
// lost, and before the resend the job's expires_at passes. The ledger
// must not say EXPIRED (never sent): the person may have it.
func TestAttackExpiresAfterAnUnansweredAttempt(t *testing.T) {
	e := newEnv(t)
	p := e.follower(t)
	e.sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 1, LostAnswer: true})
	j := job("expiring", notify.Recipient{UnionID: p.UnionID}, notify.Template)
	exp := e.sb.Clock().Now().Add(2 * time.Minute)
	j.ExpiresAt = &exp
	e.enqueue(t, j)
	r := e.poll(t)
	if len(r.failed) != 1 || len(e.inbox(t, p)) != 1 {
		t.Fatalf("setup: failed %d, inbox %d", len(r.failed), len(e.inbox(t, p)))
	}
	e.sb.Clock().Advance(3 * time.Minute)
	e.later(t, r.failed)
	e.settleAll(t)
	if got := e.truthful(t, "expiring", p); got.Status == notify.Expired {
		t.Fatalf("ledger says EXPIRED, but the message reached the person: %+v", got)
	}
}

// TestAttackRecipientLinkedWhileCopiesRace: a job for someone wxbridge has
// not linked yet is enqueued twice; both copies are picked up by two
// workers at the same moment as the person's follow is linked. Whatever
// each copy saw, the job is sent once, when the copies come back.
func TestAttackRecipientLinkedWhileCopiesRace(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	j := job("not-yet", notify.Recipient{UnionID: p.UnionID}, notify.Template)
	e.enqueue(t, j, j)
	workers := []*Handler{e.worker(), e.worker()}
	var wg sync.WaitGroup
	wg.Go(func() {
		if d, err := e.sb.Follow(context.Background(), p.ID, ""); err != nil || !d.Delivered {
			t.Errorf("follow: %v %+v", err, d)
		}
	})
	received, failed := e.pollWith(t, workers)
	wg.Wait()
	for round := 0; received > 0; round++ {
		if round == 6 {
			t.Fatal("the copies did not settle")
		}
		e.sb.Clock().Advance(DefaultLease + time.Minute) // past any delay and lease
		e.later(t, failed)
		received, failed = e.pollWith(t, workers)
	}
	if got := e.truthful(t, "not-yet", p); got.Status != notify.Sent {
		t.Fatalf("ledger %+v, want SENT once the person was linked", got)
	}
}
