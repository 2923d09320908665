package handler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/functions/outcome-publisher/handler"
	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/streams"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/notify"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const appid = "wxoa0000000000000a"

// fixture is one test's stack: the table with its stream, the outcome
// bus with a queue subscribed to every wxbridge event (as a business
// subscribes), the publisher built from its template environment with its
// EventBridge calls through an AWS fault proxy, and the template's stream
// trigger feeding it (infra/devkit/streams).
type fixture struct {
	t       *testing.T
	e       *testenv.Env
	h       *handler.Handler
	faults  *awsfault.Proxy
	calls   *awstest.Counter // the publisher's AWS calls
	ledger  *notify.Ledger
	stream  string
	trigger cfn.StreamTrigger
	dlq     string // the trigger's on-failure queue
	events  string // the subscribed queue

	source  *streams.Source // the template's trigger, to the publisher
	raw     *streams.Source // every record, unfiltered, to rawRecords
	mu      sync.Mutex
	rawBuf  []events.DynamoDBEventRecord
	answers []events.DynamoDBEventResponse // the publisher's, through source
}

// fast keeps the SDK's retries (what is retried and how often) with
// millisecond backoffs.
func fast(cfg aws.Config) aws.Config {
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 5 * time.Millisecond })
	}
	return cfg
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	e := testenv.New(t)
	f := &fixture{t: t, e: e, calls: &awstest.Counter{}, ledger: notify.NewLedger(e.DB, e.Table)}

	env := e.FunctionEnv("OutcomePublisherFunction")
	f.faults = awsfault.ForTest(t, aws.ToString(env.AWS.BaseEndpoint))
	env.AWS = fast(f.faults.Config(env.AWS))
	env.AWS.HTTPClient = &http.Client{Transport: f.calls}
	h, err := handler.FromEnv(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h

	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	fns, err := tpl.Functions()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(fns, func(fn cfn.Function) bool { return fn.LogicalID == "OutcomePublisherFunction" })
	if i < 0 || len(fns[i].Streams) != 1 {
		t.Fatal("template.yaml: OutcomePublisherFunction has no stream trigger")
	}
	f.trigger = fns[i].Streams[0]
	f.dlq = e.Queue(f.trigger.OnFailure)
	desc, err := e.DB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &e.Table})
	if err != nil {
		t.Fatal(err)
	}
	f.stream = aws.ToString(desc.Table.LatestStreamArn)
	if f.stream == "" {
		t.Fatal("the test table has no stream: template.yaml's StreamSpecification did not reach CreateTable")
	}
	f.events = awstest.Subscribe(t, env.Vars["WXB_OUTCOME_BUS"], `{"source":["wxbridge"]}`)
	f.source = f.sourceOf(f.trigger, func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		resp, err := f.h.Handle(ctx, ev)
		f.mu.Lock()
		f.answers = append(f.answers, resp)
		f.mu.Unlock()
		return resp, err
	})
	all := f.trigger
	all.Filters = nil
	f.raw = f.sourceOf(all, func(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		f.mu.Lock()
		f.rawBuf = append(f.rawBuf, ev.Records...)
		f.mu.Unlock()
		return events.DynamoDBEventResponse{}, nil
	})
	return f
}

func (f *fixture) sourceOf(tr cfn.StreamTrigger, h func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error)) *streams.Source {
	return &streams.Source{
		AWS: awstest.Config(nil), StreamARN: f.stream, Trigger: tr, OnFailureURL: f.dlq, Handler: h,
		FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:OutcomePublisherFunction",
		RetryDelay:  time.Millisecond, Poll: 10 * time.Millisecond,
	}
}

// publish runs the template's trigger over everything the stream has now.
func (f *fixture) publish() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.source.Drain(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// rawRecords is every stream record since the last call, unfiltered.
func (f *fixture) rawRecords() []events.DynamoDBEventRecord {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.raw.Drain(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.rawBuf
	f.rawBuf = nil
	return out
}

// received takes every event waiting on the subscribed queue, in order.
func (f *fixture) received() []contract.Event {
	f.t.Helper()
	q := sqs.NewFromConfig(awstest.Config(nil))
	var out []contract.Event
	for {
		resp, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.events, MaxNumberOfMessages: 10, VisibilityTimeout: 600})
		if err != nil {
			f.t.Fatal(err)
		}
		if len(resp.Messages) == 0 {
			return out
		}
		for _, m := range resp.Messages {
			ev, err := contract.DecodeEvent([]byte(aws.ToString(m.Body)))
			if err != nil {
				f.t.Fatalf("an event on the bus a business cannot read: %v\n%s", err, aws.ToString(m.Body))
			}
			out = append(out, ev)
		}
	}
}

// send claims job and records it SENT as the send-worker does: two
// ledger writes.
func (f *fixture) send(job, msgid string) {
	f.t.Helper()
	ctx := context.Background()
	c, err := f.ledger.Claim(ctx, job, "uid-"+job, time.Now().Add(time.Minute))
	if err != nil || c.State != notify.Claimed {
		f.t.Fatalf("claim %s: %+v, %v", job, c.State, err)
	}
	if err := f.ledger.SettleSent(ctx, job, c, contract.Template, appid, msgid); err != nil {
		f.t.Fatal(err)
	}
}

// put writes item as it is (a ledger item or any other).
func (f *fixture) put(item ddb.Item) {
	f.t.Helper()
	if _, err := f.e.DB.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &f.e.Table, Item: item}); err != nil {
		f.t.Fatal(err)
	}
}

// putEntry writes job's ledger entry e, whole.
func (f *fixture) putEntry(e notify.Entry) {
	f.t.Helper()
	item, err := attributevalue.MarshalMap(e)
	if err != nil {
		f.t.Fatal(err)
	}
	item["pk"] = ddb.S(notify.LedgerPrefix + e.JobID)
	f.put(item)
}

func statuses(evs []contract.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Detail.JobID+":"+string(ev.Detail.Status))
	}
	return out
}

func sequence(rs []events.DynamoDBEventRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Change.SequenceNumber)
	}
	return out
}

// failures is the sequence numbers of resp's batch item failures.
func failures(resp events.DynamoDBEventResponse) []string {
	var out []string
	for _, f := range resp.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	return out
}

func ledgerRecords(rs []events.DynamoDBEventRecord, status contract.Status) []events.DynamoDBEventRecord {
	var out []events.DynamoDBEventRecord
	for _, r := range rs {
		if s, ok := r.Change.NewImage["status"]; ok && s.DataType() == events.DataTypeString && s.String() == string(status) {
			out = append(out, r)
		}
	}
	return out
}

// The worker writes SENT and stops before doing anything else (its
// answer from DynamoDB is lost, as when its process dies right after the
// write): the event still comes, once, from the stream; a redelivery of
// the job finds it settled and writes nothing, so no second event.
func TestWriterCrashAfterLedgerWriteStillYieldsOneEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	crash := awsfault.ForTest(t, awstest.Endpoint(), awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `"SENT"`, Count: 1, Error: awsfault.LostAnswer})
	cfg := crash.Config(awstest.Config(nil))
	cfg.RetryMaxAttempts = 1 // the worker is gone: nothing retries its write
	worker := notify.NewLedger(dynamodb.NewFromConfig(cfg), f.e.Table)

	c, err := worker.Claim(ctx, "crash-1", "uid-1", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.SettleSent(ctx, "crash-1", c, contract.Template, appid, "msg-1"); err == nil {
		t.Fatal("the SENT write answered: the fault did not fire")
	}
	entry, ok, err := f.ledger.Get(ctx, "crash-1")
	if err != nil || !ok || entry.Status != notify.Sent {
		t.Fatalf("ledger after the crash: %+v, %v, %v; want SENT (the write happened)", entry, ok, err)
	}
	// The job's message comes back; the next worker finds it settled.
	if again, err := f.ledger.Claim(ctx, "crash-1", "uid-1", time.Now().Add(time.Minute)); err != nil || again.State != notify.Settled {
		t.Fatalf("redelivered job: %+v, %v; want settled", again.State, err)
	}

	f.publish()
	f.publish() // nothing new: nothing more
	got := f.received()
	if len(got) != 1 {
		t.Fatalf("events %v, want exactly one SENT", statuses(got))
	}
	ev := got[0]
	want := contract.OutcomeEventID("crash-1", entry.CreatedAt, notify.Sent)
	if ev.Detail.EventID != want || ev.Detail.Status != notify.Sent || ev.DetailType != "Notification Sent" || ev.Detail.MsgID != "msg-1" ||
		ev.Detail.Channel != contract.Template || ev.Detail.Final || !ev.Detail.At.Equal(entry.UpdatedAt) || ev.Detail.Attempts != 1 {
		t.Fatalf("event %+v, want the ledger's SENT with event id %s", ev, want)
	}
	for _, a := range f.answers {
		if len(a.BatchItemFailures) != 0 {
			t.Fatalf("publisher reported failures: %+v", f.answers)
		}
	}
}

// A PutEvents whose answer is lost is retried by the SDK (it happened:
// EventBridge has the events) and, when that fails too, by Lambda from the
// stream: each time the same event ids, never new ones.
func TestLostAnswerRepublishesTheSameEventID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		attempts int // the SDK's; 1: the failure goes back to the stream
	}{
		{"sdk_retry", 0},
		{"stream_retry", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if tc.attempts > 0 {
				env := f.e.FunctionEnv("OutcomePublisherFunction")
				env.AWS = f.faults.Config(env.AWS)
				env.AWS.RetryMaxAttempts = tc.attempts
				h, err := handler.FromEnv(context.Background(), env)
				if err != nil {
					t.Fatal(err)
				}
				f.h = h
			}
			f.send("lost-1", "m1")
			f.send("lost-2", "m2")
			if _, err := f.faults.Add(awsfault.Rule{Service: awsfault.EventBridge, Operation: "PutEvents", Count: 1, Error: awsfault.LostAnswer}); err != nil {
				t.Fatal(err)
			}
			f.publish()
			got := f.received()
			ids := map[string][]string{} // event_id -> EventBridge ids
			for _, ev := range got {
				ids[ev.Detail.EventID] = append(ids[ev.Detail.EventID], ev.ID)
			}
			if len(got) != 4 || len(ids) != 2 {
				t.Fatalf("events %v with %d distinct event ids, want both SENTs twice under 2 ids", statuses(got), len(ids))
			}
			for id, copies := range ids {
				if len(copies) != 2 || copies[0] == copies[1] {
					t.Fatalf("event_id %s: EventBridge ids %v, want two publishes", id, copies)
				}
			}
		})
	}
}

// A PutEvents throttled past the SDK's retries fails from its first
// record: that record's sequence number is the batch item failure, nothing
// after it is published in the invocation, and Lambda's retry from it
// publishes every one.
func TestThrottledCallIsReportedAndLaterRecordsFollow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := range 3 {
		f.send(fmt.Sprintf("throttle-%d", i), fmt.Sprintf("m%d", i))
	}
	f.send("throttle-0-dup", "m9") // later in the batch
	sent := ledgerRecords(f.rawRecords(), notify.Sent)
	if len(sent) != 4 {
		t.Fatalf("%d SENT records, want 4", len(sent))
	}
	ev := events.DynamoDBEvent{Records: sent}
	// Matched by the second record's job: the whole call is refused, on
	// each of the SDK's 3 attempts.
	if _, err := f.faults.Add(awsfault.Rule{Service: awsfault.EventBridge, Operation: "PutEvents", Match: "throttle-1", Count: 3, Error: awsfault.ThrottlingException}); err != nil {
		t.Fatal(err)
	}
	f.calls.Counts()
	resp, err := f.h.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := failures(resp); !slices.Equal(got, sequence(sent[:1])) {
		t.Fatalf("batch item failures %v, want the first record %v", got, sequence(sent[:1]))
	}
	if n := f.calls.Counts()["PutEvents"]; n != 3 {
		t.Fatalf("%d PutEvents attempts, want the SDK's 3 and then no more calls", n)
	}
	if got := f.received(); len(got) != 0 {
		t.Fatalf("published %v before the failed record was", statuses(got))
	}
	if !strings.Contains(f.e.Logs.String(), `"reason":"throttled"`) {
		t.Fatalf("the failure is not logged as throttled:\n%s", f.e.Logs)
	}
	// Lambda retries from the reported record.
	resp, err = f.h.Handle(context.Background(), ev)
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("retry: %+v, %v", resp, err)
	}
	if got := statuses(f.received()); !slices.Equal(got, []string{"throttle-0:SENT", "throttle-1:SENT", "throttle-2:SENT", "throttle-0-dup:SENT"}) {
		t.Fatalf("after the retry: %v, want every record, in order", got)
	}
}

// entryFailer is EventBridge with one entry refused: a PutEvents answer
// with a FailedEntryCount, which moto never gives for a valid entry. The
// other entries go to moto; the refused one does not.
type entryFailer struct {
	bus    handler.Bus
	refuse string // a job id
	code   string
	times  int
}

func (b *entryFailer) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	refused := -1
	if b.times > 0 {
		refused = slices.IndexFunc(in.Entries, func(e ebtypes.PutEventsRequestEntry) bool {
			return strings.Contains(aws.ToString(e.Detail), `"job_id":"`+b.refuse+`"`)
		})
	}
	if refused < 0 {
		return b.bus.PutEvents(ctx, in, opts...)
	}
	b.times--
	rest := slices.Delete(slices.Clone(in.Entries), refused, refused+1)
	out := &eventbridge.PutEventsOutput{}
	if len(rest) > 0 {
		var err error
		if out, err = b.bus.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: rest}, opts...); err != nil {
			return nil, err
		}
	}
	out.Entries = slices.Insert(out.Entries, refused, ebtypes.PutEventsResultEntry{ErrorCode: aws.String(b.code), ErrorMessage: aws.String("refused by the test")})
	out.FailedEntryCount++
	return out, nil
}

// A refused entry is the batch item failure; the entries before it are
// published once, those after it (accepted in the same call) again on the
// retry, under the same event ids.
func TestFailedEntryIsReportedAndLaterRecordsFollow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ code, reason string }{
		{"ThrottlingException", "throttled"},
		{"InternalFailure", "error"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			for i := range 3 {
				f.send(fmt.Sprintf("entry-%d", i), fmt.Sprintf("m%d", i))
			}
			sent := ledgerRecords(f.rawRecords(), notify.Sent)
			f.h.Bus = &entryFailer{bus: f.h.Bus, refuse: "entry-1", code: tc.code, times: 1}
			ev := events.DynamoDBEvent{Records: sent}
			resp, err := f.h.Handle(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if got := failures(resp); !slices.Equal(got, sequence(sent[1:2])) {
				t.Fatalf("batch item failures %v, want the refused record %v", got, sequence(sent[1:2]))
			}
			if !strings.Contains(f.e.Logs.String(), `"reason":"`+tc.reason+`"`) {
				t.Fatalf("no failure with reason %s logged:\n%s", tc.reason, f.e.Logs)
			}
			// Lambda retries from the failed record.
			resp, err = f.h.Handle(context.Background(), events.DynamoDBEvent{Records: sent[1:]})
			if err != nil || len(resp.BatchItemFailures) != 0 {
				t.Fatalf("retry: %+v, %v", resp, err)
			}
			got := f.received()
			if s := statuses(got); !slices.Equal(s, []string{"entry-0:SENT", "entry-2:SENT", "entry-1:SENT", "entry-2:SENT"}) {
				t.Fatalf("events %v", s)
			}
			if got[1].Detail.EventID != got[3].Detail.EventID {
				t.Fatal("a republished event got a new event id")
			}
		})
	}
}

// Only a change of a ledger entry's status that a business is told of is
// an event: not other items, not claims and retries (INPROGRESS), not a
// rewrite of the same status, not the TTL's removal. The template's filter
// keeps most of them from the publisher; the publisher skips them anyway.
func TestOnlyLedgerOutcomesArePublished(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.put(ddb.Item{"pk": ddb.S("P#01HZ"), "status": ddb.S("SENT"), "job_id": ddb.S("not-a-job")})
	f.put(ddb.Item{"pk": ddb.S("SYNC#run"), "status": ddb.S("FAILED")})
	c, err := f.ledger.Claim(ctx, "quiet-1", "uid", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_ = c
	// A claim's lease running out and a second claim: INPROGRESS again.
	if _, err := f.e.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &f.e.Table, Key: ddb.Key("SEND#quiet-1"),
		UpdateExpression: aws.String("SET lease_until = :past"), ExpressionAttributeValues: ddb.Item{":past": ddb.N(1)}}); err != nil {
		t.Fatal(err)
	}
	if again, err := f.ledger.Claim(ctx, "quiet-1", "uid", time.Now().Add(time.Minute)); err != nil || again.State != notify.Claimed {
		t.Fatalf("second claim: %+v, %v", again.State, err)
	}
	created := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	failed := notify.Entry{JobID: "quiet-2", Status: notify.Failed, ErrCode: 40037, Class: "sender", Attempts: 1, CreatedAt: created, UpdatedAt: created}
	f.putEntry(failed)
	failed.UpdatedAt = created.Add(time.Minute) // the same status written again
	f.putEntry(failed)
	if _, err := f.e.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &f.e.Table, Key: ddb.Key("SEND#quiet-2")}); err != nil {
		t.Fatal(err)
	}

	// moto records an UpdateItem that creates an item as two INSERTs (the
	// bare key, then the item): 9 or more.
	raw := f.rawRecords()
	if len(raw) < 8 {
		t.Fatalf("%d stream records, want at least 8 (2 other items, 2 claims and a lease edit, 2 FAILED writes, 1 removal)", len(raw))
	}
	f.calls.Counts()
	resp, err := f.h.Handle(ctx, events.DynamoDBEvent{Records: raw})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("%+v, %v", resp, err)
	}
	if got := statuses(f.received()); !slices.Equal(got, []string{"quiet-2:FAILED"}) {
		t.Fatalf("published %v from every record, want only the one FAILED change", got)
	}
	if n := f.calls.Counts()["PutEvents"]; n != 1 {
		t.Fatalf("%d PutEvents calls, want 1", n)
	}

	// Through the template's filter, the publisher sees the FAILED writes
	// only (the second is a rewrite it skips).
	f.publish()
	var seen int
	for _, a := range f.answers {
		if len(a.BatchItemFailures) != 0 {
			t.Fatalf("failures %+v", a)
		}
	}
	seen = len(f.answers)
	if seen == 0 {
		t.Fatal("the template's filter kept no record")
	}
	if got := statuses(f.received()); !slices.Equal(got, []string{"quiet-2:FAILED"}) {
		t.Fatalf("through the trigger: %v", got)
	}
}

// SENT, then WeChat's delivery report: two events, in that order, with
// distinct ids, the second final.
func TestSentThenDeliveredInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.send("order-1", "msg-77")
	if ok, err := f.ledger.Report(context.Background(), appid, "msg-77", "success"); err != nil || !ok {
		t.Fatalf("report: %v, %v", ok, err)
	}
	f.publish()
	got := f.received()
	if s := statuses(got); !slices.Equal(s, []string{"order-1:SENT", "order-1:DELIVERED"}) {
		t.Fatalf("events %v, want SENT then DELIVERED", s)
	}
	if got[0].Detail.EventID == got[1].Detail.EventID || got[0].Detail.Final || !got[1].Detail.Final || got[1].DetailType != "Notification Delivered" || got[1].Detail.Report != "success" {
		t.Fatalf("events %+v", got)
	}
}

// Two changes of one job in a batch go in separate calls, in order, and
// a call holds at most 10 events.
func TestCallsHoldTenEventsAndOneChangePerJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := range 14 {
		f.send(fmt.Sprintf("many-%02d", i), fmt.Sprintf("msg-%02d", i))
	}
	if ok, err := f.ledger.Report(context.Background(), appid, "msg-03", "failed:user block"); err != nil || !ok {
		t.Fatalf("report: %v, %v", ok, err)
	}
	var changes []events.DynamoDBEventRecord
	for _, r := range f.rawRecords() {
		if s, ok := r.Change.NewImage["status"]; ok && s.DataType() == events.DataTypeString && contract.DetailType(contract.Status(s.String())) != "" {
			changes = append(changes, r)
		}
	}
	if len(changes) != 15 {
		t.Fatalf("%d changes, want 15", len(changes))
	}
	// many-03's BLOCKED comes right after many-03's SENT in one batch.
	blocked := changes[14]
	changes = slices.Insert(changes[:14], 4, blocked)
	f.calls.Counts()
	resp, err := f.h.Handle(context.Background(), events.DynamoDBEvent{Records: changes})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("%+v, %v", resp, err)
	}
	// [00..03] | [03-BLOCKED, 04..12] | [13]
	if n := f.calls.Counts()["PutEvents"]; n != 3 {
		t.Fatalf("%d PutEvents calls, want 3", n)
	}
	got := statuses(f.received())
	if len(got) != 15 || got[3] != "many-03:SENT" || got[4] != "many-03:BLOCKED" {
		t.Fatalf("events %v", got)
	}
}

// A ledger item the code cannot read can never be published: it is the
// failure, the records before it are published, and after the trigger's
// retries Lambda's invocation record goes to the on-failure queue.
func TestUnreadableLedgerItemEndsInTheDLQ(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.send("before-1", "m1")
	f.put(ddb.Item{"pk": ddb.S("SEND#bad"), "job_id": ddb.S("bad"), "status": ddb.S("FAILED"), "created_at": ddb.S("yesterday")})
	raw := f.rawRecords()
	sent := ledgerRecords(raw, notify.Sent)
	bad := ledgerRecords(raw, notify.Failed)
	resp, err := f.h.Handle(context.Background(), events.DynamoDBEvent{Records: append(sent, bad...)})
	if err != nil {
		t.Fatal(err)
	}
	if got := failures(resp); !slices.Equal(got, sequence(bad)) {
		t.Fatalf("failures %v, want the unreadable record %v", got, sequence(bad))
	}
	if got := statuses(f.received()); !slices.Equal(got, []string{"before-1:SENT"}) {
		t.Fatalf("events %v", got)
	}
	if !strings.Contains(f.e.Logs.String(), `"reason":"unreadable"`) {
		t.Fatalf("not logged as unreadable:\n%s", f.e.Logs)
	}

	f.source.Trigger.MaximumRetryAttempts = 1 // the template's number of retries, quicker
	f.publish()
	q := sqs.NewFromConfig(awstest.Config(nil))
	out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.dlq, MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("%d on-failure records, want 1", len(out.Messages))
	}
	var inv streams.Invocation
	if err := json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &inv); err != nil || inv.Batch.StartSequenceNumber != bad[0].Change.SequenceNumber {
		t.Fatalf("on-failure record %s (%v), want one starting at the unreadable record %s", aws.ToString(out.Messages[0].Body), err, bad[0].Change.SequenceNumber)
	}
}

// The recipient travels in the event, for the business; it never reaches
// the logs, which name the job, its status and the event id.
func TestLogsNameTheJobNotTheRecipient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	f.putEntry(notify.Entry{JobID: "private-1", Status: notify.Undeliverable, UID: "01HZUID", Reason: "not following",
		To: &contract.Recipient{ExternalID: "customer-8812"}, Attempts: 1, CreatedAt: at, UpdatedAt: at})
	f.publish()
	got := f.received()
	if len(got) != 1 || got[0].Detail.To == nil || got[0].Detail.To.ExternalID != "customer-8812" || got[0].Detail.UID != "01HZUID" {
		t.Fatalf("events %+v, want the recipient in the detail", got)
	}
	logs := f.e.Logs.String()
	if strings.Contains(logs, "customer-8812") || strings.Contains(logs, "not following") {
		t.Fatalf("the logs carry the detail:\n%s", logs)
	}
	for _, want := range []string{`"job_id":"private-1"`, `"status":"UNDELIVERABLE"`, `"event_id":"` + got[0].Detail.EventID + `"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestFromEnvNeedsTheBus(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Tokens())
	env := e.FunctionEnv("OutcomePublisherFunction")
	delete(env.Vars, "WXB_OUTCOME_BUS")
	if _, err := handler.FromEnv(context.Background(), env); err == nil || !strings.Contains(err.Error(), "WXB_OUTCOME_BUS") {
		t.Fatalf("FromEnv without the bus: %v", err)
	}
}
