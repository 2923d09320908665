package handler

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat/push"
)

// TestBackfillWhileUsersLogInAndFollow runs a whole backfill of 250
// followers of mixed kinds, in 25 chunks of 10 that 4 pollers work at once,
// while some of them log in to the mini program and follow events for
// listed followers are handled at the same moment: one person per
// follower, one per unionid, exact counts. make bench runs the same at
// 25,000 followers in chunks of 100 (BenchmarkBackfill25000).
func TestBackfillWhileUsersLogInAndFollow(t *testing.T) {
	backfillWhileUsersLogInAndFollow(t, 250, 10)
}

// BenchmarkBackfill25000 is TestBackfillWhileUsersLogInAndFollow at 25,000
// followers (three full user/get pages and a half, 250 chunks), with the
// same checks; it prints the wall time and DynamoDB requests.
func BenchmarkBackfill25000(b *testing.B) {
	const n = 25000
	took, ddb := backfillWhileUsersLogInAndFollow(b, n, backfill.ChunkSize)
	fmt.Fprintf(os.Stdout, "\nbackfill of %d followers while 500 log in and %d follow: %s; DynamoDB requests %v\n\n", n, n*3/250, took.Round(time.Millisecond), ddb)
	b.ReportMetric(took.Seconds(), "backfill-s")
	b.ReportMetric(float64(n)/took.Seconds(), "followers/s")
}

// backfillWhileUsersLogInAndFollow backfills n followers (4% mini-program
// users, 10% without unionid) in chunks of chunk with 4 pollers. Half of the mini-program
// users log in before the run, the other half during it, while follow
// events for 1.2% of the followers (the push of someone who followed as
// wxbridge was installed) go through the follow-event's own code. It
// checks the run's counts and that every follower is one person, and
// returns how long the run took and its DynamoDB requests.
func backfillWhileUsersLogInAndFollow(tb testing.TB, n, chunk int) (time.Duration, map[string]int) {
	e := newEnv(tb)
	e.syncer.ChunkSize = chunk
	fs, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: n, MiniProgramShare: 0.04, WithoutUnionIDShare: 0.1})
	if err != nil {
		tb.Fatal(err)
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
	wantMP, wantNoUnion := n*4/100, n/10
	if len(mp) != wantMP || len(noUnion) != wantNoUnion || len(plain) != n-wantMP-wantNoUnion {
		tb.Fatalf("kinds: %d mini-program, %d without unionid, %d others", len(mp), len(noUnion), len(plain))
	}
	// Half of the mini-program users logged in before the backfill.
	before, during := mp[:len(mp)/2], mp[len(mp)/2:]
	for _, f := range before {
		e.loginAs(tb, f.ID)
	}
	run := e.start(tb)

	// While it runs: the other half log in, and follow events arrive for
	// listed followers, through the follow-event's own code.
	proc := e.followEvent()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for _, f := range during {
			e.loginAs(tb, f.ID)
		}
	}()
	go func() {
		defer wg.Done()
		for _, f := range plain[:n*3/250] {
			ev := push.Event{ToUserName: "gh_sandbox", FromUserName: f.OAOpenID, CreateTime: time.Now().Unix(), MsgType: "event", Event: "subscribe"}
			if _, err := proc.Process(context.Background(), ev); err != nil {
				tb.Errorf("follow event: %v", err)
			}
		}
	}()
	began := time.Now()
	e.drain(tb, 4)
	wg.Wait()
	took := time.Since(began)
	ddb := e.counter.Counts()
	tb.Logf("%d followers backfilled in %s; DynamoDB requests %v", n, took.Round(time.Millisecond), ddb)

	got := e.status(tb)
	if got.ID != run.ID || got.Status != backfill.Done || got.FinishedAt.IsZero() {
		tb.Fatalf("run = %+v", got)
	}
	// Pages of 10,000, then the empty page that ends the list (25,000 =
	// 10,000 + 10,000 + 5,000 + the empty one), cut into chunks.
	want := backfill.Run{Total: n, Pages: (n+9999)/10000 + 1, Seen: n, Chunks: (n + chunk - 1) / chunk, WithoutUnionID: wantNoUnion}
	want.ChunksDone = want.Chunks
	if got.Total != want.Total || got.Pages != want.Pages || got.Seen != want.Seen || got.Chunks != want.Chunks ||
		got.ChunksDone != want.ChunksDone || got.WithoutUnionID != want.WithoutUnionID || got.Failed != 0 || got.Unfollowed != 0 {
		tb.Errorf("counts = %+v, want %+v", got, want)
	}
	// Those who logged in during the run are linked or waiting depending
	// on who came first; together the two are everyone with a unionid.
	if got.Linked+got.Waiting != n-wantNoUnion || got.Linked < len(before) || got.Linked > len(mp) || got.Pending() != 0 {
		tb.Errorf("linked %d, waiting %d, pending %d", got.Linked, got.Waiting, got.Pending())
	}

	// One person per follower: no duplicate from a login or a follow event
	// racing the backfill, and one person per unionid.
	people := e.livePeople(tb)
	if len(people) != n {
		tb.Errorf("%d people for %d followers", len(people), n)
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
			tb.Fatalf("person %s has no followed OA identity: %+v", p.UID, p)
		}
	}
	for u, c := range byUnion {
		if c != 1 {
			tb.Errorf("unionid %s on %d people", u, c)
		}
	}
	if len(byUnion) != n-wantNoUnion || linked != len(mp) {
		tb.Errorf("%d unionids, %d linked people; want %d and %d", len(byUnion), linked, n-wantNoUnion, len(mp))
	}
	for _, f := range append(mp[:3:3], mp[len(mp)-3:]...) {
		a, err := e.people.Lookup(context.Background(), identity.MPKey(mpApp, f.MPOpenID))
		if err != nil {
			tb.Fatal(err)
		}
		b, err := e.people.Lookup(context.Background(), identity.OAKey(oaApp, f.OAOpenID))
		if err != nil || a.UID != b.UID {
			tb.Errorf("%s: mini program on %s, official account on %s (%v)", f.ID, a.UID, b.UID, err)
		}
	}
	for _, f := range noUnion[:3] {
		p, err := e.people.Lookup(context.Background(), identity.OAKey(oaApp, f.OAOpenID))
		if err != nil || p.UnionID != "" || p.Linked() {
			tb.Errorf("%s without unionid: %+v %v", f.ID, p, err)
		}
	}
	return took, ddb
}

// followerAPIs are the platform calls a backfill makes, by either method.
var followerAPIs = []string{"/cgi-bin/user/get", "/cgi-bin/user/info/batchget", "/cgi-bin/user/info"}

// slowWeChat injects latency on every follower API until the test ends.
func slowWeChat(b *testing.B, sb *sandbox.Sandbox, latency time.Duration) {
	for _, p := range followerAPIs {
		if err := sb.InjectFault(sandbox.Fault{Path: p, Latency: latency}); err != nil {
			b.Fatal(err)
		}
	}
}

func wechatCalls(sb *sandbox.Sandbox) int {
	n := 0
	for _, p := range followerAPIs {
		n += sb.Calls(p)
	}
	return n
}

// BenchmarkBackfill is the side-by-side run of the issue: 100,000 sandbox
// followers with 20 ms of latency on every WeChat call, linked by
// wxbridge's backfill (pages of 10,000, chunks of 100 in parallel: 5
// pollers, 4 jobs at once each, as MaximumConcurrency 5 allows) and by the
// naive method (list, then one user/info and one Link per follower, in
// sequence). The naive method would take over half an hour, so it runs on
// a sample of 2,000 followers and is scaled linearly: its line says so.
// Both link into moto, which serializes every DynamoDB request.
func BenchmarkBackfill(b *testing.B) {
	const (
		n       = 100_000
		sample  = 2_000
		latency = 20 * time.Millisecond
		spec    = 0.1 // share without unionid
	)
	ctx := context.Background()

	e := newEnv(b)
	e.h.Concurrency = 4
	if _, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: n, WithoutUnionIDShare: spec}); err != nil {
		b.Fatal(err)
	}
	slowWeChat(b, e.sb, latency)
	e.counter.Counts()
	b.ResetTimer()
	began := time.Now()
	e.start(b)
	e.drain(b, 5)
	ours := time.Since(began)
	b.StopTimer()
	oursCalls := wechatCalls(e.sb)
	ddb := e.counter.Counts()
	r := e.status(b)
	if r.Status != "done" || r.Seen != n || r.Waiting+r.WithoutUnionID != n {
		b.Fatalf("backfill run = %+v", r)
	}

	// The naive method on a sample, same sandbox setup and latency.
	nv := newEnv(b)
	if _, err := nv.sb.CreateFollowers(sandbox.FollowersSpec{Count: sample, WithoutUnionIDShare: spec}); err != nil {
		b.Fatal(err)
	}
	slowWeChat(b, nv.sb, latency)
	began = time.Now()
	var openids []string
	for next := ""; ; {
		p, err := nv.wc.FollowerPage(ctx, oaApp, next)
		if err != nil {
			b.Fatal(err)
		}
		openids = append(openids, p.OpenIDs...)
		if p.Last() {
			break
		}
		next = p.NextOpenID
	}
	for _, id := range openids {
		u, err := nv.wc.Follower(ctx, oaApp, id)
		if err != nil {
			b.Fatal(err)
		}
		s := identity.Sighting{OA: &identity.OASighting{AppID: oaApp, OpenID: id, Follow: &identity.Follow{Subscribed: true, At: time.Unix(u.SubscribeTime, 0)}}, UnionID: u.UnionID}
		if _, err := nv.people.Link(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	naiveSample := time.Since(began)
	naiveSampleCalls := wechatCalls(nv.sb)
	if len(openids) != sample {
		b.Fatalf("naive listed %d", len(openids))
	}
	// Scaled to n: one user/info per follower, and user/get's pages (a full
	// last page is followed by an empty one).
	naiveCalls := n + n/10000 + 1
	naive := time.Duration(float64(naiveSample) * n / sample)

	fmt.Fprintf(os.Stdout, "\nfollower backfill, %d sandbox followers, %s per WeChat call, DynamoDB in moto\n", n, latency)
	fmt.Fprintf(os.Stdout, "%-44s %14s %14s\n", "method", "wall time", "WeChat calls")
	fmt.Fprintf(os.Stdout, "%-44s %14s %14d\n", "wxbridge backfill (measured)", ours.Round(time.Millisecond), oursCalls)
	fmt.Fprintf(os.Stdout, "%-44s %14s %14d\n", fmt.Sprintf("naive, measured on %d followers", sample), naiveSample.Round(time.Millisecond), naiveSampleCalls)
	fmt.Fprintf(os.Stdout, "%-44s %14s %14d\n", fmt.Sprintf("naive, EXTRAPOLATED linearly to %d", n), naive.Round(time.Second), naiveCalls)
	fmt.Fprintf(os.Stdout, "%-44s %13.1fx %13.1fx\n", "naive / wxbridge", float64(naive)/float64(ours), float64(naiveCalls)/float64(oursCalls))
	fmt.Fprintf(os.Stdout, "wxbridge: %d pages, %d chunks; DynamoDB requests %v\n\n", r.Pages, r.Chunks, ddb)
	b.ReportMetric(ours.Seconds(), "backfill-s")
	b.ReportMetric(float64(oursCalls), "backfill-wechat-calls")
	b.ReportMetric(naive.Seconds(), "naive-extrapolated-s")
	b.ReportMetric(float64(naiveCalls), "naive-wechat-calls")
}
