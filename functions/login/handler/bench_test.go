package handler

import (
	"encoding/json"
	"testing"

	"wxbridge/infra/devkit/sandbox"
)

// BenchmarkLogin measures POST /mp/login against moto and the sandbox for a
// person seen for the first time and for a returning one, side by side, and
// reports what each login costs in DynamoDB requests and WeChat calls.
// Targets: a new person takes one transaction plus the reads before it; a
// returning person at most two reads and one write, and never a scan.
func BenchmarkLogin(b *testing.B) {
	for _, kind := range []string{"new_person", "returning_person"} {
		b.Run(kind, func(b *testing.B) {
			e := newEnv(b, func(c *sandbox.Config) { c.LoginPerMinute = 1 << 30 })
			var returning sandbox.Person
			if kind == "returning_person" {
				returning = e.sb.CreatePerson(sandbox.PersonSpec{})
				if status, out := e.login(b, returning.ID, ""); status != 200 {
					b.Fatalf("first login: %d %v", status, out)
				}
			}
			people := make([]sandbox.Person, b.N)
			codes := make([]string, b.N)
			for i := range b.N {
				p := returning
				if kind == "new_person" {
					p = e.sb.CreatePerson(sandbox.PersonSpec{})
				}
				people[i] = p
				codes[i], _ = e.sb.WXLogin(p.ID)
			}
			e.counter.Counts()
			wechatBefore := e.sb.Calls("/sns/jscode2session")
			b.ResetTimer()
			for i := range b.N {
				body, _ := json.Marshal(map[string]string{"code": codes[i]})
				if status, out, _ := e.call(b, "POST /mp/login", string(body), ""); status != 200 {
					b.Fatalf("login: %d %v", status, out)
				}
			}
			b.StopTimer()
			counts := e.counter.Counts()
			n := float64(b.N)
			reads := counts["GetItem"] + counts["BatchGetItem"]
			writes := counts["PutItem"] + counts["UpdateItem"]
			b.ReportMetric(float64(reads)/n, "ddb-reads/op")
			b.ReportMetric(float64(writes)/n, "ddb-writes/op")
			b.ReportMetric(float64(counts["TransactWriteItems"])/n, "ddb-transactions/op")
			b.ReportMetric(float64(counts["Scan"]+counts["Query"])/n, "ddb-scans+queries/op")
			b.ReportMetric(float64(e.sb.Calls("/sns/jscode2session")-wechatBefore)/n, "wechat-calls/op")
		})
	}
}
