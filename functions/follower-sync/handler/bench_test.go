package handler

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/identity"
)

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
