// Package awsfault makes DynamoDB, SQS, Secrets Manager and EventBridge fail
// on the wire.
// A Proxy sits between AWS SDK clients and moto (one endpoint for every
// service) and forwards each request untouched, unless a Rule claims it:
// then it answers the error AWS would answer, in the service's own protocol
// (JSON 1.0 for DynamoDB and SQS, JSON 1.1 for Secrets Manager, XML for a
// query-protocol request), or holds the request until the client gives up.
// The SDK sees a real AWS error, so its own retryer decides, as in AWS, what
// is retried.
//
// The devstack puts a Proxy in front of moto for the functions and serves
// its Control handler at /_dev/faults; see docs/devstack.md.
package awsfault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Services a rule can name, as they appear in a request's SigV4 credential
// scope.
const (
	DynamoDB       = "dynamodb"
	SQS            = "sqs"
	SecretsManager = "secretsmanager"
	EventBridge    = "events"
)

// Failures a rule can inject.
const (
	// InternalServerError answers the service's own HTTP 500 error:
	// InternalServerError (DynamoDB), InternalFailure (SQS),
	// InternalServiceError (Secrets Manager), InternalException
	// (EventBridge).
	InternalServerError = "InternalServerError"
	// ThrottlingException answers the service's throttling error (HTTP
	// 400): ThrottlingException (DynamoDB, Secrets Manager, EventBridge)
	// or RequestThrottled (SQS).
	ThrottlingException = "ThrottlingException"
	// ProvisionedThroughputExceeded answers DynamoDB's
	// ProvisionedThroughputExceededException (HTTP 400).
	ProvisionedThroughputExceeded = "ProvisionedThroughputExceededException"
	// Timeout answers nothing: the request is held until the client gives
	// up (or MaxHold passes), then its connection is closed.
	Timeout = "timeout"
	// LostAnswer performs the request (DynamoDB writes the item, SQS takes
	// the message), then throws the service's answer away and answers its
	// HTTP 500 instead: the SDK retries a call that already happened, as
	// when an answer is lost on the way back in AWS.
	LostAnswer = "lost_answer"
)

// MaxHold bounds how long a Timeout rule holds a request whose client never
// gives up.
const MaxHold = 30 * time.Second

// maxBody bounds the request bodies the proxy reads (DynamoDB's largest
// request is 16 MB).
const maxBody = 32 << 20

// Rule makes matching requests fail. A request matches when it is a call
// of Service, of Operation (any operation when empty) and its body contains
// Match (any body when empty). The next Count matching requests fail with
// Error; Count 0 fails every matching request until the rules are cleared.
type Rule struct {
	Service   string `json:"service"`
	Operation string `json:"operation,omitempty"`
	Match     string `json:"match,omitempty"`
	Count     int    `json:"count"`
	Error     string `json:"error"`
}

// RuleState is a rule as the proxy holds it: its id and how many requests
// it has failed so far.
type RuleState struct {
	ID int `json:"id"`
	Rule
	Fired int `json:"fired"`
}

// ErrRule reports a rule the proxy cannot apply.
var ErrRule = errors.New("awsfault: bad rule")

// Proxy forwards AWS requests to one endpoint and fails those the rules
// claim. Create it with Start; it is safe for concurrent use.
type Proxy struct {
	target *url.URL
	rp     *httputil.ReverseProxy
	srv    *http.Server
	url    string
	done   chan struct{} // closed by Close: held requests let go
	closer sync.Once

	mu      sync.Mutex
	rules   []*RuleState
	nextID  int
	maxHold time.Duration
}

// Start serves a proxy to target (moto's URL) on a free loopback port.
func Start(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("awsfault: target %q is not an http(s) URL", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("awsfault: listen: %w", err)
	}
	p := &Proxy{target: u, url: "http://" + ln.Addr().String(), done: make(chan struct{}), maxHold: MaxHold}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// The Host header is signed (SigV4): keep the one the client
			// signed, as a transparent proxy must.
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client is gone
			}
			http.Error(w, fmt.Sprintf("awsfault: forwarding to %s: %v", target, err), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// URL is where clients send their AWS requests instead of the target.
func (p *Proxy) URL() string { return p.url }

// Config is cfg with every service's endpoint at the proxy: clients built
// from it go through the rules.
func (p *Proxy) Config(cfg aws.Config) aws.Config {
	cfg = cfg.Copy()
	cfg.BaseEndpoint = aws.String(p.url)
	return cfg
}

// Close stops the proxy, dropping any request it holds.
func (p *Proxy) Close() {
	p.closer.Do(func() {
		close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
	})
}

// Add arms r after the rules already armed and returns its state.
func (p *Proxy) Add(r Rule) (RuleState, error) {
	r.Service = strings.ToLower(strings.TrimSpace(r.Service))
	r.Operation = strings.TrimSpace(r.Operation)
	if err := check(r); err != nil {
		return RuleState{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	st := &RuleState{ID: p.nextID, Rule: r}
	p.rules = append(p.rules, st)
	return *st, nil
}

func check(r Rule) error {
	switch {
	case !slices.Contains([]string{DynamoDB, SQS, SecretsManager, EventBridge}, r.Service):
		return fmt.Errorf("%w: service %q: want dynamodb, sqs, secretsmanager or events", ErrRule, r.Service)
	case r.Count < 0:
		return fmt.Errorf("%w: count %d: want 0 (every matching request) or more", ErrRule, r.Count)
	case r.Error == Timeout, r.Error == LostAnswer:
		return nil
	}
	if _, ok := failureOf(r.Service, r.Error); !ok {
		return fmt.Errorf("%w: error %q for %s: want InternalServerError, ThrottlingException, timeout, lost_answer or (dynamodb only) ProvisionedThroughputExceededException", ErrRule, r.Error, r.Service)
	}
	return nil
}

// List returns every rule armed since the last Clear, spent ones included,
// in the order they were added.
func (p *Proxy) List() []RuleState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]RuleState, len(p.rules))
	for i, st := range p.rules {
		out[i] = *st
	}
	return out
}

// Clear disarms and forgets every rule.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// claim returns the first armed rule that c matches, counting it as fired.
func (p *Proxy) claim(c call) (Rule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.rules {
		r := st.Rule
		if r.Service != c.service || (r.Operation != "" && r.Operation != c.operation) ||
			(r.Match != "" && !bytes.Contains(c.body, []byte(r.Match))) || (r.Count > 0 && st.Fired >= r.Count) {
			continue
		}
		st.Fired++
		return r, true
	}
	return Rule{}, false
}

// ServeHTTP forwards r to the target unless a rule claims it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return // the client went away mid-request
	}
	if len(body) > maxBody {
		http.Error(w, fmt.Sprintf("awsfault: request body over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
		return
	}
	c := identify(r, body)
	if rule, ok := p.claim(c); ok {
		switch rule.Error {
		case Timeout:
			p.hold(w, r)
			return
		case LostAnswer:
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			p.rp.ServeHTTP(httptest.NewRecorder(), r) // performed; its answer is lost
		}
		f, _ := failureOf(c.service, InternalServerError)
		if rule.Error != LostAnswer {
			f, _ = failureOf(c.service, rule.Error)
		}
		f.answer(w, c)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	p.rp.ServeHTTP(w, r)
}

// hold answers nothing until the client gives up, the hold bound passes or
// the proxy closes, then closes the connection.
func (p *Proxy) hold(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	t := time.NewTimer(p.maxHold)
	p.mu.Unlock()
	defer t.Stop()
	select {
	case <-r.Context().Done():
	case <-t.C:
	case <-p.done:
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // HTTP/2: reset the stream instead
	}
	conn.Close()
}
