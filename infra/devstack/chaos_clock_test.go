package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/awsenv"
)

// The chaos story runs in under a minute although wxbridge's retry delays
// are made for AWS: a send retried after a transient failure comes back
// after a minute, then two, four...; an event the push retry consumer
// failed comes back after the queue's 60 s visibility timeout. The story
// compresses those waits without touching the code under test:
//
//   - a time-lapse proxy between the devstack and moto divides the retry
//     delays the consumers set with ChangeMessageVisibility (the send
//     worker's of a minute or more, the push retry consumer's of 10 s or
//     more; see lapseFrom) by lapseFactor, into a few seconds;
//   - the send worker runs with a sendWorkerTimeout deadline instead of its
//     template timeout of 60 s, as a deployment with Timeout: 12 would. Its
//     ledger claims hold until that deadline plus a margin, so a wait for
//     another worker's claim stays under a minute and is never compressed:
//     compressing it would bring the job back while the claim still holds,
//     again and again, until SQS moved it to the dead-letter queue, which
//     no real run would do;
//   - the queues' own visibility timeouts (what a message whose handler
//     failed without setting one waits) are shortened to a little more than
//     their consumer's timeout.
//
// A knob in the devstack (a time scale, or the retry delays as function
// settings) would replace the first two; see the chaos story's report.
const (
	lapseFactor       = 20
	lapseFloor        = 2 * time.Second
	lapseCeiling      = 5 * time.Second
	sendWorkerTimeout = 12 * time.Second
)

// lapsedVisibility is the queue visibility timeouts of the run, by queue
// logical ID: each a little above its consumer's timeout (send worker:
// sendWorkerTimeout; follow-event: 10 s in template.yaml).
var lapsedVisibility = map[string]int{
	"SendQueue":      int(sendWorkerTimeout/time.Second) + 6,
	"PushRetryQueue": 14,
}

// timeLapse is the proxy: it forwards everything to moto and rewrites only
// the visibility timeout of ChangeMessageVisibility calls.
type timeLapse struct {
	srv        *httptest.Server
	compressed atomic.Int64 // ChangeMessageVisibility calls shortened
	kept       atomic.Int64 // ... left alone (under a minute)
}

func startTimeLapse(target string) (*timeLapse, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	tl := &timeLapse{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil { // else the client is gone (a long poll ended by Close)
				http.Error(w, "chaos time lapse: "+err.Error(), http.StatusBadGateway)
			}
		},
	}
	tl.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == "AmazonSQS.ChangeMessageVisibility" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = tl.lapse(body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		}
		rp.ServeHTTP(w, r)
	}))
	return tl, nil
}

func (tl *timeLapse) URL() string { return tl.srv.URL }
func (tl *timeLapse) Close()      { tl.srv.Close() }

// lapse rewrites a ChangeMessageVisibility request (SQS's JSON protocol).
func (tl *timeLapse) lapse(body []byte) []byte {
	var in map[string]any
	if json.Unmarshal(body, &in) != nil {
		return body
	}
	secs, ok := in["VisibilityTimeout"].(float64)
	url, _ := in["QueueUrl"].(string)
	if !ok || time.Duration(secs)*time.Second < lapseFrom(url) {
		tl.kept.Add(1)
		return body
	}
	d := min(max(time.Duration(secs)*time.Second/lapseFactor, lapseFloor), lapseCeiling)
	in["VisibilityTimeout"] = int(d / time.Second)
	out, err := json.Marshal(in)
	if err != nil {
		return body
	}
	tl.compressed.Add(1)
	return out
}

// lapseFrom is the shortest delay compressed on a queue: on the send queue
// a minute (the send worker's shortest retry delay; a wait for another
// worker's claim is shorter), on the push retry queue 10 s (its retries
// start at 30 s; it waits for no lease through the queue).
func lapseFrom(queueURL string) time.Duration {
	if strings.HasSuffix(queueURL, "PushRetryQueue") {
		return 10 * time.Second
	}
	return time.Minute
}

// withSendWorkerTimeout replaces the send worker's builder, for the next
// Start, with one whose invocations end after timeout; the returned func
// restores it (call it once Start has returned: builders are read there).
func withSendWorkerTimeout(timeout time.Duration) (restore func()) {
	const id = "SendWorkerFunction"
	build := builders[id]
	builders[id] = func(ctx context.Context, env awsenv.Env) (any, error) {
		h, err := build(ctx, env)
		if err != nil {
			return nil, err
		}
		handle, ok := h.(func(context.Context, events.SQSEvent) (events.SQSEventResponse, error))
		if !ok {
			return nil, fmt.Errorf("chaos: the send worker's handler is a %T; teach withSendWorkerTimeout its shape", h)
		}
		return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return handle(ctx, ev)
		}, nil
	}
	return func() { builders[id] = build }
}
