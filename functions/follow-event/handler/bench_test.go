package handler

import (
	"context"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat/push"
)

// BenchmarkPush measures a safe-mode push end to end (the sandbox pushing
// over HTTP, moto behind) for a new follower and for WeChat's retry of a
// push already handled, side by side, with what each costs in DynamoDB
// requests and WeChat calls. Target: a duplicate costs one conditional
// write and nothing else.
func BenchmarkPush(b *testing.B) {
	b.Run("new_follower", func(b *testing.B) {
		e := newEnv(b, push.Safe)
		people := make([]sandbox.Person, b.N)
		for i := range people {
			people[i] = e.sb.CreatePerson(sandbox.PersonSpec{})
		}
		e.counter.Counts()
		calls := e.sb.Calls("/cgi-bin/user/info")
		b.ResetTimer()
		for i := range b.N {
			e.follow(b, people[i].ID, "")
		}
		b.StopTimer()
		report(b, e, e.sb.Calls("/cgi-bin/user/info")-calls)
	})
	b.Run("duplicate", func(b *testing.B) {
		e := newEnv(b, push.Safe)
		p := e.sb.CreatePerson(sandbox.PersonSpec{})
		req := e.sealed(b, e.subscribeEvent(p))
		if resp, _ := e.h.HTTP(context.Background(), req); resp.Body != "success" {
			b.Fatal(resp)
		}
		e.counter.Counts()
		calls := e.sb.Calls("/cgi-bin/user/info")
		b.ResetTimer()
		for range b.N {
			if resp, _ := e.h.HTTP(context.Background(), req); resp.Body != "success" {
				b.Fatal(resp)
			}
		}
		b.StopTimer()
		report(b, e, e.sb.Calls("/cgi-bin/user/info")-calls)
	})
}

func report(b *testing.B, e *env, wechatCalls int) {
	counts := e.counter.Counts()
	n := float64(b.N)
	b.ReportMetric(float64(counts["GetItem"]+counts["BatchGetItem"])/n, "ddb-reads/op")
	b.ReportMetric(float64(counts["PutItem"]+counts["UpdateItem"]+counts["DeleteItem"])/n, "ddb-writes/op")
	b.ReportMetric(float64(counts["TransactWriteItems"])/n, "ddb-transactions/op")
	b.ReportMetric(float64(wechatCalls)/n, "wechat-calls/op")
}
