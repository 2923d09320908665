package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	defaultAPIBase  = "https://api.weixin.qq.com"
	defaultOpenBase = "https://open.weixin.qq.com"
	defaultTimeout  = 5 * time.Second

	// maxBody bounds what is read from one answer. The largest JSON answers
	// we expect are user/get pages (10,000 openids, about 0.4 MB).
	maxBody = 4 << 20

	// maxCodeLen bounds a wx.login code before it goes into a URL; real
	// codes are 32 characters.
	maxCodeLen = 256
)

// sensitiveParams are query parameters whose values must never appear in an
// error text or a log line.
var sensitiveParams = []string{"secret", "js_code", "code", "access_token", "refresh_token"}

// Options configures a Client. The zero value talks to the real platform.
type Options struct {
	// APIBase is the API origin, default https://api.weixin.qq.com. Tests and
	// the devstack point it at the sandbox.
	APIBase string
	// OpenBase is the origin of browser-facing pages (web OAuth), default
	// https://open.weixin.qq.com.
	OpenBase string
	// HTTPClient defaults to a client with a 5 s timeout that refuses
	// redirects.
	HTTPClient *http.Client
	// Tokens supplies access tokens to the APIs that take one; see
	// TokenSource. Clients that only log users in need none.
	Tokens TokenSource
	// Metrics, when set, counts every errcode answer as WeChatErrors by
	// api and errcode (an *observe.Metrics).
	Metrics Counter
}

// Counter records one occurrence of a metric with dimensions.
type Counter interface {
	Count(name string, dims ...string)
}

// Client calls the WeChat server APIs and returns typed answers. It is safe
// for concurrent use.
type Client struct {
	apiBase  string
	openBase string
	hc       *http.Client
	tokens   TokenSource
	metrics  Counter
}

// New returns a Client for o.
func New(o Options) *Client {
	c := &Client{
		apiBase:  strings.TrimRight(o.APIBase, "/"),
		openBase: strings.TrimRight(o.OpenBase, "/"),
		hc:       o.HTTPClient,
		tokens:   o.Tokens,
		metrics:  o.Metrics,
	}
	if c.apiBase == "" {
		c.apiBase = defaultAPIBase
	}
	if c.openBase == "" {
		c.openBase = defaultOpenBase
	}
	if c.hc == nil {
		c.hc = &http.Client{
			Timeout: defaultTimeout,
			// The platform never redirects API calls. Following one would
			// send a POST body carrying the secret somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return c
}

// APIBase returns the API origin without a trailing slash.
func (c *Client) APIBase() string { return c.apiBase }

// OpenBase returns the browser-facing origin without a trailing slash.
func (c *Client) OpenBase() string { return c.openBase }

// Session is a mini-program login: jscode2session's answer.
type Session struct {
	OpenID     string
	SessionKey string // decrypts open data; never leaves the server
	UnionID    string // empty unless the app is bound to an open-platform account
}

const redacted = "[redacted]"

// String formats the session with SessionKey redacted.
func (s Session) String() string {
	return fmt.Sprintf("Session{OpenID:%s UnionID:%s SessionKey:%s}", s.OpenID, s.UnionID, redactedIfSet(s.SessionKey))
}

// GoString keeps %#v from printing SessionKey.
func (s Session) GoString() string { return "wechat." + s.String() }

// LogValue logs the session with SessionKey redacted.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("openid", s.OpenID),
		slog.String("unionid", s.UnionID),
		slog.String("session_key", redactedIfSet(s.SessionKey)),
	)
}

// AccessToken is an API access token and how long it stays valid from the
// moment it was issued.
type AccessToken struct {
	Token     string
	ExpiresIn time.Duration
}

// String formats the token with Token redacted.
func (t AccessToken) String() string {
	return fmt.Sprintf("AccessToken{Token:%s ExpiresIn:%s}", redactedIfSet(t.Token), t.ExpiresIn)
}

// GoString keeps %#v from printing Token.
func (t AccessToken) GoString() string { return "wechat." + t.String() }

// LogValue logs the token with Token redacted.
func (t AccessToken) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token", redactedIfSet(t.Token)),
		slog.Duration("expires_in", t.ExpiresIn),
	)
}

func redactedIfSet(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// Code2Session exchanges a wx.login code for the user's openid, session_key
// and (when available) unionid. GET /sns/jscode2session.
func (c *Client) Code2Session(ctx context.Context, appid, secret, code string) (Session, error) {
	const api = "/sns/jscode2session"
	if err := requireCredentials(api, appid, secret); err != nil {
		return Session{}, err
	}
	if code == "" {
		return Session{}, fmt.Errorf("wechat %s: empty code", api)
	}
	if len(code) > maxCodeLen {
		return Session{}, fmt.Errorf("wechat %s: code longer than %d bytes", api, maxCodeLen)
	}
	var r struct {
		OpenID     string `json:"openid"`
		SessionKey string `json:"session_key"`
		UnionID    string `json:"unionid"`
	}
	q := url.Values{
		"appid":      {appid},
		"secret":     {secret},
		"js_code":    {code},
		"grant_type": {"authorization_code"},
	}
	if err := c.get(ctx, api, q, &r); err != nil {
		return Session{}, err
	}
	if r.OpenID == "" || r.SessionKey == "" {
		return Session{}, &transportError{api: api, what: "answer without openid or session_key"}
	}
	return Session{OpenID: r.OpenID, SessionKey: r.SessionKey, UnionID: r.UnionID}, nil
}

// StableToken gets the account's stable access token. With force false every
// caller gets the same token until shortly before it expires; force true
// (20 a day, 30 s apart) replaces it and invalidates the previous one.
// POST /cgi-bin/stable_token.
func (c *Client) StableToken(ctx context.Context, appid, secret string, force bool) (AccessToken, error) {
	const api = "/cgi-bin/stable_token"
	if err := requireCredentials(api, appid, secret); err != nil {
		return AccessToken{}, err
	}
	body := struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}{"client_credential", appid, secret, force}
	var r tokenAnswer
	if err := c.postJSON(ctx, api, nil, body, &r); err != nil {
		return AccessToken{}, err
	}
	return r.token(api)
}

// Token gets a new access token from the classic endpoint, invalidating the
// previous one after a five-minute overlap. GET /cgi-bin/token.
func (c *Client) Token(ctx context.Context, appid, secret string) (AccessToken, error) {
	const api = "/cgi-bin/token"
	if err := requireCredentials(api, appid, secret); err != nil {
		return AccessToken{}, err
	}
	q := url.Values{
		"grant_type": {"client_credential"},
		"appid":      {appid},
		"secret":     {secret},
	}
	var r tokenAnswer
	if err := c.get(ctx, api, q, &r); err != nil {
		return AccessToken{}, err
	}
	return r.token(api)
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (r tokenAnswer) token(api string) (AccessToken, error) {
	if r.AccessToken == "" || r.ExpiresIn <= 0 {
		return AccessToken{}, &transportError{api: api, what: "answer without access_token or expires_in"}
	}
	return AccessToken{Token: r.AccessToken, ExpiresIn: time.Duration(r.ExpiresIn) * time.Second}, nil
}

func requireCredentials(api, appid, secret string) error {
	switch {
	case appid == "":
		return fmt.Errorf("wechat %s: empty appid", api)
	case secret == "":
		return fmt.Errorf("wechat %s: empty secret", api)
	}
	return nil
}

// get calls GET api?q and decodes a successful answer into out.
func (c *Client) get(ctx context.Context, api string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(api, q), nil)
	if err != nil {
		return fmt.Errorf("wechat %s: building request: %s", api, redact(err.Error(), q))
	}
	return c.do(req, api, q, out)
}

// postJSON calls POST api?q with body as JSON and decodes a successful answer
// into out.
func (c *Client) postJSON(ctx context.Context, api string, q url.Values, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("wechat %s: encoding request: %w", api, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(api, q), bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("wechat %s: building request: %s", api, redact(err.Error(), q))
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, api, q, out)
}

func (c *Client) url(api string, q url.Values) string {
	u := c.apiBase + api
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// do sends req and reads the answer. Every answer, success or not, comes as
// HTTP 200 with JSON; an error carries a nonzero errcode, a success usually
// omits errcode (some APIs send errcode 0 and errmsg "ok").
func (c *Client) do(req *http.Request, api string, q url.Values, out any) error {
	req.Header.Set("Accept", "application/json")
	var conn connTrace
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), conn.hooks()))
	resp, err := c.hc.Do(req)
	if err != nil {
		if conn.neverGot() {
			return notSent(sendError(api, q, err))
		}
		return sendError(api, q, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // let the connection be reused
		return &transportError{api: api, what: "unexpected HTTP status " + strconv.Itoa(resp.StatusCode)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return sendError(api, q, err)
	}
	if len(body) > maxBody {
		return &transportError{api: api, what: fmt.Sprintf("answer larger than %d bytes", maxBody)}
	}
	var env struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return &transportError{api: api, what: "unreadable answer: " + err.Error(), cause: err}
	}
	if env.ErrCode != 0 {
		if c.metrics != nil {
			c.metrics.Count("WeChatErrors", "api", api, "errcode", strconv.Itoa(env.ErrCode))
		}
		return newError(api, env.ErrCode, env.ErrMsg)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return &transportError{api: api, what: "unreadable answer: " + err.Error(), cause: err}
	}
	return nil
}

// connTrace follows a request's search for a connection. net/http's
// Transport calls GetConn as it starts looking for one, and GotConn before
// it writes a byte of the request on the one it got (for each try, HTTP/1
// and HTTP/2, in the goroutine of the call): a request that looked for a
// connection and never got one was never written (a refused connection, a
// DNS or TLS failure, a deadline while dialing). A RoundTripper that is not
// net/http's calls neither hook, and its failures are never taken for
// unsent.
type connTrace struct{ looked, got atomic.Bool }

func (t *connTrace) hooks() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) { t.looked.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { t.got.Store(true) },
	}
}

// neverGot reports a request that never got a connection to be written on.
func (t *connTrace) neverGot() bool { return t.looked.Load() && !t.got.Load() }

// sendError turns a failed round trip into a transportError. *url.Error is
// unwrapped and dropped because its text is the full request URL; the cause
// inside (net.Error, context error) is kept for errors.Is/As.
func sendError(api string, q url.Values, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &transportError{api: api, what: redact(err.Error(), q), cause: err}
}

// redact removes the values of sensitive query parameters from s, raw and
// URL-encoded, in case a cause mentions the URL after all.
func redact(s string, q url.Values) string {
	for _, k := range sensitiveParams {
		for _, v := range q[k] {
			if v == "" {
				continue
			}
			s = strings.ReplaceAll(s, v, redacted)
			s = strings.ReplaceAll(s, url.QueryEscape(v), redacted)
		}
	}
	return s
}
