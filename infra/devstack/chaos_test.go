package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/observe"
)

// TestChaos is the chaos story (issue 12): the whole devstack, driven
// through the sandbox and the HTTP API by simulated people who log in to
// the mini program, follow, unfollow, sign in on H5 pages and receive the
// notifications a business sends them, while a seeded random mix of faults
// hits WeChat (errors, latency, lost answers) and DynamoDB (throttles,
// 500s). Once the faults stop and the queues drain, it checks that each
// person's follow state is what WeChat says, that nobody is split across
// two people, that every job has one final outcome that tells the truth,
// that no phone got a job twice and that every dead letter is accounted
// for.
//
// WXB_CHAOS_SEED replays a story (the seed is logged); WXB_CHAOS_SIZE
// multiplies its size (1: 8 people, 40 operations, 20 jobs, 20 faults).
func TestChaos(t *testing.T) {
	runChaos(t, chaosScale(t, 1))
}

// BenchmarkChaos is the larger chaos story for make bench: WXB_CHAOS_SIZE
// (default 4) times the test's size. It reports its counts.
func BenchmarkChaos(b *testing.B) {
	n := chaosScale(b, 4)
	for range b.N {
		runChaos(b, n)
	}
}

func chaosScale(tb testing.TB, def int) int {
	v := os.Getenv("WXB_CHAOS_SIZE")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 50 {
		tb.Fatalf("WXB_CHAOS_SIZE=%q: want 1 to 50", v)
	}
	return n
}

func chaosSeed(tb testing.TB) int64 {
	v := os.Getenv("WXB_CHAOS_SEED")
	if v == "" {
		return time.Now().UnixNano() % 1_000_000_000
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		tb.Fatalf("WXB_CHAOS_SEED=%q: want an integer", v)
	}
	return n
}

// chaosRun is one chaos story.
type chaosRun struct {
	tb    testing.TB
	seed  int64
	size  chaosSize
	s     *Stack
	lapse *timeLapse
	logs  *observe.Capture
	db    *dynamodb.Client // straight to moto: the story's own reads see no faults
	sqs   *sqs.Client
	http  *http.Client
	start time.Time

	people []*chaosPerson
	jobs   []*chaosJob
	faults []*chaosFault

	left        quiet // the last look of the drain
	ops         tally
	faultsArmed tally

	mu   sync.Mutex
	errs []string // the harness's own failures, from any goroutine
}

// fail records a failure of the story itself (not of wxbridge): a sandbox
// control call refused, an enqueue failed.
func (r *chaosRun) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func runChaos(tb testing.TB, n int) {
	seed := chaosSeed(tb)
	r := &chaosRun{tb: tb, seed: seed, size: sizeOf(n), logs: &observe.Capture{}, http: &http.Client{Timeout: 60 * time.Second}}
	tb.Logf("chaos story: seed %d, size %d (WXB_CHAOS_SEED=%d WXB_CHAOS_SIZE=%d go test -count=1 -run '^TestChaos$' ./infra/devstack replays it)", seed, n, seed, n)
	began := time.Now()

	// On the package's shared moto, as a stack of its own name (testStack).
	motoURL := *testAWS(tb).BaseEndpoint
	var err error
	r.lapse, err = startTimeLapse(motoURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.lapse.Close)
	restore := withSendWorkerTimeout(sendWorkerTimeout)
	r.s, err = Start(context.Background(), Config{Addr: "127.0.0.1:0", AWSEndpoint: r.lapse.URL(), Logs: r.logs, name: fmt.Sprintf("wxbridge-t%d", stacks.Add(1))})
	restore()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.s.Close)
	direct := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(motoURL),
		Credentials: credentials.NewStaticCredentialsProvider("chaos", "chaos", "")}
	r.db, r.sqs = dynamodb.NewFromConfig(direct), sqs.NewFromConfig(direct)
	for id, secs := range lapsedVisibility {
		_, err := r.sqs.SetQueueAttributes(context.Background(), &sqs.SetQueueAttributesInput{
			QueueUrl: aws.String(r.s.res.queues[id]), Attributes: map[string]string{"VisibilityTimeout": strconv.Itoa(secs)},
		})
		if err != nil {
			tb.Fatalf("queue %s: %v", id, err)
		}
	}

	r.plan()
	for i, p := range r.people {
		st, out, err := r.call("POST", r.s.SandboxURL+"/sandbox/people", map[string]string{"nickname": fmt.Sprintf("Chaos %d", i+1)}, nil)
		if err != nil || st != http.StatusCreated {
			tb.Fatalf("create person: %d %v %v", st, out, err)
		}
		p.ID, p.UnionID, p.MPOpenID, p.OAOpenID = out["id"].(string), out["unionid"].(string), out["mp_openid"].(string), out["oa_openid"].(string)
	}
	setup := time.Since(began)

	r.start = time.Now()
	var wg sync.WaitGroup
	for _, p := range r.people {
		wg.Go(func() { r.live(p) })
	}
	wg.Go(r.business)
	wg.Go(r.chaos)
	wg.Wait()
	r.stopFaults()
	acted := time.Since(r.start)

	drained, settled, still := r.drain(30 * time.Second)
	invariants := r.check()

	// The figures.
	armed, fired := 0, 0
	firedBy := tally{}
	for _, f := range r.faults {
		if f.Armed {
			armed++
			fired += f.Fired
			for range f.Fired {
				firedBy.add(f.Kind)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos story, seed %d, size %d: %d people, setup %s, acting %s, drain %s (settled: %v%s), total %s",
		seed, n, len(r.people), setup.Round(time.Millisecond), acted.Round(time.Millisecond), drained.Round(time.Millisecond), settled, still, time.Since(began).Round(time.Millisecond))
	fmt.Fprintf(&b, "\n  operations (%d):%s", r.ops.total(), r.ops.String())
	fmt.Fprintf(&b, "\n  faults armed (%d):%s", armed, r.faultsArmed.String())
	fmt.Fprintf(&b, "\n  faults fired (%d requests failed, delayed or answer lost; WeChat's counted from the sandbox's calls):%s", fired, firedBy.String())
	fmt.Fprintf(&b, "\n  retry delays compressed by the time lapse: %d (%d under a minute kept)", r.lapse.compressed.Load(), r.lapse.kept.Load())
	fmt.Fprintf(&b, "\n  invariants:")
	violated := 0
	for _, inv := range invariants {
		fmt.Fprintf(&b, "\n    %-52s checked %3d  violated %d", inv.name, inv.checked, len(inv.violations))
		violated += len(inv.violations)
	}
	for _, inv := range invariants {
		if inv.extra != "" {
			fmt.Fprintf(&b, "\n  %s", inv.extra)
		}
	}
	tb.Log(b.String())
	if b, ok := tb.(*testing.B); ok {
		b.ReportMetric(float64(r.ops.total()), "operations")
		b.ReportMetric(float64(fired), "faults-fired")
		b.ReportMetric(float64(violated), "violations")
		b.ReportMetric(drained.Seconds(), "s-to-drain")
	}

	for _, e := range r.errs {
		tb.Errorf("the story itself failed (not wxbridge): %s", e)
	}
	if violated > 0 {
		tb.Errorf("seed %d: %d invariant violation(s)", seed, violated)
		for _, inv := range invariants {
			for _, v := range inv.violations {
				tb.Errorf("%s: %s", inv.name, v)
			}
		}
		tb.Logf("the faults of seed %d, in order:%s", seed, r.faultSchedule())
		if !settled {
			tb.Logf("the system did not settle once the faults stopped%s%s", still, r.lastTroubles(20))
		}
	}
}

func (r *chaosRun) faultSchedule() string {
	var b strings.Builder
	for _, f := range r.faults {
		fmt.Fprintf(&b, "\n    %6.2fs %-44s count %d fired %d", f.At.Seconds(), f.Kind, max(countOf(f), 0), f.Fired)
	}
	return b.String()
}

func countOf(f *chaosFault) int {
	if f.WeChat != nil {
		return f.WeChat.Count
	}
	return f.AWS.Count
}
