package iam_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/iam"
	"wxbridge/shared/ddb"
)

// BenchmarkCall compares a GetItem and a three-item TransactWriteItems
// made straight to moto with the same calls through the check, and
// reports the check's own decision time per call (check-µs/op).
func BenchmarkCall(b *testing.B) {
	w := newWorld(b)
	ctx := context.Background()
	tbl := aws.String(w.table)
	link := &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
		{Put: &ddbtypes.Put{TableName: tbl, Item: ddb.Key("P#bench")}},
		{Put: &ddbtypes.Put{TableName: tbl, Item: ddb.Key("P#bench-mp")}},
		{Update: &ddbtypes.Update{TableName: tbl, Key: ddb.Key("P#bench-union"), UpdateExpression: aws.String("SET n = :n"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":n": ddb.N(1)}}},
	}}
	for _, route := range []struct {
		name string
		cfg  aws.Config
	}{
		{"moto", awstest.Config(nil)},
		{"through_check", w.proxy.Config(awstest.Config(nil), "Fn")},
	} {
		db := dynamodb.NewFromConfig(route.cfg)
		b.Run("GetItem/"+route.name, func(b *testing.B) {
			d0, n0 := w.proxy.CheckTime()
			for b.Loop() {
				if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tbl, Key: ddb.Key("P#bench")}); err != nil {
					b.Fatal(err)
				}
			}
			report(b, w.proxy, d0, n0)
		})
		b.Run("TransactWriteItems/"+route.name, func(b *testing.B) {
			d0, n0 := w.proxy.CheckTime()
			for b.Loop() {
				if _, err := db.TransactWriteItems(ctx, link); err != nil {
					b.Fatal(err)
				}
			}
			report(b, w.proxy, d0, n0)
		})
	}
}

func report(b *testing.B, p *iam.Proxy, d0 time.Duration, n0 int) {
	if d, n := p.CheckTime(); n > n0 {
		b.ReportMetric(float64((d-d0).Microseconds())/float64(n-n0), "check-µs/op")
	}
}

// BenchmarkDecide is Checker.Check alone on a recorded request, without
// the network.
func BenchmarkDecide(b *testing.B) {
	w := newWorld(b)
	var req *http.Request
	var body []byte
	rec := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		req = r.Clone(context.Background())
		buf := new(bytes.Buffer)
		buf.ReadFrom(r.Body)
		body = buf.Bytes()
	})
	srv := httptest.NewServer(rec)
	defer srv.Close()
	cfg := w.proxy.Config(awstest.Config(nil), "Fn")
	cfg.BaseEndpoint = aws.String(srv.URL)
	cfg.RetryMaxAttempts = 1
	dynamodb.NewFromConfig(cfg).GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(w.table), Key: ddb.Key("P#1")})
	ch := w.proxy.Checker()
	for b.Loop() {
		if d := ch.Check(req, body); d != nil {
			b.Fatal(d.Message)
		}
	}
}

// BenchmarkHop isolates what the check costs a call: a GetItem answered at
// once by a local server, straight and through the check (moto's own
// 4-6 ms per call would hide it).
func BenchmarkHop(b *testing.B) {
	w := newWorld(b)
	fast := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/x-amz-json-1.0")
		rw.Write([]byte(`{}`))
	}))
	defer fast.Close()
	p, err := iam.Start(w.proxy.Checker(), iam.Options{Upstream: fast.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	direct := w.proxy.Config(awstest.Config(nil), "Fn")
	direct.BaseEndpoint = aws.String(fast.URL)
	ctx := context.Background()
	for _, route := range []struct {
		name string
		cfg  aws.Config
	}{{"straight", direct}, {"through_check", p.Config(awstest.Config(nil), "Fn")}} {
		db := dynamodb.NewFromConfig(route.cfg)
		b.Run(route.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(w.table), Key: ddb.Key("P#bench")}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
