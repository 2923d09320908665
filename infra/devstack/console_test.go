package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/moto"
	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/notify"
)

var sharedMoto struct {
	once sync.Once
	cfg  aws.Config
	err  error
}

// testAWS is the moto the package's tests share, started once: the console
// tests' tables and queues, and the stacks of testStack.
func testAWS(t testing.TB) aws.Config {
	t.Helper()
	sharedMoto.once.Do(func() {
		var srv *moto.Server
		if srv, sharedMoto.err = moto.Start(); sharedMoto.err != nil {
			return
		}
		sharedMoto.cfg = aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Credentials: credentials.NewStaticCredentialsProvider("console", "console", "")}
	})
	if sharedMoto.err != nil {
		t.Fatal(sharedMoto.err)
	}
	return sharedMoto.cfg
}

// consoleTable creates the template's table for the test on moto.
func consoleTable(t *testing.T, db *dynamodb.Client) string {
	t.Helper()
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", "_", "-", "'", "").Replace(t.Name())
	def, err := tpl.Table("Table", name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateTable(context.Background(), def.Create); err != nil {
		t.Fatal(err)
	}
	return name
}

func putItem(t *testing.T, db *dynamodb.Client, table string, item ddb.Item) {
	t.Helper()
	if _, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &table, Item: item}); err != nil {
		t.Fatal(err)
	}
}

func putLedgerEntry(t *testing.T, db *dynamodb.Client, table string, e notify.Entry) {
	t.Helper()
	item, err := attributevalue.MarshalMap(e)
	if err != nil {
		t.Fatal(err)
	}
	item["pk"] = ddb.S(notify.LedgerPrefix + e.JobID)
	putItem(t, db, table, item)
}

// sweepAll reads the table until the view has read it whole, and returns
// how many pages that took.
func sweepAll(t *testing.T, v *ledgerView) int {
	t.Helper()
	for pages := 1; pages < 1000; pages++ {
		if err := v.step(context.Background()); err != nil {
			t.Fatal(err)
		}
		v.mu.Lock()
		done := v.sweep == nil
		v.mu.Unlock()
		if done {
			return pages
		}
	}
	t.Fatal("the sweep does not end")
	return 0
}

// pageAll follows the API's cursor from the newest job to the oldest.
func pageAll(t *testing.T, v *ledgerView, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for range 1000 {
		p, err := v.page(cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) > limit || (p.Next != "" && len(p.Entries) != limit) {
			t.Fatalf("page of %d entries (limit %d), next %q", len(p.Entries), limit, p.Next)
		}
		for _, e := range p.Entries {
			ids = append(ids, e.JobID)
		}
		if cursor = p.Next; cursor == "" {
			return ids
		}
	}
	t.Fatal("the pages do not end")
	return nil
}

func TestLedgerView(t *testing.T) {
	cfg := testAWS(t)
	db := dynamodb.NewFromConfig(cfg)
	table := consoleTable(t, db)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	// 40 jobs among 3 MB of other items (a backfill's people): DynamoDB
	// returns them over several 1 MB scan pages, most of whose items are
	// not the ledger's.
	const jobs = 40
	var want []string
	for i := range jobs {
		id := fmt.Sprintf("job-%02d", i)
		putLedgerEntry(t, db, table, notify.Entry{JobID: id, Status: notify.Delivered, Channel: notify.Template, Attempts: 1,
			CreatedAt: base, UpdatedAt: base.Add(time.Duration(i) * time.Second)})
		want = append(want, id)
		if i%4 == 0 {
			putItem(t, db, table, ddb.Item{"pk": ddb.S(fmt.Sprintf("PERSON#%02d", i)), "padding": ddb.S(strings.Repeat("x", 300<<10))})
		}
	}
	slices.Reverse(want) // newest first

	t.Run("every job over 1 MB pages, newest first", func(t *testing.T) {
		v := newLedgerView(db, table, 0)
		if err := v.step(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p, _ := v.page("", 1000); p.Complete || p.Total >= jobs {
			t.Fatalf("the first 1 MB page held %d of %d jobs (complete %v): the table is too small to test paging", p.Total, jobs, p.Complete)
		}
		pages := sweepAll(t, v)
		if got := pageAll(t, v, 7); !slices.Equal(got, want) {
			t.Errorf("after %d more pages, the API pages gave\n%q, want\n%q", pages, got, want)
		}
		if p, _ := v.page("", 5); !p.Complete || p.Total != jobs || p.Entries[0].JobID != "job-39" || p.Entries[0].Status != "DELIVERED" {
			t.Errorf("first page = %+v", p)
		}
	})

	t.Run("small scan pages", func(t *testing.T) {
		v := newLedgerView(db, table, 3)
		if pages := sweepAll(t, v); pages < 15 {
			t.Errorf("swept in %d pages of 3 items", pages)
		}
		if got := pageAll(t, v, 40); !slices.Equal(got, want) {
			t.Errorf("got %q", got)
		}
	})

	t.Run("outcome events show before the sweep comes back", func(t *testing.T) {
		putLedgerEntry(t, db, table, notify.Entry{JobID: "job-gone", Status: notify.Expired, CreatedAt: base, UpdatedAt: base})
		v := newLedgerView(db, table, 3)
		sweepAll(t, v)
		now := time.Now()
		// A job the sweep has not read yet, and a late event of an old state.
		v.observe(contract.Outcome{JobID: "job-new", Status: notify.Failed, Reason: "template: the person blocked the account", At: now})
		v.observe(contract.Outcome{JobID: "job-39", Status: notify.Sent, At: base})
		p, _ := v.page("", 2)
		if p.Entries[0].JobID != "job-new" || p.Entries[0].Reason == "" || p.Entries[1].JobID != "job-39" || p.Entries[1].Status != "DELIVERED" {
			t.Fatalf("after the events: %+v", p.Entries)
		}
		// A sweep that began before the job was written does not drop it; a
		// job gone from the table goes from the view.
		if got := pageAll(t, v, 100); !slices.Contains(got, "job-gone") {
			t.Fatalf("before the delete: %q", got)
		}
		if _, err := db.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: &table, Key: ddb.Key(notify.LedgerPrefix + "job-gone")}); err != nil {
			t.Fatal(err)
		}
		v.now = func() time.Time { return now.Add(-time.Minute) }
		sweepAll(t, v)
		got := pageAll(t, v, 100)
		if got[0] != "job-new" || slices.Contains(got, "job-gone") || len(got) != jobs+1 {
			t.Errorf("after a whole sweep: %q", got)
		}
	})

	t.Run("the API", func(t *testing.T) {
		s := &Stack{view: &consoleView{ledger: newLedgerView(db, table, 0)}}
		get := func(query string) (int, ledgerPage) {
			rec := httptest.NewRecorder()
			s.handle(s.ledgerAPI)(rec, httptest.NewRequest("GET", "/_dev/api/ledger"+query, nil))
			var p ledgerPage
			json.Unmarshal(rec.Body.Bytes(), &p)
			return rec.Code, p
		}
		for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?cursor=bm90IGEgY3Vyc29y"} {
			if code, _ := get(q); code != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", q, code)
			}
		}
		// Each call reads one more page, so a client paging from the newest
		// finds every job once the view has read the table whole.
		var p ledgerPage
		for code := 0; !p.Complete; {
			if code, p = get("?limit=1000"); code != http.StatusOK {
				t.Fatalf("%d", code)
			}
		}
		code, first := get("?limit=3")
		_, second := get("?limit=3&cursor=" + first.Next)
		if code != http.StatusOK || len(first.Entries) != 3 || second.Entries[0].JobID != want[3] || first.Total != jobs {
			t.Errorf("pages %+v then %+v", first, second)
		}
	})
}

// outcomeEventJSON is the EventBridge event an SQS target receives for
// job's change to status, at.
func outcomeEventJSON(t *testing.T, job string, status contract.Status, at time.Time) string {
	t.Helper()
	o, ok := notify.Outcome(notify.Entry{}, notify.Entry{JobID: job, Status: status, Channel: notify.Template, Attempts: 1, CreatedAt: at, UpdatedAt: at})
	if !ok {
		t.Fatalf("no outcome for %s", status)
	}
	b, err := json.Marshal(contract.Event{ID: "eb-" + o.EventID, DetailType: contract.DetailType(status), Source: contract.Source, Time: at, Detail: o})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var quietLog = slog.New(slog.DiscardHandler)

func TestOutcomeFeed(t *testing.T) {
	cfg := testAWS(t)
	client := sqs.NewFromConfig(cfg)
	q, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("console-outcomes")})
	if err != nil {
		t.Fatal(err)
	}
	url := *q.QueueUrl
	var mu sync.Mutex
	var seen []string
	f := &outcomeFeed{client: client, url: url, keep: 3, seen: func(o contract.Outcome) { mu.Lock(); seen = append(seen, o.JobID+" "+string(o.Status)); mu.Unlock() }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.run(ctx, quietLog) }()

	at := time.Now().Add(-1500 * time.Millisecond)
	bodies := []string{
		outcomeEventJSON(t, "job-1", notify.Sent, at), outcomeEventJSON(t, "job-1", notify.Delivered, at),
		outcomeEventJSON(t, "job-2", notify.Failed, at), `{"source":"someone-else","detail":{}}`, outcomeEventJSON(t, "job-3", notify.Blocked, at),
	}
	for _, b := range bodies {
		if _, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the feed to read every message", func() bool { return f.view().Received == len(bodies) })
	v := f.view()
	if !v.Enabled || len(v.Events) != 3 || v.Undecodable != 1 || !strings.Contains(v.LastError, "someone-else") {
		t.Errorf("view = %+v", v)
	}
	for _, e := range v.Events {
		if e.LatencyMS < 1500 || e.DetailType != contract.DetailType(e.Detail.Status) || e.Detail.EventID == "" {
			t.Errorf("event %+v", e)
		}
	}
	mu.Lock()
	if slices.Sort(seen); !slices.Equal(seen, []string{"job-1 DELIVERED", "job-1 SENT", "job-2 FAILED", "job-3 BLOCKED"}) {
		t.Errorf("the ledger view was told of %q", seen)
	}
	mu.Unlock()
	if n := awstest.Depth(t, client, url); n != 0 {
		t.Errorf("%d messages left on the queue", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the feed does not stop with its context")
	}

	off := (&outcomeFeed{}).view()
	if off.Enabled || off.Events != nil {
		t.Errorf("without a queue: %+v", off)
	}
}

// TestConsoleOutcomes: in a running devstack, an event on the outcome bus
// reaches the console's outcome panel through its own rule and queue, and
// the job shows in the ledger panel with its reason before the ledger's
// sweep reads it.
func TestConsoleOutcomes(t *testing.T) {
	s := startStack(t)
	if s.ConsoleOutcomeQueueURL == "" {
		t.Fatal("the devstack has no console outcome queue")
	}
	at := time.Now().Add(-200 * time.Millisecond)
	o, _ := notify.Outcome(notify.Entry{}, notify.Entry{JobID: "console-e2e", Status: notify.Undeliverable, Attempts: 1,
		Reason: "template: does not follow the official account", CreatedAt: at, UpdatedAt: at})
	detail, _ := json.Marshal(o)
	out, err := eventbridge.NewFromConfig(s.aws).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		EventBusName: aws.String(s.res.refs[outcomeBus]), Source: aws.String(contract.Source),
		DetailType: aws.String(contract.DetailType(o.Status)), Detail: aws.String(string(detail)),
	}}})
	if err != nil || out.FailedEntryCount > 0 {
		t.Fatalf("put events: %v %+v", err, out)
	}
	var st struct {
		Ledger   []ledgerEntry `json:"ledger"`
		Outcomes outcomesView  `json:"outcomes"`
	}
	eventually(t, "the event in the console's state", func() bool {
		resp, err := http.Get(s.APIURL + "/_dev/api/state")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&st) == nil && len(st.Outcomes.Events) > 0
	})
	ev := st.Outcomes.Events[0]
	if !st.Outcomes.Enabled || ev.Detail.EventID != o.EventID || ev.DetailType != "Notification Undeliverable" || ev.LatencyMS < 200 {
		t.Errorf("outcomes = %+v", st.Outcomes)
	}
	if len(st.Ledger) == 0 || st.Ledger[0].JobID != "console-e2e" || st.Ledger[0].Reason != o.Reason {
		t.Errorf("ledger = %+v", st.Ledger)
	}
}
