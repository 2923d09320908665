package handler_test

// The attacks on issue 13's promise: exactly one distinct event id per
// ledger state change, none missing, none spurious; events as the schema
// describes them. Each test drives the ledger and the publisher through the
// template's stream trigger (infra/devkit/streams), then holds what reached
// the subscribed queue against the ledger changes read from the raw stream
// with no help from the publisher's code (changesOf).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"wxbridge/functions/outcome-publisher/handler"
	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/streams"
	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/notify"
)

// change is one change of a ledger entry that a business is told of, as
// the raw stream shows it: a SEND# item whose new image has a status an
// event carries, different from the old image's status or creation time.
type change struct {
	seq, job string
	status   contract.Status
	created  time.Time
}

func (c change) eventID() string { return contract.OutcomeEventID(c.job, c.created, c.status) }

func imageString(img map[string]events.DynamoDBAttributeValue, name string) string {
	v, ok := img[name]
	if !ok || v.DataType() != events.DataTypeString {
		return ""
	}
	return v.String()
}

// changesOf reads the ledger's changes from raw stream records.
func changesOf(t *testing.T, rs []events.DynamoDBEventRecord) []change {
	t.Helper()
	var out []change
	for _, r := range rs {
		if r.EventName != "INSERT" && r.EventName != "MODIFY" || !strings.HasPrefix(imageString(r.Change.Keys, "pk"), notify.LedgerPrefix) {
			continue
		}
		after, before := r.Change.NewImage, r.Change.OldImage
		status := contract.Status(imageString(after, "status"))
		if contract.DetailType(status) == "" {
			continue
		}
		if imageString(before, "status") == string(status) && imageString(before, "created_at") == imageString(after, "created_at") {
			continue
		}
		created, err := time.Parse(time.RFC3339Nano, imageString(after, "created_at"))
		if err != nil {
			t.Fatalf("record %s: created_at: %v", r.Change.SequenceNumber, err)
		}
		out = append(out, change{seq: r.Change.SequenceNumber, job: imageString(after, "job_id"), status: status, created: created})
	}
	return out
}

// outcomeSchema is schemas/outcome-event.schema.json, compiled with formats
// asserted.
var outcomeSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	tpl, err := cfn.Find(wd)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(filepath.Dir(tpl), "schemas", "outcome-event.schema.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("outcome-event.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("outcome-event.schema.json")
})

// conforms checks one event as a target receives it against the schema.
func conforms(body string) error {
	s, err := outcomeSchema()
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// delivered takes every event waiting on the subscribed queue, each held
// to the schema and to DecodeEvent, in order.
func (f *fixture) delivered() []contract.Event {
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
			body := aws.ToString(m.Body)
			if err := conforms(body); err != nil {
				f.t.Errorf("a published event the schema refuses: %v\n%s", err, body)
			}
			ev, err := contract.DecodeEvent([]byte(body))
			if err != nil {
				f.t.Fatalf("a published event DecodeEvent refuses: %v\n%s", err, body)
			}
			out = append(out, ev)
		}
	}
}

// exactlyOnce holds the events to the changes: one distinct event id per
// change, each carrying its change's job and status; none other. It
// returns how many events were copies (published again).
func exactlyOnce(t *testing.T, changes []change, evs []contract.Event) int {
	t.Helper()
	want := map[string]change{}
	for _, c := range changes {
		if prev, dup := want[c.eventID()]; dup {
			t.Errorf("two ledger changes with one event id: %+v and %+v", prev, c)
		}
		want[c.eventID()] = c
	}
	seen := map[string]int{}
	for _, ev := range evs {
		c, ok := want[ev.Detail.EventID]
		switch {
		case !ok:
			t.Errorf("a spurious event: %s %s (event id %s) matches no ledger change", ev.Detail.JobID, ev.Detail.Status, ev.Detail.EventID)
		case ev.Detail.JobID != c.job || ev.Detail.Status != c.status || !ev.Detail.CreatedAt.Equal(c.created) ||
			ev.DetailType != contract.DetailType(c.status) || ev.Detail.Final != c.status.Final():
			t.Errorf("event %+v does not say what its change says: %+v", ev.Detail, c)
		}
		seen[ev.Detail.EventID]++
	}
	for id, c := range want {
		if seen[id] == 0 {
			t.Errorf("a missing event: %s became %s (record %s) and nothing was published", c.job, c.status, c.seq)
		}
	}
	return len(evs) - len(seen)
}

// firstOrder is each job's statuses in the order their events were first
// seen (a consumer that deduplicates on event_id sees this).
func firstOrder(evs []contract.Event) map[string][]contract.Status {
	seen := map[string]bool{}
	out := map[string][]contract.Status{}
	for _, ev := range evs {
		if !seen[ev.Detail.EventID] {
			seen[ev.Detail.EventID] = true
			out[ev.Detail.JobID] = append(out[ev.Detail.JobID], ev.Detail.Status)
		}
	}
	return out
}

// crashAfterPut is EventBridge seen from a publisher whose process dies
// right after its PutEvents calls number at (1-based) return: the events
// are on the bus, the invocation never answers.
type crashAfterPut struct {
	bus   handler.Bus
	calls atomic.Int32
	at    []int32
}

func (c *crashAfterPut) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	out, err := c.bus.PutEvents(ctx, in, opts...)
	if n := c.calls.Add(1); err == nil && slices.Contains(c.at, n) {
		panic(fmt.Sprintf("the publisher crashed after PutEvents call %d", n))
	}
	return out, err
}

// sendAndReport writes n jobs SENT (claim, then SENT) and reports every
// third one delivered: n + n/3 changes.
func (f *fixture) sendAndReport(prefix string, n int) {
	f.t.Helper()
	for i := range n {
		f.send(fmt.Sprintf("%s-%02d", prefix, i), fmt.Sprintf("%d", 7000+i))
	}
	for i := 0; i < n; i += 3 {
		if ok, err := f.ledger.Report(context.Background(), appid, fmt.Sprintf("%d", 7000+i), "success"); err != nil || !ok {
			f.t.Fatalf("report %d: %v %v", i, ok, err)
		}
	}
}

// The publisher dies right after PutEvents returned (twice, the second
// time on a retry of the first crash's batch): Lambda retries the batch
// (bisected, as the template asks) and the events published before the
// crash come again under the same event ids; every change is there, none
// invented, and a consumer that deduplicates sees each job's SENT before
// its DELIVERED.
func TestAttackCrashAfterPutEventsRepublishesTheSameEventIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sendAndReport("crash", 7) // 7 SENT + 3 DELIVERED: two calls, 7 and 3
	f.h.Bus = &crashAfterPut{bus: f.h.Bus, at: []int32{2, 3}}
	f.publish()
	changes := changesOf(t, f.rawRecords())
	if len(changes) != 10 {
		t.Fatalf("%d ledger changes, want 10", len(changes))
	}
	evs := f.delivered()
	if copies := exactlyOnce(t, changes, evs); copies == 0 {
		t.Fatalf("no event was published twice: the crash after PutEvents did not make Lambda retry (%d events)", len(evs))
	}
	for job, order := range firstOrder(evs) {
		if len(order) == 2 && (order[0] != notify.Sent || order[1] != notify.Delivered) {
			t.Errorf("%s: events first seen as %v", job, order)
		}
	}
}

// EventBridge refuses one entry in the middle of a call, twice: the
// entries after it were accepted and come again with it; nothing is lost,
// nothing new invented, and each job's order holds for a consumer that
// deduplicates.
func TestAttackEntryRefusedMidBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sendAndReport("mid", 7) // 7 SENT + 3 DELIVERED
	f.h.Bus = &entryFailer{bus: f.h.Bus, refuse: "mid-04", code: "InternalFailure", times: 2}
	f.publish()
	evs := f.delivered()
	if copies := exactlyOnce(t, changesOf(t, f.rawRecords()), evs); copies == 0 {
		t.Fatalf("no event published twice: the refused entry did not take the accepted ones after it along (%d events)", len(evs))
	}
	for job, order := range firstOrder(evs) {
		if len(order) == 2 && (order[0] != notify.Sent || order[1] != notify.Delivered) {
			t.Errorf("%s: events first seen as %v", job, order)
		}
	}
}

// A poison record (a ledger item the code cannot read) in the middle of a
// batch, with good records of other jobs after it: once Lambda gives up,
// every change is either published or inside the on-failure record's range
// (so docs/operations.md's replay can publish it) — none silently gone.
func TestAttackPoisonRecordMidBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.send("poison-before", "8101")
	f.put(ddb.Item{"pk": ddb.S("SEND#poison"), "job_id": ddb.S("poison"), "status": ddb.S("FAILED"), "created_at": ddb.S("yesterday")})
	f.send("poison-after-1", "8102")
	f.send("poison-after-2", "8103")
	f.source.Trigger.MaximumRetryAttempts = 1
	f.publish()
	raw := f.rawRecords()
	published := map[string]bool{}
	for _, ev := range f.delivered() {
		published[ev.Detail.JobID+":"+string(ev.Detail.Status)] = true
	}
	q := sqs.NewFromConfig(awstest.Config(nil))
	out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.dlq, MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ranges []streams.BatchInfo
	for _, m := range out.Messages {
		var inv streams.Invocation
		if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &inv); err != nil {
			t.Fatal(err)
		}
		ranges = append(ranges, inv.Batch)
	}
	if len(ranges) != 1 {
		t.Fatalf("%d on-failure records, want 1", len(ranges))
	}
	inDLQ := func(seq string) bool {
		for _, b := range ranges {
			if seqAtLeast(seq, b.StartSequenceNumber) && seqAtLeast(b.EndSequenceNumber, seq) {
				return true
			}
		}
		return false
	}
	var parked []string
	for _, r := range raw {
		job, status := imageString(r.Change.NewImage, "job_id"), imageString(r.Change.NewImage, "status")
		if contract.DetailType(contract.Status(status)) == "" || imageString(r.Change.OldImage, "status") == status {
			continue
		}
		switch {
		case published[job+":"+status]:
		case inDLQ(r.Change.SequenceNumber):
			parked = append(parked, job)
		default:
			t.Errorf("%s %s (record %s) is neither published nor in the on-failure record", job, status, r.Change.SequenceNumber)
		}
	}
	if !slices.Contains(parked, "poison") || !published["poison-before:SENT"] {
		t.Fatalf("parked %v, published %v", parked, published)
	}
	t.Logf("good changes after the poison record waiting in the DLQ instead of on the bus: %d (%v)", len(parked)-1, parked)
}

// seqAtLeast compares DynamoDB stream sequence numbers (decimal strings of
// any length).
func seqAtLeast(a, b string) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a >= b
}

// A ledger item whose status this code does not know (a newer writer's,
// a hand edit, a typo) or that names no job is not skipped in silence: it
// fails where it stands and ends in the on-failure queue like any record
// that cannot be published, so OutcomeDLQAlarm says so.
func TestAttackUnknownStatusIsNotDroppedSilently(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, item := range []ddb.Item{
		{"pk": ddb.S("SEND#odd-1"), "job_id": ddb.S("odd-1"), "status": ddb.S("READ"), "created_at": ddb.S(now), "updated_at": ddb.S(now)},
		{"pk": ddb.S("SEND#odd-2"), "job_id": ddb.S("odd-2"), "status": ddb.S("sent"), "created_at": ddb.S(now), "updated_at": ddb.S(now)},
		{"pk": ddb.S("SEND#odd-3"), "status": ddb.S("FAILED"), "reason": ddb.S("x"), "created_at": ddb.S(now), "updated_at": ddb.S(now)},
	} {
		f.put(item)
	}
	// Not ledger items, whatever they hold: skipped, as before.
	for _, pk := range []string{"send#odd-4", "P#01JD3K8Q7W5ZC0M4T2N6B9XH1R", "SEND"} {
		f.put(ddb.Item{"pk": ddb.S(pk), "job_id": ddb.S("odd-4"), "status": ddb.S("READ"), "created_at": ddb.S(now)})
	}
	raw := f.rawRecords()
	if len(raw) != 6 {
		t.Fatalf("%d records, want 6", len(raw))
	}
	for i, r := range raw {
		resp, err := f.h.Handle(context.Background(), events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{r}})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{r.Change.SequenceNumber}
		if i >= 3 {
			want = nil
		}
		if got := failures(resp); !slices.Equal(got, want) {
			t.Errorf("%s (status %q, job_id %q): failures %v, want %v", imageString(r.Change.Keys, "pk"),
				imageString(r.Change.NewImage, "status"), imageString(r.Change.NewImage, "job_id"), got, want)
		}
	}
	if got := f.delivered(); len(got) != 0 {
		t.Fatalf("published %v", statuses(got))
	}
}

// A job id used again after DynamoDB's TTL removed its entry is a new job:
// the removal publishes nothing, the new entry's changes publish new event
// ids, and a late delivery report of the old message changes nothing.
func TestAttackJobIDReusedAfterTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.send("reused", "9001")
	first, _, err := f.ledger.Get(ctx, "reused")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &f.e.Table, Key: ddb.Key("SEND#reused")}); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.ledger.Report(ctx, appid, "9001", "success"); err != nil || ok {
		t.Fatalf("a report of the removed entry's message: %v %v", ok, err)
	}
	f.send("reused", "9002")
	if ok, err := f.ledger.Report(ctx, appid, "9002", "failed:user block"); err != nil || !ok {
		t.Fatalf("report: %v %v", ok, err)
	}
	second, _, err := f.ledger.Get(ctx, "reused")
	if err != nil {
		t.Fatal(err)
	}
	if second.CreatedAt.Equal(first.CreatedAt) {
		t.Fatal("the new job kept the removed entry's created_at")
	}
	f.publish()
	evs := f.delivered()
	exactlyOnce(t, changesOf(t, f.rawRecords()), evs)
	if got := statuses(evs); !slices.Equal(got, []string{"reused:SENT", "reused:SENT", "reused:BLOCKED"}) {
		t.Fatalf("events %v", got)
	}
	if evs[0].Detail.EventID == evs[1].Detail.EventID || evs[1].Detail.MsgID != "9002" {
		t.Fatalf("the reused id's SENT shares the old one's event id: %+v", evs)
	}
}

// Writers race on the same jobs with their answers lost: per job a worker
// claims and records SENT while another records it FAILED (Record, as for
// an invalid copy of the job), and WeChat's delivery report arrives twice
// at once, possibly before SENT is recorded (the push is retried until it
// matches, as follow-event does). Every ledger write's answer is lost once
// and retried by the SDK. Whatever the interleaving, each job ends in one
// final state and the bus carries exactly one distinct event id per change.
func TestAttackLedgerRacesYieldOneEventPerChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const jobs = 8
	var rules []awsfault.Rule
	for i := range jobs {
		rules = append(rules, awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: fmt.Sprintf(`"race-%02d"`, i), Count: 2, Error: awsfault.LostAnswer})
	}
	lossy := awsfault.ForTest(t, awstest.Endpoint(), rules...)
	ledger := notify.NewLedger(dynamodb.NewFromConfig(fast(lossy.Config(awstest.Config(nil)))), f.e.Table)
	sender := &notify.Sender{Ledger: ledger, Log: f.e.Logger("send-worker"), Metrics: f.e.Metrics("send-worker"), Unrecorded: notify.NewUnrecorded()}

	var wg sync.WaitGroup
	errs := make(chan error, 4*jobs)
	for i := range jobs {
		job, msgid := fmt.Sprintf("race-%02d", i), fmt.Sprintf("%d", 5000+i)
		wg.Go(func() {
			c, err := ledger.Claim(ctx, job, "uid-"+job, time.Now().Add(time.Minute))
			if err != nil {
				errs <- fmt.Errorf("claim %s: %w", job, err)
				return
			}
			if c.State != notify.Claimed {
				return // Record won
			}
			if err := ledger.SettleSent(ctx, job, c, contract.Template, appid, msgid); err != nil && !errors.Is(err, notify.ErrClaimLost) {
				errs <- fmt.Errorf("settle %s: %w", job, err)
			}
		})
		wg.Go(func() {
			res := sender.Reject(ctx, job, errors.New("a copy of the job broke the contract"), notify.Attempt{Lease: time.Now().Add(time.Minute)})
			if res.Err != nil {
				errs <- fmt.Errorf("reject %s: %w", job, res.Err)
			}
		})
		for range 2 {
			wg.Go(func() {
				// follow-event retries an early report until it matches or
				// the job is settled otherwise.
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
					ok, err := f.ledger.Report(ctx, appid, msgid, "success")
					if err != nil {
						errs <- fmt.Errorf("report %s: %w", job, err)
						return
					}
					if ok {
						return
					}
					if e, found, _ := f.ledger.Get(ctx, job); found && e.Final() && e.Status != notify.Sent {
						return // FAILED won: no report will ever match
					}
					time.Sleep(5 * time.Millisecond)
				}
				errs <- fmt.Errorf("report %s: never matched", job)
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	f.publish()
	evs := f.delivered()
	exactlyOnce(t, changesOf(t, f.rawRecords()), evs)
	final := map[string]contract.Status{}
	for _, ev := range evs {
		final[ev.Detail.JobID] = ev.Detail.Status
	}
	won := map[contract.Status]int{}
	for i := range jobs {
		job := fmt.Sprintf("race-%02d", i)
		e, _, err := f.ledger.Get(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if final[job] != e.Status {
			t.Errorf("%s: the ledger says %s, the last event %s", job, e.Status, final[job])
		}
		won[e.Status]++
	}
	var fired int
	for _, r := range lossy.List() {
		fired += r.Fired
	}
	t.Logf("final states %v, %d answers lost, %d events", won, fired, len(evs))
}

// Jobs rejected as invalid are recorded under whatever id they carried,
// and their FAILED events must still be events the schema describes: an
// id of odd characters, and one longer than the contract's 128 (the very
// reason it was rejected).
func TestAttackRejectedJobsPublishEventsTheSchemaDescribes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	sender := &notify.Sender{Ledger: f.ledger, Log: f.e.Logger("send-worker"), Metrics: f.e.Metrics("send-worker"), Unrecorded: notify.NewUnrecorded()}
	ids := []string{
		"odd \"quoted\" #SEND#/..\\n\n\t\u0001 id",
		strings.Repeat("订", contract.MaxIDLength),
		strings.Repeat("x", contract.MaxIDLength+1),
	}
	for _, id := range ids {
		res := sender.Reject(ctx, id, errors.New("id: must be at most 128 characters"), notify.Attempt{Lease: time.Now().Add(time.Minute)})
		if res.Status != notify.Failed || res.Err != nil || res.Retry != nil {
			t.Fatalf("reject %.20q…: %+v", id, res)
		}
	}
	f.publish()
	evs := f.delivered() // each held to the schema
	raw := f.rawRecords()
	exactlyOnce(t, changesOf(t, raw), evs)
	if len(evs) != len(ids) {
		t.Fatalf("%d events for %d rejected jobs", len(evs), len(ids))
	}
	// Record's UpdateItem creates each item: moto streams the bare key as
	// an INSERT of its own before the item's. Fed on its own, unfiltered,
	// it is nothing to publish and nothing to fail.
	for _, r := range raw {
		if _, has := r.Change.NewImage["status"]; has {
			continue
		}
		resp, err := f.h.Handle(ctx, events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{r}})
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("a bare-key %s: %+v %v", r.EventName, resp, err)
		}
	}
	if got := f.delivered(); len(got) != 0 {
		t.Fatalf("bare-key records published %v", statuses(got))
	}
}
