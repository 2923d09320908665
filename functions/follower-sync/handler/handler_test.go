package handler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/wechat/push"
)

// TestBackfill25000 runs a whole backfill of 25,000 followers of mixed
// kinds while some of them log in to the mini program and some follow
// events for listed followers are handled at the same moment.
func TestBackfill25000(t *testing.T) {
	if testing.Short() {
		t.Skip("25,000 followers")
	}
	e := newEnv(t)
	const n = 25000
	fs, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: n, MiniProgramShare: 0.04, WithoutUnionIDShare: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	var mp, plain, noUnion []sandbox.Follower
	for _, f := range fs {
		switch {
		case f.MiniProgram:
			mp = append(mp, f)
		case f.WithoutUnionID:
			noUnion = append(noUnion, f)
		default:
			plain = append(plain, f)
		}
	}
	if len(mp) != 1000 || len(noUnion) != 2500 || len(plain) != 21500 {
		t.Fatalf("kinds: %d mini-program, %d without unionid, %d others", len(mp), len(noUnion), len(plain))
	}
	// Half of the mini-program users logged in before the backfill.
	before, during := mp[:500], mp[500:]
	for _, f := range before {
		e.loginAs(t, f.ID)
	}
	run := e.start(t)

	// While it runs: the other half log in, and follow events arrive for
	// 300 listed followers (the push of someone who followed as wxbridge
	// was installed), through the follow-event's own code.
	proc := &pushevent.Processor{AppID: oaApp, WeChat: e.wc, People: e.people, Log: observe.Logger(e.logs, "follow-event")}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for _, f := range during {
			e.loginAs(t, f.ID)
		}
	}()
	go func() {
		defer wg.Done()
		for _, f := range plain[:300] {
			ev := push.Event{ToUserName: "gh_sandbox", FromUserName: f.OAOpenID, CreateTime: time.Now().Unix(), MsgType: "event", Event: "subscribe"}
			if _, err := proc.Process(context.Background(), ev); err != nil {
				t.Errorf("follow event: %v", err)
			}
		}
	}()
	began := time.Now()
	e.drain(t, 4)
	wg.Wait()
	t.Logf("25,000 followers backfilled in %s; DynamoDB requests %v", time.Since(began).Round(time.Millisecond), e.counter.Counts())

	got := e.status(t)
	if got.ID != run.ID || got.Status != backfill.Done || got.FinishedAt.IsZero() {
		t.Fatalf("run = %+v", got)
	}
	// 25,000 = 10,000 + 10,000 + 5,000, then the empty page that ends it.
	want := backfill.Run{Total: n, Pages: 4, Seen: n, Chunks: 250, ChunksDone: 250, WithoutUnionID: 2500}
	if got.Total != want.Total || got.Pages != want.Pages || got.Seen != want.Seen || got.Chunks != want.Chunks ||
		got.ChunksDone != want.ChunksDone || got.WithoutUnionID != want.WithoutUnionID || got.Failed != 0 || got.Unfollowed != 0 {
		t.Errorf("counts = %+v", got)
	}
	// Those who logged in during the run are linked or waiting depending
	// on who came first; together the two are everyone with a unionid.
	if got.Linked+got.Waiting != n-2500 || got.Linked < 500 || got.Linked > 1000 || got.Pending() != 0 {
		t.Errorf("linked %d, waiting %d, pending %d", got.Linked, got.Waiting, got.Pending())
	}

	// One person per follower: no duplicate from a login or a follow event
	// racing the backfill, and one person per unionid.
	people := e.livePeople(t)
	if len(people) != n {
		t.Errorf("%d people for %d followers", len(people), n)
	}
	byUnion := map[string]int{}
	linked := 0
	for _, p := range people {
		if p.UnionID != "" {
			byUnion[p.UnionID]++
		}
		if p.Linked() {
			linked++
		}
		if oa, ok := p.OA[oaApp]; !ok || !oa.Subscribed || oa.SubscribedAt == nil {
			t.Fatalf("person %s has no followed OA identity: %+v", p.UID, p)
		}
	}
	for u, c := range byUnion {
		if c != 1 {
			t.Errorf("unionid %s on %d people", u, c)
		}
	}
	if len(byUnion) != n-2500 || linked != 1000 {
		t.Errorf("%d unionids, %d linked people; want %d and 1000", len(byUnion), linked, n-2500)
	}
	for _, f := range append(mp[:3], mp[997:]...) {
		a, err := e.people.Lookup(context.Background(), identity.MPKey(mpApp, f.MPOpenID))
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.people.Lookup(context.Background(), identity.OAKey(oaApp, f.OAOpenID))
		if err != nil || a.UID != b.UID {
			t.Errorf("%s: mini program on %s, official account on %s (%v)", f.ID, a.UID, b.UID, err)
		}
	}
	for _, f := range noUnion[:3] {
		p, err := e.people.Lookup(context.Background(), identity.OAKey(oaApp, f.OAOpenID))
		if err != nil || p.UnionID != "" || p.Linked() {
			t.Errorf("%s without unionid: %+v %v", f.ID, p, err)
		}
	}
}

// TestStartWhileActiveReturnsTheActiveRun starts a backfill from many
// places at once: one run starts, everyone gets it; once it is done, the
// next start is a new run.
func TestStartWhileActiveReturnsTheActiveRun(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 150}); err != nil {
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
	if first.Status != backfill.Done || first.Seen != 150 || first.Waiting != 150 {
		t.Fatalf("first run = %+v", first)
	}
	second, s, err := e.syncer.Start(context.Background())
	if err != nil || !s || second.ID == first.ID {
		t.Fatalf("after the first ended: %+v started=%v %v", second, s, err)
	}
	e.drain(t, 2)
	// Everyone was linked by the first run: the second changes nobody but
	// counts everyone the same way.
	if r := e.status(t); r.ID != second.ID || r.Status != backfill.Done || r.Waiting != 150 || len(e.livePeople(t)) != 150 {
		t.Fatalf("second run = %+v", r)
	}
}

// TestChunkRedeliveredChangesNothing hands the same chunk job to the
// function again after it was done (SQS delivering it twice), and a page
// job again after its chunks were queued: counts and people stay as they
// were.
func TestChunkRedeliveredChangesNothing(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 250, WithoutUnionIDShare: 0.2}); err != nil {
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
	if done.Status != backfill.Done || done.Seen != 250 || done.Pages != 2 || done.Waiting != 200 || done.WithoutUnionID != 50 {
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
	if n := len(e.livePeople(t)); n != 250 {
		t.Errorf("%d people", n)
	}
}

// TestChunkDoneTwiceByCrashCountsOnce: a chunk job whose function died
// after linking but before the count (or whose visibility ran out while it
// was still working) is done again in full by its next delivery, and by a
// duplicate running at the same moment: counted once.
func TestChunkDoneTwiceByCrashCountsOnce(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 100}); err != nil {
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
	if got.ID != run.ID || got.Status != backfill.Done || got.Waiting != 100 || got.ChunksDone != 1 || got.Seen != 100 {
		t.Fatalf("run = %+v", got)
	}
}

// TestInterruptedRunResumes loses the queue mid-run (a purge, jobs moved
// to the dead-letter queue): the run waits, and Resume queues exactly what
// is missing; the run then ends with exact counts.
func TestInterruptedRunResumes(t *testing.T) {
	e := newEnv(t)
	const n = 2500
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: n, MiniProgramShare: 0.1, WithoutUnionIDShare: 0.1}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	// Work a few batches, then lose everything still queued.
	for range 3 {
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
	if got.Status != backfill.Done || got.Seen != n || got.Waiting != 2250 || got.WithoutUnionID != 250 || got.Pending() != 0 || got.ChunksDone != 25 {
		t.Fatalf("after resume: %+v", got)
	}
	// Resuming a run that is over is refused.
	if _, _, err := e.syncer.Resume(context.Background()); err != backfill.ErrNoActiveRun {
		t.Errorf("resume after the end: %v", err)
	}
}

// TestInterruptedBeforeTheNextPage loses the queue right after a page was
// listed but before its successor ran: Resume queues the next page job
// from the saved next_openid.
func TestInterruptedBeforeTheNextPage(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 12000}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	page, _ := e.receive(t)
	e.handle(t, page)
	e.purge(t)
	r, jobs, err := e.syncer.Resume(context.Background())
	if err != nil || jobs != 101 {
		t.Fatalf("resume: %d jobs, %v (run %+v)", jobs, err, r)
	}
	e.drain(t, 4)
	if got := e.status(t); got.Status != backfill.Done || got.Seen != 12000 || got.Waiting != 12000 || got.Pages != 3 {
		t.Fatalf("after resume: %+v", got)
	}
}

// TestQuotaErrorsMidRun: the platform answers 45009 (quota), 45011 (too
// frequent) and -1 (busy) now and then: the jobs are put off by their
// backoff, the errors are recorded, and the run still ends exact.
func TestQuotaErrorsMidRun(t *testing.T) {
	e := newEnv(t)
	const n = 3000
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
	if got.Status != backfill.Done || got.Seen != n || got.Waiting != 1500 || got.WithoutUnionID != 1500 || got.Failed != 0 || got.Retries < 3 {
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
// (48001, the API not authorised) fails the chunk's followers, records
// why, and the run still ends.
func TestPermanentErrorsAreCountedAsFailed(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 300}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	page, _ := e.receive(t)
	e.handle(t, page)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info/batchget", ErrCode: 48001, Count: 1}); err != nil {
		t.Fatal(err)
	}
	e.drain(t, 1)
	got := e.status(t)
	if got.Status != backfill.Done || got.Failed != 100 || got.Waiting != 200 || got.Pending() != 0 {
		t.Fatalf("run = %+v", got)
	}
	if !strings.Contains(e.logs.String(), "errcode 48001") {
		t.Error("the failure is not logged")
	}
}

// TestListingRefusedFailsTheRun: user/get refused for good ends the run as
// failed and frees the account for a new one.
func TestListingRefusedFailsTheRun(t *testing.T) {
	e := newEnv(t)
	e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 10})
	e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/get", ErrCode: 48001, Count: 1})
	first := e.start(t)
	e.drain(t, 1)
	if got := e.status(t); got.ID != first.ID || got.Status != backfill.Failed || !strings.Contains(got.LastError, "48001") {
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
