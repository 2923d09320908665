package tokens

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/backoff"
	"wxbridge/shared/observe"
	"wxbridge/shared/wechat"
)

const (
	// earlyRead is how long before a token's expiry a Source stops trusting
	// its cached copy and reads the secret again. The refresher replaces a
	// token in the last five minutes of its life (the platform issues the
	// next stable token no earlier), and the old one keeps working to its
	// expiry, so two minutes leave callers time to move over.
	earlyRead = 2 * time.Minute
	// recheck is how long a read is trusted once inside earlyRead, while a
	// refused token is still stored, or while Secrets Manager fails and the
	// cached token is still valid.
	recheck = 15 * time.Second
	// retryUnusable is how long "no usable token" is remembered, so that a
	// burst of calls does not become a burst of secret reads.
	retryUnusable = 2 * time.Second
	// readTimeout bounds one Secrets Manager read, whoever waits for it.
	readTimeout = 5 * time.Second
	// DefaultWait is how long Refused (or Token, for a first token) waits
	// for the refresher: a cold start, a lease, a platform call and a
	// secret write.
	DefaultWait = 5 * time.Second
	// requestSpacing is the least time between two refresh requests for the
	// same token, and how long a failed recovery is remembered: the platform
	// spaces forced refreshes 30 s apart anyway.
	requestSpacing = 30 * time.Second
	// askSpacing is the least time between two requests for a plain run
	// (no token stored yet, or only an expired one), and how long Token
	// fails at once after such a request went unanswered: the refresher
	// takes a second or two (a cold start, the lease, one platform call),
	// and a process should not keep it busy.
	askSpacing = 5 * time.Second
)

// ErrNoToken is the root of every error a Source returns when it has no
// usable token. The error also carries the reason's class: the refresher's
// recorded failure (40164 is configuration) or transient.
var ErrNoToken = errors.New("tokens: no usable access token")

// ErrUnknownApp reports an appid the Source has no token secret for.
var ErrUnknownApp = errors.New("tokens: no token secret configured for this appid")

// Error is why a Source has no usable token for an app. It matches
// ErrNoToken with errors.Is and the refresher's recorded platform answer, if
// any, with errors.As(*wechat.Error); wechat.ClassOf reads its class.
type Error struct {
	AppID string
	class wechat.Class
	cause error
}

func (e *Error) Error() string {
	return fmt.Sprintf("tokens: no usable access token for %s: %v", e.AppID, e.cause)
}

// Unwrap returns ErrNoToken and the cause.
func (e *Error) Unwrap() []error { return []error{ErrNoToken, e.cause} }

// Class is what callers should do: transient (retry later) unless the
// refresher recorded a platform answer of another class, such as config for
// 40164.
func (e *Error) Class() wechat.Class { return e.class }

// unusable explains why st holds no usable token.
func unusable(appid string, st Stored) error {
	if st.Failure != nil {
		return &Error{AppID: appid, class: st.Failure.class(), cause: fmt.Errorf("the token-refresher failed: %w", st.Failure.err())}
	}
	what := "the token-refresher has not stored a token yet"
	if st.AccessToken != "" {
		what = "the stored token expired at " + st.ExpiresAt.Format(time.RFC3339)
	}
	return &Error{AppID: appid, class: wechat.ClassTransient, cause: errors.New(what)}
}

// errNoFresher is Refused's answer when the refresher did not replace the
// refused token in time.
var errNoFresher = errors.New("tokens: the refused token was not replaced in time")

// Options configures a Source.
type Options struct {
	// Secrets maps each appid to its token secret (ARN or name).
	Secrets map[string]string
	// Reader reads the secrets.
	Reader awsenv.SecretGetter
	// Refresher delivers refresh requests (forced, or for a first token);
	// nil never asks for one.
	Refresher Invoker
	// Now defaults to time.Now. Tests run it on the sandbox's clock.
	Now func() time.Time
	// Wait bounds how long Refused waits for a fresher token, and Token for
	// a first one; default DefaultWait.
	Wait time.Duration
	// Log defaults to discarding; Metrics may be nil.
	Log     *slog.Logger
	Metrics *observe.Metrics
}

// Source hands out the access tokens the token-refresher stores, to every
// WeChat call that takes one. It implements wechat.TokenSource and is safe
// for concurrent use; keep one per process so that its cache outlives
// invocations.
type Source struct {
	reader    awsenv.SecretGetter
	refresher Invoker
	now       func() time.Time
	wait      time.Duration
	log       *slog.Logger
	metrics   *observe.Metrics
	apps      map[string]*app // fixed after NewSource
}

var _ wechat.TokenSource = (*Source)(nil)

// app is a Source's state for one appid.
type app struct {
	id       string
	secretID string

	mu         sync.Mutex
	cur        Stored    // the last successful read
	readErr    error     // the last read's error, nil after a success
	validUntil time.Time // until when cur (or readErr) is trusted without a read
	refused    string    // the last token the platform refused
	read       *flight   // the read in progress, shared by every caller
	recovery   *flight   // the wait in progress for a token: a refused one's replacement, or the first
	forcedFP   string    // fingerprint the last forced-refresh request named
	forcedAt   time.Time // when it was sent
	askedAt    time.Time // when the last request for a plain run was sent
	gaveUp     string    // the last refused token that was not replaced in time
	gaveUpAt   time.Time
	missedAt   time.Time // when the last wait for a first token ended without one
}

// flight is one piece of work many callers wait for.
type flight struct {
	done  chan struct{}
	st    Stored
	token string
	err   error
}

func newFlight() *flight { return &flight{done: make(chan struct{})} }

func (f *flight) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewSource returns a Source for o.
func NewSource(o Options) *Source {
	s := &Source{
		reader:    o.Reader,
		refresher: o.Refresher,
		now:       o.Now,
		wait:      o.Wait,
		log:       o.Log,
		metrics:   o.Metrics,
		apps:      make(map[string]*app, len(o.Secrets)),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.wait <= 0 {
		s.wait = DefaultWait
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for appid, secretID := range o.Secrets {
		if appid != "" && secretID != "" {
			s.apps[appid] = &app{id: appid, secretID: secretID}
		}
	}
	return s
}

func (s *Source) app(appid string) (*app, error) {
	a := s.apps[appid]
	if a == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownApp, appid)
	}
	return a, nil
}

// Token returns appid's current access token: from memory while the last
// read is trusted, else from one Secrets Manager read shared by every
// concurrent caller. When the secret cannot be read, a cached token that has
// not expired is still returned. When the secret holds no usable token and
// the refresher may simply not have run yet (a fresh deploy), Token asks it
// for a run and waits, within ctx, for the token (see first).
func (s *Source) Token(ctx context.Context, appid string) (string, error) {
	a, err := s.app(appid)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	if s.now().Before(a.validUntil) {
		tok, err := s.cached(a)
		a.mu.Unlock()
		if err != nil {
			return s.first(ctx, a, err)
		}
		return tok, nil
	}
	a.mu.Unlock()
	f, err := s.read(ctx, a)
	if err != nil {
		return "", err
	}
	if f.err != nil {
		// The read failed; a still-valid cached token wins over the outage.
		a.mu.Lock()
		defer a.mu.Unlock()
		return s.cached(a)
	}
	if !f.st.Usable(s.now()) {
		return s.first(ctx, a, unusable(appid, f.st))
	}
	return f.st.AccessToken, nil
}

// first is Token's answer when the secret, as last read, holds no usable
// token (why is the error noToken). If the refresher may simply not have
// run yet, first asks it for a run of the app (no force budget is spent on
// an app without a token) and waits, within ctx and the Source's Wait, for
// the token to appear, or for the refresher's recorded failure, which
// ends the wait at once and is the answer: every concurrent caller shares
// one request and one wait, and after a wait that ended without a token
// callers get noToken at once until askSpacing has passed, so a refresher
// that cannot deliver is neither flooded nor waited for over and over.
func (s *Source) first(ctx context.Context, a *app, noToken error) (string, error) {
	if s.refresher == nil {
		return "", noToken
	}
	now := s.now()
	a.mu.Lock()
	f := a.recovery
	if f == nil {
		if a.readErr != nil || !refresherMayHelp(a.cur, now) || (!a.missedAt.IsZero() && now.Sub(a.missedAt) < askSpacing) {
			a.mu.Unlock()
			return "", noToken
		}
		f = newFlight()
		a.recovery = f
		go s.recover(context.WithoutCancel(ctx), a, "", f)
	}
	a.mu.Unlock()
	werr := f.wait(ctx)
	if werr == nil && f.err == nil {
		return f.token, nil
	}
	// Tell the caller what the secret says now: the refresher may have
	// recorded why it has no token (40164 on a first deploy, with the rid).
	a.mu.Lock()
	tok, err := s.cached(a)
	a.mu.Unlock()
	switch {
	case err == nil:
		return tok, nil
	case werr != nil:
		return "", fmt.Errorf("%w (stopped waiting for the token-refresher: %w)", err, werr)
	}
	return "", err
}

// refresherMayHelp reports whether a run of the refresher may give a token
// that st, read at now, lacks: it has not run yet (a fresh deploy), or it
// has not run for a while (only an expired token, and no failure recorded).
// Once it has recorded a failure, asking again would make every process
// that sees the failure ask the platform again, every few seconds, for
// what is likely the same answer (40164 until the IP is whitelisted, or -1
// while WeChat is busy): the failure is the answer until the schedule's
// next run.
func refresherMayHelp(st Stored, now time.Time) bool {
	return !st.Usable(now) && st.Failure == nil
}

// cached answers from a's state. The caller holds a.mu.
func (s *Source) cached(a *app) (string, error) {
	if a.cur.Usable(s.now()) {
		return a.cur.AccessToken, nil
	}
	if a.readErr != nil {
		return "", &Error{AppID: a.id, class: wechat.ClassTransient, cause: a.readErr}
	}
	return "", unusable(a.id, a.cur)
}

// read joins the secret read in progress for a, or starts one. The read
// runs on its own context (bounded by readTimeout) so that one caller giving
// up does not fail the others; ctx only bounds this caller's wait.
func (s *Source) read(ctx context.Context, a *app) (*flight, error) {
	a.mu.Lock()
	f := a.read
	if f == nil {
		f = newFlight()
		a.read = f
		go s.fetch(context.WithoutCancel(ctx), a, f)
	}
	a.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

func (s *Source) fetch(ctx context.Context, a *app, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	st, err := Load(ctx, s.reader, a.secretID)
	now := s.now()
	a.mu.Lock()
	a.read = nil
	if err != nil {
		a.readErr = err
		a.validUntil = now.Add(retryUnusable)
		if a.cur.Usable(now) {
			a.validUntil = now.Add(recheck)
		}
		s.log.WarnContext(ctx, "token secret unreadable", "outcome", "secret_unreadable", "appid", a.id, "cached_token_valid", a.cur.Usable(now), "error", err)
		s.metrics.Count("TokenSecretReadFailed", "appid", a.id)
	} else {
		a.cur, a.readErr = st, nil
		a.validUntil = trustUntil(st, a.refused, now)
	}
	a.mu.Unlock()
	f.st, f.err = st, err
	close(f.done)
}

// trustUntil is how long a read of st at now stands in for the secret.
func trustUntil(st Stored, refused string, now time.Time) time.Time {
	switch {
	case !st.Usable(now):
		return now.Add(retryUnusable)
	case st.AccessToken == refused:
		return now.Add(recheck)
	}
	until := st.ExpiresAt.Add(-earlyRead)
	if !until.After(now) {
		until = now.Add(recheck)
	}
	return until
}

// Refused is told by the WeChat client that the platform refused token
// (40001, 40014 or 42001). It returns a fresher token: the one already
// cached, or the secret's if it has changed; otherwise it asks the refresher
// for a forced refresh naming the refused token and waits, boundedly, for
// the secret to change. Concurrent callers refused the same token share all
// of this.
func (s *Source) Refused(ctx context.Context, appid, token string) (string, error) {
	a, err := s.app(appid)
	if err != nil {
		return "", err
	}
	now := s.now()
	a.mu.Lock()
	if a.cur.AccessToken != token && a.cur.Usable(now) {
		// Another caller has already moved on from this token.
		fresh := a.cur.AccessToken
		a.mu.Unlock()
		return fresh, nil
	}
	if a.gaveUp == token && now.Sub(a.gaveUpAt) < requestSpacing {
		a.mu.Unlock()
		return "", errNoFresher
	}
	a.refused = token
	if a.cur.AccessToken == token {
		a.validUntil = time.Time{}
	}
	f := a.recovery
	if f == nil {
		f = newFlight()
		a.recovery = f
		go s.recover(context.WithoutCancel(ctx), a, token, f)
	}
	a.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return "", err
	}
	if f.err == nil && f.token == token {
		// The recovery was for an earlier refused token and ended on this
		// one; this caller needs another round.
		return "", errNoFresher
	}
	return f.token, f.err
}

// recover looks for a usable token other than bad ("" when there was no
// token at all): re-read the secret; if it still holds bad (or nothing
// usable), ask the refresher once; poll the secret with growing pauses
// until it changes or the wait is over. A wait for a first token also ends
// as soon as the secret records a failure of the refresher, with that
// failure as the answer. Its log lines carry the request id of the caller
// that started it.
func (s *Source) recover(ctx context.Context, a *app, bad string, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, s.wait)
	defer cancel()
	if bad != "" {
		s.metrics.Count("TokenRefused", "appid", a.id)
	}
	asked := false
	var failed *Failure // the refresher's recorded failure that ended the wait
	for attempt := 1; ; attempt++ {
		rf, err := s.read(ctx, a)
		if err != nil {
			f.err = errNoFresher
			break
		}
		if rf.err == nil && rf.st.AccessToken != bad && rf.st.Usable(s.now()) {
			f.token = rf.st.AccessToken
			break
		}
		if bad == "" && rf.err == nil && rf.st.Failure != nil {
			// The wait for a first token began with no failure recorded
			// (refresherMayHelp), so this one is the refresher's answer
			// since: 40164 on a fresh deploy, within milliseconds. No token
			// will come before the schedule's next run; waiting out the
			// rest of the wait would only hold every caller that long.
			failed = rf.st.Failure
			f.err = unusable(a.id, rf.st)
			break
		}
		if !asked {
			asked = true
			req := RefreshRequest{AppID: a.id}
			if bad != "" && (rf.err != nil || rf.st.AccessToken == bad) {
				// Only a forced refresh replaces a token the platform still
				// considers current; the refresher checks it is still bad.
				req.Refused = Fingerprint(bad)
			}
			s.request(ctx, a, req)
		}
		if backoff.Sleep(ctx, backoff.Exp(50*time.Millisecond, 500*time.Millisecond, attempt)) != nil {
			f.err = errNoFresher
			break
		}
	}
	now := s.now()
	a.mu.Lock()
	a.recovery = nil
	switch {
	case f.err == nil:
	case failed != nil:
		a.missedAt = now
		s.log.WarnContext(ctx, "no token: the token-refresher failed", "outcome", "refresher_failed", "appid", a.id,
			"class", failed.Class, "errcode", failed.ErrCode, "rid", failed.RID)
		s.metrics.Count("TokenRecoveryFailed", "appid", a.id)
	case bad == "":
		a.missedAt = now
		s.log.WarnContext(ctx, "no token from the token-refresher in time", "outcome", "no_token", "appid", a.id, "waited", s.wait.String())
		s.metrics.Count("TokenRecoveryFailed", "appid", a.id)
	default:
		a.gaveUp, a.gaveUpAt = bad, now
		s.log.WarnContext(ctx, "refused token not replaced in time", "outcome", "not_replaced", "appid", a.id, "token", Fingerprint(bad), "waited", s.wait.String())
		s.metrics.Count("TokenRecoveryFailed", "appid", a.id)
	}
	a.mu.Unlock()
	close(f.done)
}

// request sends req to the refresher unless this process sent the same
// kind of request recently: a forced refresh of the same token less than
// requestSpacing ago, a plain run less than askSpacing ago.
func (s *Source) request(ctx context.Context, a *app, req RefreshRequest) {
	if s.refresher == nil {
		return
	}
	now := s.now()
	a.mu.Lock()
	if req.Refused != "" {
		if a.forcedFP == req.Refused && !a.forcedAt.IsZero() && now.Sub(a.forcedAt) < requestSpacing {
			a.mu.Unlock()
			return
		}
		a.forcedFP, a.forcedAt = req.Refused, now
	} else {
		if !a.askedAt.IsZero() && now.Sub(a.askedAt) < askSpacing {
			a.mu.Unlock()
			return
		}
		a.askedAt = now
	}
	a.mu.Unlock()
	if err := s.refresher.Request(ctx, req); err != nil {
		s.log.ErrorContext(ctx, "token refresh request failed", "outcome", "request_failed", "appid", a.id, "token", req.Refused, "error", err)
		s.metrics.Count("TokenRefreshRequestFailed", "appid", a.id)
		return
	}
	s.log.InfoContext(ctx, "token refresh requested", "outcome", "requested", "appid", a.id, "token", req.Refused, "forced", req.Refused != "")
}
