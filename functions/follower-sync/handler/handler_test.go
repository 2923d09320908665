package handler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
	"wxbridge/shared/identity"
)

// TestStartWhileActiveReturnsTheActiveRun starts a backfill from many
// places at once: one run starts, everyone gets it; once it is done, the
// next start is a new run.
func TestStartWhileActiveReturnsTheActiveRun(t *testing.T) {
	e := newEnv(t)
	e.syncer.ChunkSize = 10 // two chunks of 20 followers
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 20}); err != nil {
		t.Fatal(err)
	}
	const callers = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		started int
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, s, err := e.syncer.Start(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[r.ID]++
			if s {
				started++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if started != 1 || len(ids) != 1 {
		t.Fatalf("%d started, runs %v", started, ids)
	}
	if q := e.inFlight(t); q != 1 {
		t.Errorf("%d jobs queued, want the one first page", q)
	}
	e.drain(t, 2)
	first := e.status(t)
	if first.Status != backfill.Done || first.Seen != 20 || first.Waiting != 20 || first.Chunks != 2 {
		t.Fatalf("first run = %+v", first)
	}
	second, s, err := e.syncer.Start(context.Background())
	if err != nil || !s || second.ID == first.ID {
		t.Fatalf("after the first ended: %+v started=%v %v", second, s, err)
	}
	e.drain(t, 2)
	// Everyone was linked by the first run: the second changes nobody but
	// counts everyone the same way.
	if r := e.status(t); r.ID != second.ID || r.Status != backfill.Done || r.Waiting != 20 || len(e.livePeople(t)) != 20 {
		t.Fatalf("second run = %+v", r)
	}
}

// TestChunkRedeliveredChangesNothing hands the same chunk job to the
// function again after it was done (SQS delivering it twice), and a page
// job again after its chunks were queued: counts and people stay as they
// were.
func TestChunkRedeliveredChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.syncer.ChunkSize = 10 // chunks of 10, 10 and 5
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 25, WithoutUnionIDShare: 0.2}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	// The first page job: it queues 3 chunk jobs and the next page.
	page, _ := e.receive(t)
	if len(page.Records) != 1 || e.handle(t, page) != 0 {
		t.Fatal("first page job")
	}
	// The same page job again, as if its deletion had been lost: the page
	// is done, so it queues nothing new and is not counted twice.
	if err := e.syncer.Process(context.Background(), jobOf(t, page.Records[0].Body), 2); err != nil {
		t.Fatal(err)
	}
	if q := e.inFlight(t); q != 4 {
		t.Errorf("%d jobs queued, want the page's 3 chunks and the next page", q)
	}
	ev, _ := e.receive(t)
	var chunk, next *backfill.Job
	for _, m := range ev.Records {
		var j backfill.Job
		mustJSON(t, m.Body, &j)
		switch {
		case j.Kind == backfill.ChunkJob && j.Chunk == 0:
			chunk = &j
		case j.Kind == backfill.PageJob:
			next = &j
		}
	}
	if chunk == nil || next == nil || len(ev.Records) != 4 {
		t.Fatalf("after the first page: %d jobs", len(ev.Records))
	}
	e.handle(t, ev)
	e.drain(t, 1)
	done := e.status(t)
	if done.Status != backfill.Done || done.Seen != 25 || done.Pages != 2 || done.Waiting != 20 || done.WithoutUnionID != 5 {
		t.Fatalf("run = %+v", done)
	}
	calls := e.sb.Calls("/cgi-bin/user/info/batchget")
	e.counter.Counts()
	if err := e.syncer.Process(context.Background(), *chunk, 2); err != nil {
		t.Fatal(err)
	}
	counts := e.counter.Counts()
	if got := e.status(t); got.ChunksDone != done.ChunksDone || got.Waiting != done.Waiting || got.Seen != done.Seen {
		t.Errorf("after redelivery: %+v, before %+v", got, done)
	}
	if e.sb.Calls("/cgi-bin/user/info/batchget") != calls || counts["TransactWriteItems"]+counts["PutItem"]+counts["UpdateItem"] != 0 {
		t.Errorf("a done chunk cost WeChat calls or writes: %v", counts)
	}
	if n := len(e.livePeople(t)); n != 25 {
		t.Errorf("%d people", n)
	}
}

// TestChunkDoneTwiceByCrashCountsOnce: a chunk job whose function died
// after linking but before the count (or whose visibility ran out while it
// was still working) is done again in full by its next delivery, and by a
// duplicate running at the same moment: counted once.
func TestChunkDoneTwiceByCrashCountsOnce(t *testing.T) {
	e := newEnv(t)
	e.syncer.ChunkSize = 10 // one chunk
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 10}); err != nil {
		t.Fatal(err)
	}
	run := e.start(t)
	page, _ := e.receive(t)
	e.handle(t, page)
	ev, _ := e.receive(t)
	var chunk backfill.Job
	for _, m := range ev.Records {
		if j := jobOf(t, m.Body); j.Kind == backfill.ChunkJob {
			chunk = j
		}
	}
	// Link everyone of the chunk outside the count: the crash.
	users, err := e.wc.Followers(context.Background(), oaApp, chunk.OpenIDs)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if _, err := e.people.Link(context.Background(), identity.Sighting{OA: &identity.OASighting{AppID: oaApp, OpenID: u.OpenID, Follow: &identity.Follow{Subscribed: true, At: time.Unix(u.SubscribeTime, 0)}}, UnionID: u.UnionID}); err != nil {
			t.Fatal(err)
		}
	}
	// Its redelivery, and two duplicates, at the same moment.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.syncer.Process(context.Background(), chunk, 2); err != nil {
				t.Error(err)
			}
		}()
	}
	e.handle(t, ev)
	wg.Wait()
	e.drain(t, 1)
	got := e.status(t)
	if got.ID != run.ID || got.Status != backfill.Done || got.Waiting != 10 || got.ChunksDone != 1 || got.Seen != 10 {
		t.Fatalf("run = %+v", got)
	}
}

// TestInterruptedRunResumes loses the queue mid-run (a purge, jobs moved
// to the dead-letter queue): the run waits, and Resume queues exactly what
// is missing; the run then ends with exact counts.
func TestInterruptedRunResumes(t *testing.T) {
	e := newEnv(t)
	e.syncer.ChunkSize = 10
	const n = 150 // 15 chunks: the page job's batch and one batch of 10 leave 5
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: n, MiniProgramShare: 0.1, WithoutUnionIDShare: 0.1}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	// Work a few batches, then lose everything still queued.
	for range 2 {
		ev, _ := e.receive(t)
		e.handle(t, ev)
	}
	mid := e.status(t)
	if mid.Status != backfill.Running || mid.ChunksDone == 0 || mid.Pending() == 0 {
		t.Fatalf("mid-run = %+v", mid)
	}
	e.purge(t)
	if again, started, err := e.syncer.Start(context.Background()); err != nil || started || again.ID != mid.ID {
		t.Fatalf("start while interrupted: %+v %v %v", again, started, err)
	}
	r, jobs, err := e.syncer.Resume(context.Background())
	if err != nil || r.ID != mid.ID {
		t.Fatal(err)
	}
	// Every chunk not done, and the page after the one listed.
	if want := mid.Chunks - mid.ChunksDone + 1; jobs != want || e.inFlight(t) != want {
		t.Errorf("resume queued %d jobs (%d on the queue), want %d", jobs, e.inFlight(t), want)
	}
	e.drain(t, 2)
	got := e.status(t)
	if got.Status != backfill.Done || got.Seen != n || got.Waiting != n*9/10 || got.WithoutUnionID != n/10 || got.Pending() != 0 || got.ChunksDone != n/10 {
		t.Fatalf("after resume: %+v", got)
	}
	// Resuming a run that is over is refused.
	if _, _, err := e.syncer.Resume(context.Background()); err != backfill.ErrNoActiveRun {
		t.Errorf("resume after the end: %v", err)
	}
}

// TestInterruptedBeforeTheNextPage loses the queue right after a page was
// listed but before its successor ran: Resume queues the next page job
// from the saved next_openid, and that job lists the rest. (Finishing a
// resumed run is TestInterruptedRunResumes: linking these 12,000 would
// take moto half a minute.)
func TestInterruptedBeforeTheNextPage(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 12000}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := e.start(t)
	page, _ := e.receive(t)
	e.handle(t, page)
	e.purge(t)
	r, jobs, err := e.syncer.Resume(ctx)
	if err != nil || jobs != 101 {
		t.Fatalf("resume: %d jobs, %v (run %+v)", jobs, err, r)
	}
	first, err := e.runs.Page(ctx, oaApp, run.ID, 0)
	if err != nil || first == nil || first.Next == "" {
		t.Fatalf("saved page 0: %+v %v", first, err)
	}
	var next events.SQSEvent
	for len(next.Records) == 0 {
		ev, _ := e.receive(t)
		if len(ev.Records) == 0 {
			t.Fatal("no page job among the resumed jobs")
		}
		for _, m := range ev.Records {
			if j := jobOf(t, m.Body); j.Kind == backfill.PageJob {
				if j.Page != 1 || j.Next != first.Next {
					t.Fatalf("resumed page job %+v, want page 1 from %q", j, first.Next)
				}
				next.Records = append(next.Records, m)
			}
		}
	}
	if e.handle(t, next) != 0 {
		t.Fatal("the resumed page job failed")
	}
	got := e.status(t)
	if got.Status != backfill.Running || got.Seen != 12000 || got.Pages != 2 || got.Chunks != 120 {
		t.Fatalf("after the resumed page: %+v", got)
	}
	// The 100 resumed chunks, page 1's 20 and the last (empty) page.
	if q := e.inFlight(t); q != 121 {
		t.Errorf("%d jobs on the queue, want 121", q)
	}
}

// TestQuotaErrorsMidRun: the platform answers 45009 (quota), 45011 (too
// frequent) and -1 (busy) now and then: the jobs are put off by their
// backoff, the errors are recorded, and the run still ends exact.
func TestQuotaErrorsMidRun(t *testing.T) {
	e := newEnv(t)
	e.syncer.ChunkSize = 10
	const n = 150 // 15 chunks: more than a batch of 10
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: n, WithoutUnionIDShare: 0.5}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	page, _ := e.receive(t)
	if e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/get", ErrCode: -1, Count: 1}) != nil {
		t.Fatal()
	}
	if e.handle(t, page) != 1 {
		t.Fatal("busy user/get: want the page job back")
	}
	page, _ = e.receive(t)
	e.handle(t, page)
	for _, f := range []sandbox.Fault{
		{Path: "/cgi-bin/user/info/batchget", ErrCode: 45009, Count: 12},
		{Path: "/cgi-bin/user/info/batchget", ErrCode: 45011, Count: 5},
	} {
		if err := e.sb.InjectFault(f); err != nil {
			t.Fatal(err)
		}
		ev, _ := e.receive(t)
		if failed := e.handle(t, ev); failed != min(f.Count, len(ev.Records)) {
			t.Fatalf("%d errcode: %d of %d jobs back", f.ErrCode, failed, len(ev.Records))
		}
		mid := e.status(t)
		if !strings.Contains(mid.LastError, "errcode "+itoa(f.ErrCode)) || !strings.Contains(mid.LastError, "rid ") || mid.Status != backfill.Running {
			t.Errorf("run after %d: %+v", f.ErrCode, mid)
		}
		e.sb.ClearFaults()
	}
	e.drain(t, 3)
	got := e.status(t)
	if got.Status != backfill.Done || got.Seen != n || got.Waiting != n/2 || got.WithoutUnionID != n/2 || got.Failed != 0 || got.Retries < 3 {
		t.Fatalf("run = %+v", got)
	}
	var quota, frequent, busy int
	for _, d := range e.delays.all() {
		switch {
		case d >= 11*time.Minute:
			quota++
		case d >= 45*time.Second:
			frequent++
		case d >= 3*time.Second && d <= 5*time.Second:
			busy++
		default:
			t.Errorf("unexpected delay %s", d)
		}
	}
	if quota == 0 || frequent == 0 || busy != 1 {
		t.Errorf("delays asked: %v", e.delays.all())
	}
	if strings.Contains(e.logs.String(), "access_token=") {
		t.Error("a log line carries an access token")
	}
}

// TestPermanentErrorsAreCountedAsFailed: an answer that will not change
// (40003, an openid the platform does not know) fails the chunk's
// followers at once, records why, and the run still ends. (A configuration
// answer such as 48001 is retried: TestConfigErrorsAreRetriedThenCounted.)
func TestPermanentErrorsAreCountedAsFailed(t *testing.T) {
	e := newEnv(t)
	e.syncer.ChunkSize = 10
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 30}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	page, _ := e.receive(t)
	e.handle(t, page)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info/batchget", ErrCode: 40003, Count: 1}); err != nil {
		t.Fatal(err)
	}
	e.drain(t, 1)
	got := e.status(t)
	if got.Status != backfill.Done || got.Failed != 10 || got.Waiting != 20 || got.Pending() != 0 || got.Retries != 0 {
		t.Fatalf("run = %+v", got)
	}
	if !strings.Contains(e.logs.String(), "errcode 40003") {
		t.Error("the failure is not logged")
	}
}

// TestListingRefusedFailsTheRun: user/get refused for good (40003 here
// stands for any answer that is final, wechat.Retryable false) ends the
// run as failed at once and frees the account for a new one.
func TestListingRefusedFailsTheRun(t *testing.T) {
	e := newEnv(t)
	e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 10})
	e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/get", ErrCode: 40003, Count: 1})
	first := e.start(t)
	e.drain(t, 1)
	if got := e.status(t); got.ID != first.ID || got.Status != backfill.Failed || !strings.Contains(got.LastError, "40003") || got.Retries != 0 {
		t.Fatalf("run = %+v", got)
	}
	second := e.start(t)
	e.drain(t, 1)
	if got := e.status(t); got.ID != second.ID || got.Status != backfill.Done || got.Waiting != 10 {
		t.Fatalf("second run = %+v", got)
	}
}

// TestJobsThatCanNeverBeDoneAreDropped: not JSON, another account's, an
// unknown run: logged and deleted, never retried.
func TestJobsThatCanNeverBeDoneAreDropped(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{"{", `{"kind":"page","appid":"wxother","run":"x"}`, `{"kind":"page","appid":"` + oaApp + `","run":"01NOSUCHRUN"}`} {
		if _, err := e.sqs.SendMessage(context.Background(), sendInput(e.queueURL, body)); err != nil {
			t.Fatal(err)
		}
	}
	ev, _ := e.receive(t)
	if len(ev.Records) != 3 || e.handle(t, ev) != 0 || e.inFlight(t) != 0 {
		t.Fatalf("%d jobs, %d left", len(ev.Records), e.inFlight(t))
	}
	if c := strings.Count(e.logs.String(), `"outcome":"dropped"`); c != 3 {
		t.Errorf("%d dropped lines", c)
	}
}
