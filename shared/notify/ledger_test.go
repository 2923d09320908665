package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
)

func newLedger(t *testing.T) *Ledger {
	t.Helper()
	return NewLedger(dynamodb.NewFromConfig(awstest.Config(nil)), awstest.Table(t))
}

// TestClaimIsExclusive: many workers claim the same job at once; exactly
// one gets it, and once it is settled nobody does.
func TestClaimIsExclusive(t *testing.T) {
	l := newLedger(t)
	ctx := context.Background()
	const n = 12
	var mu sync.Mutex
	var winners []Claim
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := l.Claim(ctx, "job-1", "u1", time.Now().Add(time.Minute))
			if err != nil {
				t.Error(err)
				return
			}
			if c.State == Claimed {
				mu.Lock()
				winners = append(winners, c)
				mu.Unlock()
			} else if c.State != InFlight {
				t.Errorf("state %v", c.State)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d workers claimed the job", len(winners))
	}
	if err := l.Settle(ctx, "job-1", winners[0], result{Status: Sent, Channel: Template, MsgID: "42", MsgKey: "wxoa#42"}); err != nil {
		t.Fatal(err)
	}
	c, err := l.Claim(ctx, "job-1", "u1", time.Now().Add(time.Minute))
	if err != nil || c.State != Settled || c.Existing.Status != Sent {
		t.Fatalf("claim after SENT: %+v %v", c, err)
	}
	// A record (expired, invalid) never overwrites a settled job.
	if e, wrote, err := l.Record(ctx, "job-1", "", nil, result{Status: Expired}); err != nil || wrote || e.Status != Sent {
		t.Fatalf("record over SENT: wrote=%v %+v %v", wrote, e, err)
	}
}

func TestLeaseTakeoverAndRelease(t *testing.T) {
	l := newLedger(t)
	ctx := context.Background()
	now := time.Now()
	l.Now = func() time.Time { return now }
	first, _ := l.Claim(ctx, "j", "u", now.Add(time.Minute))
	// Released after a transient failure: the next claim is no takeover.
	if err := l.Release(ctx, "j", first, result{ErrCode: -1, Class: "transient"}); err != nil {
		t.Fatal(err)
	}
	second, _ := l.Claim(ctx, "j", "u", now.Add(time.Minute))
	if second.State != Claimed || second.Takeover || second.Attempt != 2 {
		t.Fatalf("after release: %+v", second)
	}
	// The first worker's late write is refused.
	if err := l.Settle(ctx, "j", first, result{Status: Sent}); err != ErrClaimLost {
		t.Fatalf("stale settle: %v", err)
	}
	// Not released (a crash): in flight until the lease ends, then a takeover.
	if c, _ := l.Claim(ctx, "j", "u", now.Add(time.Minute)); c.State != InFlight {
		t.Fatalf("during the lease: %+v", c)
	}
	now = now.Add(2 * time.Minute)
	third, _ := l.Claim(ctx, "j", "u", now.Add(time.Minute))
	if third.State != Claimed || !third.Takeover || third.Attempt != 3 {
		t.Fatalf("after the lease: %+v", third)
	}
	if err := l.Settle(ctx, "j", third, result{Status: Sent, Channel: Subscribe}); err != nil {
		t.Fatal(err)
	}
	e, _, _ := l.Get(ctx, "j")
	if e.Status != Sent || e.ErrCode != 0 || e.Class != "" || e.LeaseUntil != 0 || e.Attempts != 3 {
		t.Fatalf("settled entry keeps stale fields: %+v", e)
	}
}

// TestUncertainAttemptsAreRemembered: the entry names the channel that may
// have sent a job from the claim on, until an answer says it did not; a
// later claim sees it, and nothing overwrites it but an outcome.
func TestUncertainAttemptsAreRemembered(t *testing.T) {
	l := newLedger(t)
	ctx := context.Background()
	now := time.Now()
	l.Now = func() time.Time { return now }
	first, err := l.claim(ctx, "u", "p1", now.Add(time.Minute), Template, "", nil)
	if err != nil || first.State != Claimed || first.Uncertain != "" {
		t.Fatalf("first claim: %+v %v", first, err)
	}
	if e, _, _ := l.Get(ctx, "u"); e.Trying != Template || e.TriedAt != now.UnixMilli() {
		t.Fatalf("after the claim: %+v", e)
	}
	// WeChat answered -1: nothing went out; the next claim may pick any channel.
	if err := l.Release(ctx, "u", first, result{Channel: Template, ErrCode: -1, Class: "transient"}); err != nil {
		t.Fatal(err)
	}
	second, _ := l.claim(ctx, "u", "p1", now.Add(time.Minute), Subscribe, "", nil)
	if second.State != Claimed || second.Uncertain != "" {
		t.Fatalf("after a known failure: %+v", second)
	}
	// Falling back to template, whose answer is then lost.
	later := now.Add(time.Second)
	l.Now = func() time.Time { return later }
	if at, err := l.try(ctx, "u", second, Template, "", nil); err != nil || !at.Equal(later) {
		t.Fatalf("try: %v %v", at, err)
	}
	if err := l.release(ctx, "u", second, result{Channel: Template, Class: "transient", Reason: "no answer"}, true); err != nil {
		t.Fatal(err)
	}
	// A record (the job expired meanwhile) does not overwrite it.
	if e, wrote, err := l.Record(ctx, "u", "", nil, result{Status: Expired}); err != nil || wrote || e.Trying != Template {
		t.Fatalf("record over an uncertain attempt: wrote=%v %+v %v", wrote, e, err)
	}
	// The next claim, whatever channel it prefers, learns which one may have sent.
	third, _ := l.claim(ctx, "u", "p1", later.Add(time.Minute), Subscribe, "", nil)
	if third.Uncertain != Template || !third.UncertainSince.Equal(time.UnixMilli(later.UnixMilli())) {
		t.Fatalf("third claim: %+v", third)
	}
	// A stale holder cannot switch channels.
	if _, err := l.try(ctx, "u", second, Subscribe, "", nil); err != ErrClaimLost {
		t.Fatalf("stale try: %v", err)
	}
	if err := l.Settle(ctx, "u", third, result{Status: Unknown, Channel: Template, Reason: "no answer"}); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := l.Get(ctx, "u"); e.Status != Unknown || e.Trying != "" || e.TriedAt != 0 || e.LeaseUntil != 0 {
		t.Fatalf("settled: %+v", e)
	}
}

func TestReport(t *testing.T) {
	l := newLedger(t)
	ctx := context.Background()
	for i, status := range []string{"success", "failed:user block", "failed: system failed"} {
		id := fmt.Sprint("r", i)
		c, _ := l.Claim(ctx, id, "u", time.Now().Add(time.Minute))
		msgid := fmt.Sprint(1000 + i)
		l.Settle(ctx, id, c, result{Status: Sent, Channel: Template, MsgID: msgid, MsgKey: "wxoa#" + msgid})
		for range 2 { // WeChat may push a report twice
			if ok, err := l.Report(ctx, "wxoa", msgid, status); !ok || err != nil {
				t.Fatalf("report %s: %v %v", status, ok, err)
			}
		}
		e, _, _ := l.Get(ctx, id)
		want := map[int]Status{0: Delivered, 1: Blocked, 2: Failed}[i]
		if e.Status != want || e.Report != status {
			t.Fatalf("%s: %+v", status, e)
		}
	}
	if ok, err := l.Report(ctx, "wxoa", "999999", "success"); ok || err != nil {
		t.Fatalf("unknown msgid matched: %v %v", ok, err)
	}
	if ok, _ := l.Report(ctx, "wxother", "1000", "success"); ok {
		t.Fatal("a msgid of another account matched")
	}
}

func TestEnqueueBatchUsesBatchesOfTen(t *testing.T) {
	counter := &awstest.Counter{}
	q := sqs.NewFromConfig(awstest.Config(counter))
	url := awstest.Queue(t, "SendQueue")
	c := NewClient(q, url)
	var jobs []Job
	for i := range 23 {
		jobs = append(jobs, Job{ID: fmt.Sprint("b", i), To: Recipient{UID: "u"}, Template: &TemplateMessage{TemplateID: "t", Data: map[string]string{"thing1": "x"}}})
	}
	jobs[7].To = Recipient{} // invalid: refused, the others still go
	counter.Counts()
	out, err := c.EnqueueBatch(context.Background(), jobs)
	if err == nil || out[7].Err == nil || out[7].MessageID != "" {
		t.Fatalf("the invalid job: %+v, %v", out[7], err)
	}
	for i, e := range out {
		if i != 7 && (e.Err != nil || e.MessageID == "" || e.JobID != jobs[i].ID) {
			t.Fatalf("job %d: %+v", i, e)
		}
	}
	if n := counter.Counts()["SendMessageBatch"]; n != 3 {
		t.Fatalf("%d SendMessageBatch calls for 22 jobs, want 3", n)
	}
	got, _ := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 1})
	var j Job
	if len(got.Messages) != 1 || json.Unmarshal([]byte(*got.Messages[0].Body), &j) != nil || Validate(j) != nil {
		t.Fatalf("queued body is not a valid job: %+v", got.Messages)
	}
	if id, err := c.Enqueue(context.Background(), jobs[0]); err != nil || id == "" {
		t.Fatalf("Enqueue: %q %v", id, err)
	}
}

func TestRetryDelay(t *testing.T) {
	prev := time.Duration(0)
	for n := 1; n <= 5; n++ {
		d := RetryDelay(n)
		if d <= prev || d < RetryBase || d > RetryCap+RetryCap/10 {
			t.Fatalf("receive %d: %s after %s", n, d, prev)
		}
		prev = d
	}
	if d := RetryDelay(30); d > RetryCap+RetryCap/10 {
		t.Fatalf("uncapped: %s", d)
	}
	// Quota: until midnight Beijing time. 10:00 Beijing is 14 h before it,
	// beyond SQS's 12 h: capped; 22:00 Beijing is 2 h before it.
	morning := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	if d := QuotaDelay(morning); d != maxQuotaWait {
		t.Fatalf("quota at 10:00 CST: %s", d)
	}
	evening := time.Date(2026, 11, 20, 14, 0, 0, 0, time.UTC)
	if d := QuotaDelay(evening); d < 2*time.Hour || d > 2*time.Hour+minQuotaWait {
		t.Fatalf("quota at 22:00 CST: %s", d)
	}
	// 23:55 Beijing: at least 15 minutes, not 5.
	late := time.Date(2026, 11, 20, 15, 55, 0, 0, time.UTC)
	if d := QuotaDelay(late); d < minQuotaWait || d > 2*minQuotaWait {
		t.Fatalf("quota at 23:55 CST: %s", d)
	}
}

// loseClaimAnswer forwards the first claim (an UpdateItem carrying
// ":inprogress") to DynamoDB, then answers 500 as if the answer had been
// lost after the write committed; the SDK retries the same request. moto
// cannot play this, and awsfault fails requests before they reach moto.
type loseClaimAnswer struct{ fired atomic.Int32 }

func (c *loseClaimAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".UpdateItem") ||
		!bytes.Contains(body, []byte(`":inprogress"`)) || !c.fired.CompareAndSwap(0, 1) {
		return resp, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	const lost = `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}`
	return &http.Response{StatusCode: 500, Status: "500 Internal Server Error", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}}, Body: io.NopCloser(strings.NewReader(lost)),
		ContentLength: int64(len(lost)), Request: r}, nil
}

// TestClaimWhoseAnswerIsLost: a claim committed while its answer was lost
// (the SDK's retry finds the job held by this very claim) is the caller's,
// and tells the trying mark it wrote itself from one an earlier attempt
// left: only the latter is uncertain. Attempts and the earlier outcome
// fields are what they would be had the answer come back.
func TestClaimWhoseAnswerIsLost(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	before := now.Add(-time.Minute)
	for _, tc := range []struct {
		name      string
		earlier   func(l *Ledger, id string) // what happened to the job before
		first     Channel                    // the claim's channel; "": Claim
		uncertain Channel
		since     time.Time
		attempt   int
	}{
		{name: "fresh_job", earlier: func(*Ledger, string) {}, first: Subscribe, attempt: 1},
		{name: "after_a_known_failure", earlier: func(l *Ledger, id string) {
			c, _ := l.claim(ctx, id, "p1", before.Add(time.Second), Template, "", nil)
			if err := l.Release(ctx, id, c, result{Channel: Template, ErrCode: -1, Class: "transient", Reason: "busy"}); err != nil {
				t.Fatal(err)
			}
		}, first: Subscribe, attempt: 2},
		{name: "after_an_unanswered_attempt_on_another_channel", earlier: func(l *Ledger, id string) {
			c, _ := l.claim(ctx, id, "p1", before.Add(time.Second), Template, "", nil)
			if err := l.release(ctx, id, c, result{Channel: Template, Class: "transient", Reason: "no answer"}, true); err != nil {
				t.Fatal(err)
			}
		}, first: Subscribe, uncertain: Template, since: before, attempt: 2},
		{name: "after_an_unanswered_attempt_on_the_same_channel", earlier: func(l *Ledger, id string) {
			c, _ := l.claim(ctx, id, "p1", before.Add(time.Second), Subscribe, "", nil)
			if err := l.release(ctx, id, c, result{Channel: Subscribe, Class: "transient", Reason: "no answer"}, true); err != nil {
				t.Fatal(err)
			}
		}, first: Subscribe, uncertain: Subscribe, since: before, attempt: 2},
		{name: "claim_without_a_channel_after_an_unanswered_attempt", earlier: func(l *Ledger, id string) {
			c, _ := l.claim(ctx, id, "p1", before.Add(time.Second), Template, "", nil)
			if err := l.release(ctx, id, c, result{Channel: Template, Class: "transient", Reason: "no answer"}, true); err != nil {
				t.Fatal(err)
			}
		}, uncertain: Template, since: before, attempt: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := awstest.Table(t)
			plain := NewLedger(dynamodb.NewFromConfig(awstest.Config(nil)), table)
			plain.Now = func() time.Time { return before }
			tc.earlier(plain, "j")
			lost := awsfault.ForTest(t, awstest.Endpoint(), awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `":inprogress"`, Count: 1, Error: awsfault.LostAnswer})
			l := NewLedger(dynamodb.NewFromConfig(lost.Config(awstest.Config(nil)), func(o *dynamodb.Options) {
				o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
			}), table)
			l.Now = func() time.Time { return now }
			c, err := l.claim(ctx, "j", "p1", now.Add(time.Minute), tc.first, "", nil)
			if lost.List()[0].Fired != 1 {
				t.Fatal("setup: the claim's answer was not lost")
			}
			if err != nil || c.State != Claimed {
				t.Fatalf("claim whose answer was lost: %+v %v", c, err)
			}
			if c.Uncertain != tc.uncertain || c.Attempt != tc.attempt ||
				(tc.uncertain != "" && !c.UncertainSince.Equal(time.UnixMilli(tc.since.UnixMilli()))) {
				t.Fatalf("claim = uncertain %q since %v, attempt %d; want %q since %v, attempt %d",
					c.Uncertain, c.UncertainSince, c.Attempt, tc.uncertain, tc.since, tc.attempt)
			}
			if err := l.Settle(ctx, "j", c, result{Status: Sent, Channel: Subscribe}); err != nil {
				t.Fatal(err)
			}
			if e, _, _ := l.Get(ctx, "j"); e.Status != Sent || e.ErrCode != 0 || e.Class != "" || e.Reason != "" || e.Trying != "" || e.Attempts != tc.attempt {
				t.Fatalf("settled entry: %+v", e)
			}
		})
	}
}
