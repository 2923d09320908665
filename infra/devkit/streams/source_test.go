package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/streams"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// fixture is a table with a NEW_AND_OLD_IMAGES stream, and a handler that
// records every batch it is given.
type fixture struct {
	t      *testing.T
	db     *dynamodb.Client
	table  string
	stream string

	mu      sync.Mutex
	batches [][]events.DynamoDBEventRecord
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, db: dynamodb.NewFromConfig(awstest.Config(nil)), table: awstest.Name(t, "streams")}
	out, err := f.db.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(f.table),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		StreamSpecification:  &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: ddbtypes.StreamViewTypeNewAndOldImages},
	})
	// A loaded moto can be too slow to answer the first attempt, which
	// made the table: the SDK's retry then finds it there (as awstest.Table).
	var inUse *ddbtypes.ResourceInUseException
	if errors.As(err, &inUse) {
		var d *dynamodb.DescribeTableOutput
		if d, err = f.db.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(f.table)}); err == nil {
			out = &dynamodb.CreateTableOutput{TableDescription: d.Table}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &f.table}) })
	f.stream = aws.ToString(out.TableDescription.LatestStreamArn)
	return f
}

func (f *fixture) put(pk string, n int) {
	f.t.Helper()
	_, err := f.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &f.table, Item: map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: pk}, "n": &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(n)},
	}})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) remove(pk string) {
	f.t.Helper()
	if _, err := f.db.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: &f.table, Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}}}); err != nil {
		f.t.Fatal(err)
	}
}

// source is a Source on the fixture's stream whose handler records each
// batch, then answers what answer says (nil: success).
func (f *fixture) source(tr cfn.StreamTrigger, answer func(events.DynamoDBEvent) (events.DynamoDBEventResponse, error)) *streams.Source {
	if tr.StartingPosition == "" {
		tr.StartingPosition = "TRIM_HORIZON"
	}
	return &streams.Source{
		AWS: awstest.Config(nil), StreamARN: f.stream, Trigger: tr, RetryDelay: time.Millisecond, Poll: 10 * time.Millisecond,
		FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:Test",
		Handler: func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
			f.mu.Lock()
			f.batches = append(f.batches, slices.Clone(ev.Records))
			f.mu.Unlock()
			if answer == nil {
				return events.DynamoDBEventResponse{}, nil
			}
			return answer(ev)
		},
	}
}

// keys is each recorded batch as its records' pk values.
func (f *fixture) keys() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]string
	for _, b := range f.batches {
		var ks []string
		for _, r := range b {
			ks = append(ks, r.Change.Keys["pk"].String())
		}
		out = append(out, ks)
	}
	return out
}

func drain(t *testing.T, s *streams.Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
}

func names(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}

func TestDrainHandsOverInOrderInBatches(t *testing.T) {
	f := newFixture(t)
	for i := 1; i <= 25; i++ {
		f.put(fmt.Sprintf("k%02d", i), i)
	}
	s := f.source(cfn.StreamTrigger{BatchSize: 10}, nil)
	drain(t, s)
	want := [][]string{names("k", 1, 10), names("k", 11, 20), names("k", 21, 25)}
	if got := f.keys(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches = %v, want %v", got, want)
	}
	first := f.batches[0][0]
	if first.EventName != "INSERT" || first.EventSource != "aws:dynamodb" || first.EventSourceArn != f.stream ||
		first.Change.NewImage["n"].Number() != "1" || first.Change.OldImage != nil || first.Change.StreamViewType != "NEW_AND_OLD_IMAGES" {
		t.Errorf("first record = %+v", first)
	}

	// Drain again: nothing new, nothing handed over twice; then a change
	// and a removal arrive with their images.
	drain(t, s)
	f.put("k01", 100)
	f.remove("k02")
	drain(t, s)
	got := f.batches[len(f.batches)-1]
	if len(f.batches) != 4 || len(got) != 2 || got[0].EventName != "MODIFY" || got[0].Change.OldImage["n"].Number() != "1" ||
		got[0].Change.NewImage["n"].Number() != "100" || got[1].EventName != "REMOVE" || got[1].Change.NewImage != nil {
		t.Fatalf("after the change: %d batches, last %+v", len(f.batches), got)
	}
}

func TestLatestStartsAfterWhatIsThere(t *testing.T) {
	f := newFixture(t)
	f.put("old", 1)
	s := f.source(cfn.StreamTrigger{StartingPosition: "LATEST"}, nil)
	drain(t, s)
	f.put("new", 2)
	drain(t, s)
	if got := f.keys(); !slices.EqualFunc(got, [][]string{{"new"}}, slices.Equal) {
		t.Fatalf("batches = %v, want only the write after the start", got)
	}
}

func TestFilterCriteria(t *testing.T) {
	f := newFixture(t)
	f.put("SEND#a", 1)
	f.put("PERSON#b", 2)
	f.put("SEND#c", 3)
	f.put("SEND#a", 4) // MODIFY
	f.remove("SEND#c") // REMOVE: filtered out by eventName
	ledgerChanges := `{"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "SEND#"}]}}}}`
	s := f.source(cfn.StreamTrigger{Filters: []string{ledgerChanges}}, nil)
	drain(t, s)
	if got := f.keys(); !slices.EqualFunc(got, [][]string{{"SEND#a", "SEND#c", "SEND#a"}}, slices.Equal) {
		t.Fatalf("batches = %v", got)
	}

	// Filters are alternatives: a record passes when one matches.
	g := newFixture(t)
	g.put("SEND#a", 1)
	g.put("PERSON#b", 2)
	g.put("OTHER#c", 3)
	s = g.source(cfn.StreamTrigger{Filters: []string{`{"dynamodb": {"Keys": {"pk": {"S": ["PERSON#b"]}}}}`, `{"dynamodb": {"NewImage": {"n": {"N": ["3"]}}}}`}}, nil)
	drain(t, s)
	if got := g.keys(); !slices.EqualFunc(got, [][]string{{"PERSON#b", "OTHER#c"}}, slices.Equal) {
		t.Fatalf("batches = %v", got)
	}
}

func TestUnsupportedPatternStopsTheSource(t *testing.T) {
	f := newFixture(t)
	s := f.source(cfn.StreamTrigger{Filters: []string{`{"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 1]}]}}}}`}}, nil)
	err := s.Run(context.Background())
	if !errors.Is(err, streams.ErrPattern) {
		t.Fatalf("Run = %v, want ErrPattern", err)
	}
	s = f.source(cfn.StreamTrigger{StartingPosition: "AT_TIMESTAMP"}, nil)
	if err := s.Drain(context.Background()); err == nil {
		t.Fatal("a starting position DynamoDB streams lack must be refused")
	}
}

// failOn answers a partial failure naming the records whose pk is in bad,
// the first time each is seen.
func failOnce(bad ...string) func(events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var mu sync.Mutex
	failed := map[string]bool{}
	return func(ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		var resp events.DynamoDBEventResponse
		for _, r := range ev.Records {
			pk := r.Change.Keys["pk"].String()
			if slices.Contains(bad, pk) && !failed[pk] {
				failed[pk] = true
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: r.Change.SequenceNumber})
			}
		}
		return resp, nil
	}
}

func TestPartialFailureRetriesFromTheLowestFailedRecord(t *testing.T) {
	f := newFixture(t)
	for i := 1; i <= 5; i++ {
		f.put(fmt.Sprintf("k%02d", i), i)
	}
	s := f.source(cfn.StreamTrigger{ReportBatchItemFailures: true, MaximumRetryAttempts: -1}, failOnce("k05", "k03"))
	drain(t, s)
	want := [][]string{names("k", 1, 5), names("k", 3, 5)}
	if got := f.keys(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches = %v, want %v (retried from k03, the lowest failure)", got, want)
	}

	// Without ReportBatchItemFailures on the trigger, Lambda ignores the
	// answer: the batch succeeded.
	g := newFixture(t)
	g.put("k01", 1)
	g.put("k02", 2)
	s = g.source(cfn.StreamTrigger{}, failOnce("k01"))
	drain(t, s)
	if got := g.keys(); len(got) != 1 {
		t.Fatalf("batches = %v, want one", got)
	}
}

func TestUnknownItemIdentifierFailsTheWholeBatch(t *testing.T) {
	f := newFixture(t)
	f.put("k01", 1)
	f.put("k02", 2)
	calls := 0
	s := f.source(cfn.StreamTrigger{ReportBatchItemFailures: true, MaximumRetryAttempts: 1}, func(events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		calls++
		if calls == 1 {
			return events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{{ItemIdentifier: ""}}}, nil
		}
		return events.DynamoDBEventResponse{}, nil
	})
	drain(t, s)
	want := [][]string{{"k01", "k02"}, {"k01", "k02"}}
	if got := f.keys(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches = %v, want %v", got, want)
	}
}

// onFailureQueue makes a queue and returns its URL and a function that
// reads the invocation records on it.
func onFailureQueue(t *testing.T) (string, func() []streams.Invocation) {
	client := sqs.NewFromConfig(awstest.Config(nil))
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name(t, "onfailure"))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	return *out.QueueUrl, func() []streams.Invocation {
		got, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: out.QueueUrl, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		var invs []streams.Invocation
		for _, m := range got.Messages {
			var inv streams.Invocation
			if err := json.Unmarshal([]byte(*m.Body), &inv); err != nil {
				t.Fatalf("on-failure record %s: %v", *m.Body, err)
			}
			invs = append(invs, inv)
		}
		return invs
	}
}

// poison fails any batch holding one of the pk values.
func poison(pks ...string) func(events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	return func(ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		for _, r := range ev.Records {
			if slices.Contains(pks, r.Change.Keys["pk"].String()) {
				return events.DynamoDBEventResponse{}, errors.New("poison")
			}
		}
		return events.DynamoDBEventResponse{}, nil
	}
}

func TestRetriesThenTheOnFailureRecord(t *testing.T) {
	f := newFixture(t)
	url, received := onFailureQueue(t)
	f.put("k01", 1)
	f.put("k02", 2)
	s := f.source(cfn.StreamTrigger{BatchSize: 2, MaximumRetryAttempts: 2}, poison("k02"))
	s.OnFailureURL = url
	drain(t, s)
	f.put("k03", 3) // the stream goes on past the records given up on
	drain(t, s)

	want := [][]string{{"k01", "k02"}, {"k01", "k02"}, {"k01", "k02"}, {"k03"}}
	if got := f.keys(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches = %v, want %v (the first try and 2 retries)", got, want)
	}
	invs := received()
	if len(invs) != 1 {
		t.Fatalf("on-failure records = %+v, want 1", invs)
	}
	inv, batch := invs[0], f.batches[0]
	if inv.RequestContext.Condition != "RetryAttemptsExhausted" || inv.RequestContext.ApproximateInvokeCount != 3 ||
		inv.RequestContext.FunctionARN != s.FunctionARN || inv.ResponseContext.FunctionError != "Unhandled" || inv.Version != "1.0" {
		t.Errorf("invocation record = %+v", inv)
	}
	b := inv.Batch
	if b.StreamARN != f.stream || b.ShardID == "" || b.BatchSize != 2 || b.StartSequenceNumber != batch[0].Change.SequenceNumber ||
		b.EndSequenceNumber != batch[1].Change.SequenceNumber || b.FirstArrival == "" {
		t.Errorf("DDBStreamBatchInfo = %+v", b)
	}

	// No retries and a partial failure: the records from the failed one on
	// are given up on at once, the function did not fail.
	g := newFixture(t)
	for i := 1; i <= 3; i++ {
		g.put(fmt.Sprintf("k%02d", i), i)
	}
	s = g.source(cfn.StreamTrigger{ReportBatchItemFailures: true}, failOnce("k02"))
	s.OnFailureURL = url
	drain(t, s)
	invs = received()
	if len(g.batches) != 1 || len(invs) != 1 {
		t.Fatalf("%d batches, on-failure records %+v; want 1 and 1", len(g.batches), invs)
	}
	inv = invs[0]
	if inv.Batch.BatchSize != 2 || inv.Batch.StartSequenceNumber != g.batches[0][1].Change.SequenceNumber ||
		inv.RequestContext.ApproximateInvokeCount != 1 || inv.ResponseContext.FunctionError != "" {
		t.Errorf("invocation record = %+v", inv)
	}
}

// TestOnFailureQueueDown: while the on-failure record cannot be sent, the
// shard waits; once it can, it is sent once and the handler is not called
// again for the records given up on.
func TestOnFailureQueueDown(t *testing.T) {
	f := newFixture(t)
	url, received := onFailureQueue(t)
	f.put("k01", 1)
	f.put("k02", 2)
	s := f.source(cfn.StreamTrigger{BatchSize: 1}, poison("k01"))
	s.OnFailureURL = url
	// The SDK makes 3 attempts: all of them fail.
	proxy := awsfault.ForTest(t, awstest.Endpoint(), awsfault.Rule{Service: awsfault.SQS, Operation: "SendMessage", Count: 3, Error: awsfault.InternalServerError})
	s.AWS = proxy.Config(s.AWS)
	if err := s.Drain(context.Background()); err == nil {
		t.Fatal("Drain = nil while the on-failure queue fails")
	}
	drain(t, s)
	if got := f.keys(); !slices.EqualFunc(got, [][]string{{"k01"}, {"k02"}}, slices.Equal) {
		t.Fatalf("batches = %v, want k01 once (given up on), then k02", got)
	}
	if invs := received(); len(invs) != 1 || invs[0].Batch.StartSequenceNumber != f.batches[0][0].Change.SequenceNumber {
		t.Fatalf("on-failure records = %+v", invs)
	}
}

func TestBisectIsolatesTheFailingRecord(t *testing.T) {
	f := newFixture(t)
	url, received := onFailureQueue(t)
	for i := 1; i <= 8; i++ {
		f.put(fmt.Sprintf("k%02d", i), i)
	}
	s := f.source(cfn.StreamTrigger{BatchSize: 8, Bisect: true, MaximumRetryAttempts: 3}, poison("k06"))
	s.OnFailureURL = url
	drain(t, s)

	// Every record but k06 succeeds exactly once, in stream order.
	var succeeded []string
	for _, b := range f.keys() {
		if !slices.Contains(b, "k06") {
			succeeded = append(succeeded, b...)
		}
	}
	if want := slices.Concat(names("k", 1, 5), names("k", 7, 8)); !slices.Equal(succeeded, want) {
		t.Fatalf("succeeded = %v, want %v; batches %v", succeeded, want, f.keys())
	}
	invs := received()
	if len(invs) != 1 || invs[0].Batch.BatchSize != 1 || invs[0].Batch.StartSequenceNumber != f.batches[0][5].Change.SequenceNumber {
		t.Fatalf("on-failure records = %+v, want k06 alone", invs)
	}
}

func TestAPanicIsAFunctionError(t *testing.T) {
	f := newFixture(t)
	f.put("k01", 1)
	panicked := false
	s := f.source(cfn.StreamTrigger{MaximumRetryAttempts: -1}, func(events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		if !panicked {
			panicked = true
			panic("crash after the side effect")
		}
		return events.DynamoDBEventResponse{}, nil
	})
	drain(t, s)
	if got := f.keys(); len(got) != 2 {
		t.Fatalf("batches = %v, want the crashed one retried", got)
	}
}

// TestConcurrentWritersEachRecordOnce writes from many goroutines while
// Run polls: each record is handed over exactly once, each writer's in the
// order written.
func TestConcurrentWritersEachRecordOnce(t *testing.T) {
	f := newFixture(t)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := f.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &f.table, Item: map[string]ddbtypes.AttributeValue{
					"pk": &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("w%d-%02d", w, i)},
				}})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	s := f.source(cfn.StreamTrigger{BatchSize: 7}, nil)
	s.Poll = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	wg.Wait()
	seen := map[string]int{}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		clear(seen)
		for _, b := range f.keys() {
			for _, k := range b {
				seen[k]++
			}
		}
		if len(seen) == writers*each || time.Now().After(deadline) {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct records handed over, want %d", len(seen), writers*each)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s handed over %d times", k, n)
		}
	}
	// Per writer, in the order written.
	last := map[string]string{}
	for _, b := range f.keys() {
		for _, k := range b {
			w := k[:2]
			if k < last[w] {
				t.Errorf("%s after %s", k, last[w])
			}
			last[w] = k
		}
	}
}
