package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/streams"
	"wxbridge/shared/contract"
	"wxbridge/shared/notify"
)

// BenchmarkDevstack measures what a developer waits for and what the
// devstack costs: the built command's time to its ready line, and the
// resident memory of the devstack process (and of its moto) idle and after
// 1,000 notifications sent through the queue and the worker.
func BenchmarkDevstack(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "devstack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for range b.N {
		start := time.Now()
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "WXB_DEV_ADDR=127.0.0.1:0")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		api := ""
		sc := bufio.NewScanner(stdout)
		ready := regexp.MustCompile(`^ready in .*: open (http://[0-9.:]+)/_dev/`)
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				api = m[1]
				break
			}
		}
		toReady := time.Since(start)
		go io.Copy(io.Discard, stdout)
		if api == "" {
			cmd.Process.Kill()
			b.Fatal("no ready line")
		}
		time.Sleep(2 * time.Second) // let it settle
		idle, motoIdle := rss(cmd.Process.Pid), rss(motoOf(cmd.Process.Pid))

		sent := sendMany(b, api, 1000)
		after, motoAfter := rss(cmd.Process.Pid), rss(motoOf(cmd.Process.Pid))
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()

		b.ReportMetric(float64(toReady.Milliseconds()), "ms-to-ready")
		b.ReportMetric(idle, "MiB-rss-idle")
		b.ReportMetric(after, "MiB-rss-after-1000-sends")
		b.ReportMetric(motoIdle, "MiB-moto-rss-idle")
		b.ReportMetric(motoAfter, "MiB-moto-rss-after")
		b.ReportMetric(sent.Seconds(), "s-for-1000-sends")
	}
}

// sendMany makes one follower and sends them n template messages through
// the send queue, returning once every one reached the sandbox inbox.
func sendMany(b *testing.B, api string, n int) time.Duration {
	b.Helper()
	get := func(path string, v any) {
		resp, err := http.Get(api + path)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if err := decodeInto(resp.Body, v); err != nil {
			b.Fatal(err)
		}
	}
	var cfg DevConfig
	get("/_dev/config", &cfg)
	post := func(url string, v any) {
		resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			decodeInto(resp.Body, v)
		}
	}
	var p struct {
		ID string `json:"id"`
	}
	post(cfg.SandboxURL+"/sandbox/people", &p)
	post(cfg.SandboxURL+"/sandbox/people/"+p.ID+"/follow", nil)
	var st struct {
		People []struct {
			Known *struct {
				UID string `json:"uid"`
			} `json:"wxbridge"`
		} `json:"people"`
	}
	get("/_dev/api/state", &st)
	if len(st.People) != 1 || st.People[0].Known == nil {
		b.Fatalf("the follower is not known: %+v", st)
	}
	uid := st.People[0].Known.UID
	client := notify.NewClient(sqs.NewFromConfig(aws.Config{
		Region: cfg.Region, BaseEndpoint: aws.String(cfg.AWSEndpointURL),
		Credentials: credentials.NewStaticCredentialsProvider("bench", "bench", ""),
	}), cfg.SendQueueURL)
	jobs := make([]notify.Job, n)
	for i := range jobs {
		jobs[i] = notify.Job{ID: fmt.Sprintf("bench-%d", i), To: notify.Recipient{UID: uid},
			Template: &notify.TemplateMessage{TemplateID: demoTemplateID, Data: map[string]string{"thing1": "Tea", "character_string2": strconv.Itoa(i)}}}
	}
	start := time.Now()
	if _, err := client.EnqueueBatch(context.Background(), jobs); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		var inbox []any
		resp, err := http.Get(cfg.SandboxURL + "/sandbox/people/" + p.ID + "/inbox")
		if err == nil {
			decodeInto(resp.Body, &inbox)
			resp.Body.Close()
		}
		if len(inbox) >= n {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d messages arrived", len(inbox), n)
		}
	}
}

// rss is a process's resident memory in MiB (0 if it is gone).
func rss(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return float64(kb) / 1024
		}
	}
	return 0
}

// motoOf finds the moto server a devstack process started.
func motoOf(parent int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "serial.py") {
			continue
		}
		// Field 4 of /proc/<pid>/stat is the parent pid (after "pid (comm) state").
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(parent) {
			return pid
		}
	}
	return 0
}

func decodeInto(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// BenchmarkOutcomes measures outcome events against the ledger changes
// they come from: 1,000 template jobs through the in-process devstack
// (2,000 changes: SENT, then DELIVERED on the sandbox's report), once
// untouched and once with crashes between the ledger write and the
// publish. There, a fifth of the publisher's invocations die, half after
// their PutEvents calls went out (a panic before answering) and half
// midway (their time runs out with calls in flight); in another fifth the
// answer to a PutEvents call is lost on the wire (the SDK sends the
// events again); and up to every 500 ms the answer to a ledger write is
// lost, so that the send-worker or follow-event fails right after
// writing (the functions' AWS fault proxy, /_dev/faults). It reports distinct event
// ids per ledger change (target exactly 1), changes with no event,
// events with no change, duplicate deliveries, and the latency from the
// ledger write (the stream record's time) to the event's arrival in the
// outcome queue (SQS SentTimestamp).
func BenchmarkOutcomes(b *testing.B) {
	for _, bc := range []struct {
		name  string
		crash float64       // share of publisher invocations that die, and that lose a PutEvents answer
		lose  time.Duration // how often a ledger write's answer may be lost
	}{{"clean", 0, 0}, {"crashes", 0.2, 500 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				outcomeRun(b, 1000, bc.crash, bc.lose)
			}
		})
	}
}

// crasher is a function handler that dies on a share of its invocations,
// and loses the answer to a PutEvents call in as many others.
type crasher struct {
	h                lambda.Handler
	rate             float64
	faults           atomic.Pointer[awsfault.Proxy]
	panics, timeouts atomic.Int64
}

func (c *crasher) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	if p := c.faults.Load(); p != nil && rand.Float64() < c.rate {
		// Invocations of one shard come one at a time, and only the
		// publisher calls PutEvents: the rule fires in this one.
		p.Add(awsfault.Rule{Service: awsfault.EventBridge, Operation: "PutEvents", Count: 1, Error: awsfault.LostAnswer})
	}
	switch r := rand.Float64(); {
	case r < c.rate/2:
		c.panics.Add(1)
		c.h.Invoke(ctx, payload)
		panic("bench: the publisher dies after publishing, before answering")
	case r < c.rate:
		c.timeouts.Add(1)
		ctx, cancel := context.WithTimeout(ctx, rand.N(30*time.Millisecond))
		defer cancel()
		c.h.Invoke(ctx, payload)
		return nil, errors.New("bench: the publisher's time ran out")
	}
	return c.h.Invoke(ctx, payload)
}

// change is one ledger change a business is told of: a job reaching a
// status.
type change struct {
	job    string
	status contract.Status
}

// delivered is what the outcome queue brought for one change.
type delivered struct {
	ids   map[string]bool
	first time.Time // SentTimestamp of the first copy
	count int
}

func outcomeRun(b *testing.B, n int, crash float64, lose time.Duration) {
	inj := &crasher{rate: crash}
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", wrap: func(id string, h lambda.Handler) lambda.Handler {
		if id != "OutcomePublisherFunction" {
			return h
		}
		inj.h = h
		return inj
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	inj.faults.Store(s.faults)
	dc := s.devConfig()

	person := s.sb.CreatePerson(sandbox.PersonSpec{Nickname: "Bench"})
	if _, err := s.sb.Follow(context.Background(), person.ID, ""); err != nil {
		b.Fatal(err)
	}
	var uid string
	for deadline := time.Now().Add(30 * time.Second); uid == ""; time.Sleep(100 * time.Millisecond) {
		var st struct {
			People []struct {
				Known *struct {
					UID string `json:"uid"`
				} `json:"wxbridge"`
			} `json:"people"`
		}
		if resp, err := http.Get(s.URL + "/_dev/api/state"); err == nil {
			decodeInto(resp.Body, &st)
			resp.Body.Close()
		}
		if len(st.People) == 1 && st.People[0].Known != nil {
			uid = st.People[0].Known.UID
		}
		if time.Now().After(deadline) {
			b.Fatal("the follower was not linked")
		}
	}

	// The outcome queue, read as a business reads it.
	var mu sync.Mutex
	got := map[change]*delivered{}
	messages, last := 0, time.Now()
	readCtx, stopReading := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	q := businessSQS(dc)
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for readCtx.Err() == nil {
				out, err := q.ReceiveMessage(readCtx, &sqs.ReceiveMessageInput{QueueUrl: &dc.OutcomeQueueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
					MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp}})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				var del []sqstypes.DeleteMessageBatchRequestEntry
				mu.Lock()
				for i, m := range out.Messages {
					del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
					messages++
					last = time.Now()
					ev, err := contract.DecodeEvent([]byte(*m.Body))
					if err != nil {
						b.Errorf("outcome queue: %v", err)
						continue
					}
					c := change{ev.Detail.JobID, ev.Detail.Status}
					d := got[c]
					if d == nil {
						d = &delivered{ids: map[string]bool{}}
						got[c] = d
					}
					ms, _ := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64)
					if at := time.UnixMilli(ms); d.first.IsZero() || at.Before(d.first) {
						d.first = at
					}
					d.ids[ev.Detail.EventID] = true
					d.count++
				}
				mu.Unlock()
				q.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &dc.OutcomeQueueURL, Entries: del})
			}
		}()
	}

	// Ledger writes' answers lost on the wire while the jobs run: each
	// tick arms the next, unless the last one has not fired yet.
	loseCtx, stopLosing := context.WithCancel(context.Background())
	var losing sync.WaitGroup
	if lose > 0 {
		losing.Add(1)
		go func() {
			defer losing.Done()
			t := time.NewTicker(lose)
			defer t.Stop()
			for {
				select {
				case <-loseCtx.Done():
					return
				case <-t.C:
				}
				pending := false
				for _, r := range s.faults.List() {
					pending = pending || r.Service == awsfault.DynamoDB && r.Fired == 0
				}
				if !pending {
					s.faults.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "UpdateItem", Match: `"SEND#`, Count: 1, Error: awsfault.LostAnswer})
				}
			}
		}()
	}

	client := notify.NewClient(businessSQS(dc), dc.SendQueueURL)
	jobs := make([]notify.Job, n)
	for i := range jobs {
		jobs[i] = notify.Job{ID: fmt.Sprintf("outcome-%d-%d", time.Now().UnixNano(), i), To: notify.Recipient{UID: uid},
			Template: &notify.TemplateMessage{TemplateID: demoTemplateID, Data: map[string]string{"thing1": "Tea", "character_string2": strconv.Itoa(i)}}}
	}
	start := time.Now()
	mu.Lock()
	last = start
	mu.Unlock()
	if _, err := client.EnqueueBatch(context.Background(), jobs); err != nil {
		b.Fatal(err)
	}
	// Until every job has both events, or nothing has arrived for 20 s.
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		mu.Lock()
		done, idle := len(got) >= 2*n, time.Since(last) > 20*time.Second
		mu.Unlock()
		if done || idle || time.Now().After(deadline) {
			break
		}
	}
	stopLosing()
	losing.Wait()
	// Late copies: retries of batches that failed before the faults stopped.
	for {
		mu.Lock()
		quiet := time.Since(last) > 5*time.Second
		mu.Unlock()
		if quiet {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopReading()
	readers.Wait()
	lost := map[string]int{}
	for _, r := range s.faults.List() {
		lost[r.Service] += r.Fired
	}

	// The ledger's changes, from the table's stream.
	changes := ledgerChanges(b, s)
	var missing, spurious, several, duplicates, ids int
	var latencies []time.Duration
	for c, written := range changes {
		d := got[c]
		if d == nil {
			missing++
			continue
		}
		latencies = append(latencies, d.first.Sub(written))
	}
	for c, d := range got {
		if _, ok := changes[c]; !ok {
			spurious++
			continue
		}
		ids += len(d.ids)
		if len(d.ids) > 1 {
			several++
		}
		duplicates += d.count - len(d.ids)
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Milliseconds())
	}
	b.ReportMetric(float64(len(changes)), "ledger-changes")
	b.ReportMetric(float64(ids)/float64(max(1, len(changes)-missing)), "event-ids/change")
	b.ReportMetric(float64(several), "changes-with-2+-ids")
	b.ReportMetric(float64(missing), "missing")
	b.ReportMetric(float64(spurious), "spurious")
	b.ReportMetric(float64(duplicates), "duplicates-delivered")
	b.ReportMetric(pct(0.5), "ms-p50-write-to-queue")
	b.ReportMetric(pct(0.99), "ms-p99-write-to-queue")
	b.ReportMetric(float64(inj.panics.Load()+inj.timeouts.Load()), "publisher-crashes")
	b.ReportMetric(float64(givenUp(b, s)), "records-given-up")
	b.ReportMetric(float64(lost[awsfault.EventBridge]), "putevents-answers-lost")
	b.ReportMetric(float64(lost[awsfault.DynamoDB]), "ledger-write-answers-lost")
	b.ReportMetric(elapsed.Seconds(), "s-total")
}

// givenUp counts the stream records the publisher's trigger gave up on:
// the batch sizes of the invocation records in OutcomeDLQ.
func givenUp(b *testing.B, s *Stack) int {
	q, url := sqs.NewFromConfig(s.aws), s.res.queues["OutcomeDLQ"]
	n := 0
	for {
		out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 60})
		if err != nil {
			b.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return n
		}
		for _, m := range out.Messages {
			var inv streams.Invocation
			json.Unmarshal([]byte(*m.Body), &inv)
			n += inv.Batch.BatchSize
		}
	}
}

// ledgerChanges reads the table's whole stream: each change of a ledger
// item to a status an outcome event carries, with when it was written.
func ledgerChanges(b *testing.B, s *Stack) map[change]time.Time {
	ctx := context.Background()
	st := dynamodbstreams.NewFromConfig(s.aws)
	arn := s.res.streams["Table"]
	desc, err := st.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: &arn})
	if err != nil {
		b.Fatal(err)
	}
	str := func(img map[string]streamtypes.AttributeValue, k string) string {
		if v, ok := img[k].(*streamtypes.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	out := map[change]time.Time{}
	for _, sh := range desc.StreamDescription.Shards {
		it, err := st.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: &arn, ShardId: sh.ShardId, ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon})
		if err != nil {
			b.Fatal(err)
		}
		for iter := it.ShardIterator; iter != nil; {
			page, err := st.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				b.Fatal(err)
			}
			if len(page.Records) == 0 {
				break
			}
			for _, r := range page.Records {
				d := r.Dynamodb
				if !strings.HasPrefix(str(d.Keys, "pk"), notify.LedgerPrefix) {
					continue
				}
				status := contract.Status(str(d.NewImage, "status"))
				if status == contract.Status(str(d.OldImage, "status")) || contract.DetailType(status) == "" {
					continue
				}
				c := change{str(d.NewImage, "job_id"), status}
				if _, seen := out[c]; !seen {
					out[c] = aws.ToTime(d.ApproximateCreationDateTime)
				}
			}
			iter = page.NextShardIterator
		}
	}
	return out
}
