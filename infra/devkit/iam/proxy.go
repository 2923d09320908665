package iam

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Options configure a Proxy.
type Options struct {
	// Upstream is where allowed calls go: moto, or an awsfault proxy in
	// front of it.
	Upstream string
	// Handlers serve the allowed calls of a service (by its SigV4 name)
	// in-process instead: "lambda" is the devstack's Invoke API.
	Handlers map[string]http.Handler
	// OnDeny, when set, hears of every denial (the devstack logs them).
	OnDeny func(Denial)
}

// maxBody bounds the request bodies the proxy reads (DynamoDB's largest
// request is 16 MB).
const maxBody = 32 << 20

// Proxy holds every call that reaches it to its caller's policies and
// forwards the allowed ones. A denied call is answered as AWS answers it:
// AccessDeniedException in the service's protocol, which the SDK does not
// retry.
type Proxy struct {
	ch       *Checker
	opts     Options
	rp       *httputil.ReverseProxy
	srv      *http.Server
	url      string
	closer   sync.Once
	mu       sync.Mutex
	denials  []Denial
	checkDur time.Duration
	checked  int
}

// Start serves a proxy for ch on a free loopback port.
func Start(ch *Checker, o Options) (*Proxy, error) {
	u, err := url.Parse(o.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("iam: upstream %q is not an http(s) URL", o.Upstream)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("iam: listen: %w", err)
	}
	p := &Proxy{ch: ch, opts: o, url: "http://" + ln.Addr().String()}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64 // many functions' calls at once
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // signed (SigV4): keep the client's
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client is gone
			}
			http.Error(w, fmt.Sprintf("iam: forwarding to %s: %v", o.Upstream, err), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// Checker is the checker the proxy consults.
func (p *Proxy) Checker() *Checker { return p.ch }

// URL is where functions send their AWS calls.
func (p *Proxy) URL() string { return p.url }

// Config is cfg for function (its logical ID): every service's endpoint
// at the proxy, and credentials that name the function.
func (p *Proxy) Config(cfg aws.Config, function string) aws.Config {
	cfg = cfg.Copy()
	cfg.BaseEndpoint = aws.String(p.url)
	cfg.Credentials = credentials.NewStaticCredentialsProvider(AccessKeyID(function), "local-iam-check", "")
	return cfg
}

// Denials returns the calls denied so far, oldest first.
func (p *Proxy) Denials() []Denial {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Denial(nil), p.denials...)
}

// CheckTime is the time spent deciding calls so far, and how many.
func (p *Proxy) CheckTime() (time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checkDur, p.checked
}

// Close stops the proxy and drops its connections. (Shutdown would wait
// up to 5 s for a connection the SDK dialled and never used.)
func (p *Proxy) Close() {
	p.closer.Do(func() { p.srv.Close() })
}

// ServeHTTP checks r and forwards it, or answers AccessDenied.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return // the client went away mid-request
	}
	if len(body) > maxBody {
		http.Error(w, fmt.Sprintf("iam: request body over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
		return
	}
	start := time.Now()
	d, c := p.ch.check(r, body)
	elapsed := time.Since(start)
	p.mu.Lock()
	p.checkDur += elapsed
	p.checked++
	if d != nil {
		p.denials = append(p.denials, *d)
	}
	p.mu.Unlock()
	if d != nil {
		if p.opts.OnDeny != nil {
			p.opts.OnDeny(*d)
		}
		deny(w, c, d.Message)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if h, ok := p.opts.Handlers[c.service]; ok {
		h.ServeHTTP(w, r)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// deny answers AccessDenied as c's service does.
func deny(w http.ResponseWriter, c call, msg string) {
	id := requestID()
	h := w.Header()
	h.Set("X-Amzn-RequestId", id)
	switch c.protocol {
	case protoQuery:
		var b strings.Builder
		b.WriteString(xml.Header)
		b.WriteString("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>")
		xml.EscapeText(&b, []byte(msg))
		fmt.Fprintf(&b, "</Message><Detail/></Error><RequestId>%s</RequestId></ErrorResponse>", id)
		h.Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, b.String())
	case protoJSON:
		// DynamoDB and SQS answer with coral's shape ID; Secrets Manager and
		// EventBridge (JSON 1.1) with the bare code.
		typ, status := "AccessDeniedException", http.StatusBadRequest
		switch c.service {
		case "dynamodb":
			typ = "com.amazon.coral.service#AccessDeniedException"
		case "sqs":
			typ, status = "com.amazon.coral.service#AccessDeniedException", http.StatusForbidden
			// SQS is query-compatible: the SDK reports this header's code.
			h.Set("X-Amzn-Query-Error", "AccessDenied;Sender")
		}
		body, _ := json.Marshal(map[string]string{"__type": typ, "Message": msg})
		h.Set("Content-Type", "application/x-amz-json-"+c.json)
		if c.service == "dynamodb" {
			// DynamoDB signs every answer with a CRC32 the SDK checks.
			h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
		}
		w.WriteHeader(status)
		w.Write(body)
	default:
		// REST-JSON (Lambda): the code in X-Amzn-ErrorType, HTTP 403.
		body, _ := json.Marshal(map[string]string{"Type": "User", "Message": msg})
		h.Set("X-Amzn-ErrorType", "AccessDeniedException")
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write(body)
	}
}

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
