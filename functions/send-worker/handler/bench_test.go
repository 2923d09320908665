package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/notify"
)

// batchEvent is an SQS event of jobs as the event source mapping hands it
// over (the queue's receive and delete are the mapping's, not the worker's).
func batchEvent(t testing.TB, jobs []notify.Job) events.SQSEvent {
	var ev events.SQSEvent
	for i, j := range jobs {
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: fmt.Sprintf("m%d", i), Body: string(b), EventSource: "aws:sqs",
			Attributes: map[string]string{"ApproximateReceiveCount": "1"}})
	}
	return ev
}

// followers makes n people who follow the official account.
func (e *env) followers(t testing.TB, n int) []sandbox.Person {
	out := make([]sandbox.Person, n)
	for i := range out {
		out[i] = e.follower(t)
	}
	return out
}

var jobSeq int

// batchOf is n template jobs with fresh ids, to people in turn.
func batchOf(people []sandbox.Person, n int) []notify.Job {
	jobs := make([]notify.Job, n)
	for i := range jobs {
		jobSeq++
		p := people[jobSeq%len(people)]
		jobs[i] = job(fmt.Sprintf("bench-%d", jobSeq), notify.Recipient{UnionID: p.UnionID}, notify.Template)
	}
	return jobs
}

// runBatch hands one batch to the worker with the given concurrency and
// returns its wall time, failing if any job was not sent.
func (e *env) runBatch(t testing.TB, jobs []notify.Job, concurrency int) time.Duration {
	e.h.Concurrency = concurrency
	ev := batchEvent(t, jobs)
	start := time.Now()
	resp, err := e.h.Handle(context.Background(), ev)
	took := time.Since(start)
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("batch: %v, %d failures\n%s", err, len(resp.BatchItemFailures), e.logs.String())
	}
	return took
}

// How much faster a batch is than one by one is a figure, not a test:
// BenchmarkBatchOf10 reports it (make bench). That the worker sends a
// batch's jobs at once, up to its bound, is queue.Batch's, tested there.

// TestTwoWritesPerDeliveredMessage: the claim and the SENT record, nothing
// else (reads are the recipient's marker and person).
func TestTwoWritesPerDeliveredMessage(t *testing.T) {
	e := newEnv(t)
	// Two followers, five messages each: the count is per message.
	people := e.followers(t, 2)
	e.counter.Counts()
	e.runBatch(t, batchOf(people, 10), DefaultConcurrency)
	c := e.counter.Counts()
	writes := c["PutItem"] + c["UpdateItem"] + c["DeleteItem"] + c["TransactWriteItems"] + c["BatchWriteItem"]
	if writes != 20 {
		t.Fatalf("10 delivered messages cost %d writes (%v), want 20", writes, c)
	}
}

// BenchmarkBatchOf10 sends batches of 10 template messages with 100 ms of
// injected WeChat latency, through the worker (10 at once) and one by one,
// side by side in each iteration, and the worker's batch without latency
// (the store's share: moto serves DynamoDB one request at a time).
func BenchmarkBatchOf10(b *testing.B) {
	e := newEnv(b)
	people := e.followers(b, 20)
	e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/template/send", Latency: 100 * time.Millisecond})
	var worker, serial, bare time.Duration
	b.ResetTimer()
	for range b.N {
		worker += e.runBatch(b, batchOf(people, 10), DefaultConcurrency)
		serial += e.runBatch(b, batchOf(people, 10), 1)
		e.sb.ClearFaults()
		bare += e.runBatch(b, batchOf(people, 10), DefaultConcurrency)
		e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/message/template/send", Latency: 100 * time.Millisecond})
	}
	n := float64(b.N)
	b.ReportMetric(float64(bare.Milliseconds())/n, "worker-no-latency-ms/batch")
	b.ReportMetric(float64(worker.Milliseconds())/n, "worker-ms/batch")
	b.ReportMetric(float64(serial.Milliseconds())/n, "one-by-one-ms/batch")
	b.ReportMetric(float64(serial)/float64(worker), "speedup-x")
}

// BenchmarkThroughput is jobs per second through one worker against the
// sandbox with no latency, with DynamoDB requests per delivered message.
func BenchmarkThroughput(b *testing.B) {
	e := newEnv(b)
	people := e.followers(b, 20)
	e.counter.Counts()
	sent := 0
	b.ResetTimer()
	start := time.Now()
	for sent < b.N {
		n := min(10, b.N-sent)
		e.runBatch(b, batchOf(people, n), DefaultConcurrency)
		sent += n
	}
	took := time.Since(start)
	b.StopTimer()
	c := e.counter.Counts()
	b.ReportMetric(float64(sent)/took.Seconds(), "jobs/s")
	b.ReportMetric(float64(c["PutItem"]+c["UpdateItem"]+c["DeleteItem"]+c["TransactWriteItems"])/float64(sent), "ddb-writes/msg")
	b.ReportMetric(float64(c["GetItem"]+c["BatchGetItem"]+c["Query"])/float64(sent), "ddb-reads/msg")
}
