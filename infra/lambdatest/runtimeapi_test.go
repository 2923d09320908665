package lambdatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runtimeAPI is the Lambda Runtime API (2018-06-01) as one execution
// environment sees it: the bootstrap long-polls invocation/next, answers
// each invocation with /response or /error, and reports a failed start to
// init/error. A hand-written server because nothing else on this machine
// plays it; it follows the documented protocol
// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
type runtimeAPI struct {
	srv         *httptest.Server
	functionARN string
	queue       chan *invocation
	done        chan struct{}
	closeOnce   sync.Once

	mu        sync.Mutex
	pending   map[string]*invocation
	firstNext time.Time     // when the first invocation/next arrived
	ready     chan struct{} // closed then
	initErr   *lambdaError
	failed    chan struct{} // closed when init/error arrives
}

// invocation is one event on its way through the runtime.
type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	result   chan result
}

// result is what the bootstrap posted for an invocation.
type result struct {
	Body      []byte
	Err       *lambdaError // from /error
	ErrorType string       // the Lambda-Runtime-Function-Error-Type header
}

// lambdaError is the error document the runtime API takes.
type lambdaError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

func newRuntimeAPI(functionName string) *runtimeAPI {
	a := &runtimeAPI{
		functionARN: "arn:aws:lambda:us-east-1:123456789012:function:" + functionName,
		queue:       make(chan *invocation),
		done:        make(chan struct{}),
		pending:     map[string]*invocation{},
		ready:       make(chan struct{}),
		failed:      make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", a.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", a.response)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", a.invocationError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", a.initError)
	a.srv = httptest.NewServer(mux)
	return a
}

// Addr is AWS_LAMBDA_RUNTIME_API: host:port, no scheme.
func (a *runtimeAPI) Addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// Close ends the long poll and stops the server.
func (a *runtimeAPI) Close() {
	a.closeOnce.Do(func() { close(a.done) })
	a.srv.Close()
}

func (a *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if a.firstNext.IsZero() {
		a.firstNext = time.Now()
		close(a.ready)
	}
	a.mu.Unlock()
	select {
	case inv := <-a.queue:
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", a.functionARN)
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-"+randomHex(4)+"-"+randomHex(12)+";Sampled=0")
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(inv.payload)
	case <-a.done:
		// The environment is shutting down: the bootstrap is killed next.
		http.Error(w, "shutting down", http.StatusGone)
	case <-r.Context().Done():
	}
}

func (a *runtimeAPI) take(w http.ResponseWriter, r *http.Request) *invocation {
	a.mu.Lock()
	inv := a.pending[r.PathValue("id")]
	delete(a.pending, r.PathValue("id"))
	a.mu.Unlock()
	if inv == nil {
		// What Lambda answers for an unknown or already answered id.
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`)
		return nil
	}
	return inv
}

func (a *runtimeAPI) response(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 6<<20+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > 6<<20 {
		// Lambda's synchronous payload limit.
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	inv := a.take(w, r)
	if inv == nil {
		return
	}
	inv.result <- result{Body: body}
	w.WriteHeader(http.StatusAccepted)
}

func (a *runtimeAPI) invocationError(w http.ResponseWriter, r *http.Request) {
	var e lambdaError
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	inv := a.take(w, r)
	if inv == nil {
		return
	}
	inv.result <- result{Err: &e, ErrorType: r.Header.Get("Lambda-Runtime-Function-Error-Type")}
	w.WriteHeader(http.StatusAccepted)
}

func (a *runtimeAPI) initError(w http.ResponseWriter, r *http.Request) {
	var e lambdaError
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.initErr != nil {
		// Lambda accepts one init error per environment.
		w.WriteHeader(http.StatusForbidden)
		return
	}
	a.initErr = &e
	close(a.failed)
	w.WriteHeader(http.StatusAccepted)
}

// invoke delivers payload to the bootstrap and waits for its answer, like
// a synchronous Invoke with the function's timeout.
func (a *runtimeAPI) invoke(ctx context.Context, payload []byte, timeout time.Duration) (result, error) {
	inv := &invocation{id: uuid(), payload: payload, deadline: time.Now().Add(timeout), result: make(chan result, 1)}
	a.mu.Lock()
	a.pending[inv.id] = inv
	a.mu.Unlock()
	ctx, cancel := context.WithDeadline(ctx, inv.deadline.Add(2*time.Second))
	defer cancel()
	select {
	case a.queue <- inv:
	case <-ctx.Done():
		return result{}, fmt.Errorf("the bootstrap did not ask for the invocation: %w", ctx.Err())
	}
	select {
	case res := <-inv.result:
		return res, nil
	case <-ctx.Done():
		return result{}, fmt.Errorf("invocation %s: no answer: %w", inv.id, ctx.Err())
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// uuid is a version-4 UUID, the shape of Lambda request ids.
func uuid() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
