// Package handler is the token-refresher: the only code in wxbridge that
// calls WeChat's token endpoints. It keeps the access token of every mini
// program and official account in that app's Secrets Manager secret
// (tokens.Stored; the stack makes the default apps', the refresher the
// others' on their first refresh), refreshing it on a schedule
// in stable_token's normal mode, at once for a function that found no token
// yet and, when a function reports a refused token, forcing a refresh within
// the platform's budget. Every other function reads the secrets through
// tokens.Source.
//
// The rules (when a token needs refreshing, the force budget, the per-app
// lease) live in shared/tokens beside the Source; this package carries them
// out and makes the platform calls. The handler takes a
// tokens.RefreshRequest so that the same code runs in Lambda (schedule and
// asynchronous invoke), the devstack and the tests.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/backoff"
	"wxbridge/shared/config"
	"wxbridge/shared/ddb"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// App is one WeChat app the refresher keeps a token for.
type App struct {
	AppID       string
	Secret      string // the AppSecret; never logged
	TokenSecret string // the Secrets Manager secret holding the token
}

// Apps lists every mini program and official account of cfg that has
// credentials, each with its token secret (tokens.SecretIDs): the default
// apps keep miniProgramSecret and officialAccountSecret, the others have
// prefix+appid, which the refresher creates on their first refresh.
func Apps(cfg config.Config, miniProgramSecret, officialAccountSecret, prefix string) []App {
	ids := tokens.SecretIDs(cfg, miniProgramSecret, officialAccountSecret, prefix)
	var out []App
	for _, k := range config.Kinds {
		if !k.TakesToken() {
			continue
		}
		for _, a := range cfg.Apps(k) {
			if id := ids[a.AppID]; a.Secret != "" && id != "" && !slices.ContainsFunc(out, func(b App) bool { return b.AppID == a.AppID }) {
				out = append(out, App{AppID: a.AppID, Secret: a.Secret, TokenSecret: id})
			}
		}
	}
	return out
}

// WeChat is the platform call the refresher makes.
type WeChat interface {
	StableToken(ctx context.Context, appid, secret string, force bool) (wechat.AccessToken, error)
}

// Secrets reads and writes the token secrets, and creates those of the
// apps beyond the defaults.
type Secrets interface {
	awsenv.SecretGetter
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
}

// Options configures a Handler.
type Options struct {
	Apps    []App
	WeChat  WeChat
	Secrets Secrets
	DB      tokens.LedgerAPI // the lease and force-budget items
	Table   string           // table name
	// Now defaults to time.Now; Sleep (the wait for the platform's
	// rollover) to backoff.Sleep. The 24-hour simulation runs both on the
	// sandbox's clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Log defaults to discarding; Metrics may be nil.
	Log     *slog.Logger
	Metrics *observe.Metrics
}

// Handler runs refreshes. It is safe for concurrent use; overlapping runs,
// here or in other processes, coordinate through the table.
type Handler struct {
	apps    []App
	wechat  WeChat
	secrets Secrets
	ledger  *tokens.Ledger
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	log     *slog.Logger
	metrics *observe.Metrics
}

// New returns a Handler for o.
func New(o Options) (*Handler, error) {
	switch {
	case len(o.Apps) == 0:
		return nil, errors.New("token-refresher: no app has credentials and a token secret")
	case o.WeChat == nil || o.Secrets == nil || o.DB == nil || o.Table == "":
		return nil, errors.New("token-refresher: WeChat, Secrets, DB and Table are required")
	}
	h := &Handler{apps: o.Apps, wechat: o.WeChat, secrets: o.Secrets, now: o.Now, sleep: o.Sleep, log: o.Log, metrics: o.Metrics}
	if h.now == nil {
		h.now = time.Now
	}
	if h.sleep == nil {
		h.sleep = backoff.Sleep
	}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h.ledger = tokens.NewLedger(o.DB, o.Table, h.now)
	return h, nil
}

// Result is what one run did, per app.
type Result struct {
	Apps []AppResult `json:"apps"`
}

// AppResult is one app's outcome: fresh, refreshed, forced, unchanged,
// already_replaced, busy, force_refused, failed or error.
type AppResult struct {
	AppID     string    `json:"appid"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// refreshedAt is when the stored token was obtained: TokenAge.
	refreshedAt time.Time
}

// Outcomes of a run for one app.
const (
	OutcomeFresh           = "fresh"            // stored token has long enough to live: no call
	OutcomeRefreshed       = "refreshed"        // normal-mode call stored a new token
	OutcomeForced          = "forced"           // forced refresh stored a new token
	OutcomeUnchanged       = "unchanged"        // the platform answered the stored token again
	OutcomeAlreadyReplaced = "already_replaced" // the refused token is no longer the stored one
	OutcomeBusy            = "busy"             // another run holds the lease
	OutcomeForceRefused    = "force_refused"    // the force budget (20 a day, 30 s apart) says no
	OutcomeFailed          = "failed"           // the platform refused the refresh
	OutcomeError           = "error"            // Secrets Manager or DynamoDB failed
)

// outcomeOf names the runs that end with the decision alone.
var outcomeOf = map[tokens.Action]string{tokens.Keep: OutcomeFresh, tokens.Replaced: OutcomeAlreadyReplaced}

// leaseWait is how long a forced-refresh request waits for the lease (the
// run holding it may not replace the refused token); the functions that
// asked wait about as long for the new token.
const leaseWait = 10 * time.Second

// ErrUnknownApp reports a request for an app the refresher does not manage.
var ErrUnknownApp = errors.New("token-refresher: unknown appid")

// Handle runs a refresh: of every app for the schedule's empty request; of
// one app for a request naming one (from a function that found no token
// yet, or only an expired one: a normal run), forced if the request names a
// refused token that is still stored. It returns an error when some app
// ended failed or error, so that Lambda's error metric counts it; the
// refresher never retries by itself, the next scheduled run does.
func (h *Handler) Handle(ctx context.Context, req tokens.RefreshRequest) (Result, error) {
	targets := h.apps
	if req.AppID != "" {
		targets = nil
		for _, a := range h.apps {
			if a.AppID == req.AppID {
				targets = []App{a}
			}
		}
		if targets == nil {
			h.log.ErrorContext(ctx, "token refresh", "appid", req.AppID, "outcome", OutcomeError, "error", ErrUnknownApp)
			return Result{}, fmt.Errorf("%w: %q", ErrUnknownApp, req.AppID)
		}
	}
	// Apps run side by side: each may wait up to a minute for its token's
	// rollover, and the waits must not add up past the function's timeout.
	res := Result{Apps: make([]AppResult, len(targets))}
	var wg sync.WaitGroup
	for i, a := range targets {
		wg.Go(func() { res.Apps[i] = h.run(observe.With(ctx, "appid", a.AppID), a, req.Refused) })
	}
	wg.Wait()
	var errs []error
	now := h.now()
	for _, r := range res.Apps {
		h.metrics.Count("TokenRefresh", "appid", r.AppID, "outcome", r.Outcome)
		if !r.refreshedAt.IsZero() {
			// A token is good for at most 2 hours from when it was obtained:
			// an age beyond that after a run means functions have none.
			h.metrics.Value("TokenAge", "Seconds", now.Sub(r.refreshedAt).Seconds(), "appid", r.AppID)
		}
		if r.Outcome == OutcomeFailed || r.Outcome == OutcomeError {
			errs = append(errs, fmt.Errorf("%s: %s: %s", r.AppID, r.Outcome, r.Reason))
		}
	}
	return res, errors.Join(errs...)
}

// run refreshes one app. refused is the fingerprint of a token a function
// saw refused, or "". A run reads the secret first, which settles most runs
// (the token is fresh, or the refused one is already replaced) with one
// read; only a run that will call the platform takes the app's lease, reads
// again under it and decides again, so that overlapping runs make one call.
func (h *Handler) run(ctx context.Context, a App, refused string) AppResult {
	res := AppResult{AppID: a.AppID}
	st, err := h.load(ctx, a)
	if err != nil {
		return h.finish(ctx, res, OutcomeError, "read token secret", err)
	}
	res.ExpiresAt, res.refreshedAt = st.ExpiresAt, st.RefreshedAt
	d := tokens.Decide(st, refused, h.now())
	if d.Action == tokens.Wait {
		h.log.InfoContext(ctx, "token refresh waits for the platform's rollover", "outcome", "waiting", "token", tokens.Fingerprint(st.AccessToken), "wait", d.Wait.String())
		if err := h.sleep(ctx, d.Wait); err != nil {
			return h.finish(ctx, res, OutcomeError, "waiting for the rollover", err)
		}
		if st, err = h.load(ctx, a); err != nil {
			return h.finish(ctx, res, OutcomeError, "read token secret", err)
		}
		res.ExpiresAt, res.refreshedAt = st.ExpiresAt, st.RefreshedAt
		d = tokens.Decide(st, refused, h.now()).Waited()
	}
	if outcome, ok := outcomeOf[d.Action]; ok {
		return h.finish(ctx, res, outcome, d.Reason, nil)
	}
	// A forced-refresh request waits for the lease, since the run holding
	// it may not replace the refused token; other runs leave the work to
	// the holder, which will store a token.
	wait := time.Duration(0)
	if refused != "" {
		wait = leaseWait
	}
	lease, err := h.ledger.Lease(ctx, a.AppID, wait)
	if errors.Is(err, ddb.ErrHeld) {
		return h.finish(ctx, res, OutcomeBusy, "another run holds the lease", nil)
	}
	if err != nil {
		return h.finish(ctx, res, OutcomeError, "lease", err)
	}
	defer func() {
		// A lease not given back only delays the next run until it runs
		// out; one lost means this run outlasted it.
		if err := h.ledger.Release(ctx, lease); err != nil {
			h.log.WarnContext(ctx, "token refresh: releasing the lease", "outcome", "lease_not_released", "error", err)
		}
	}()
	if st, err = h.load(ctx, a); err != nil {
		return h.finish(ctx, res, OutcomeError, "read token secret", err)
	}
	return h.apply(ctx, a, st, tokens.Decide(st, refused, h.now()).Waited(), res)
}

// load reads a's stored token. A secret without a token yet (as created by
// the stack) reads as no token.
func (h *Handler) load(ctx context.Context, a App) (tokens.Stored, error) {
	return tokens.Load(ctx, h.secrets, a.TokenSecret)
}

// apply carries out decision d about a's stored token st.
func (h *Handler) apply(ctx context.Context, a App, st tokens.Stored, d tokens.Decision, res AppResult) AppResult {
	res.ExpiresAt, res.refreshedAt = st.ExpiresAt, st.RefreshedAt
	if outcome, ok := outcomeOf[d.Action]; ok {
		return h.finish(ctx, res, outcome, d.Reason, nil)
	}
	force := d.Action == tokens.Force
	if force {
		if err := h.ledger.SpendForce(ctx, a.AppID); err != nil {
			var be *tokens.BudgetError
			if !errors.As(err, &be) {
				return h.finish(ctx, res, OutcomeError, "force budget", err)
			}
			// Something keeps invalidating this app's tokens (a leak, or
			// another system forcing refreshes): a human should look.
			h.log.ErrorContext(ctx, "token refresh", "alarm", "force_budget", "outcome", OutcomeForceRefused,
				"token", tokens.Fingerprint(st.AccessToken), "reason", be.Error())
			h.metrics.Count("TokenForceRefused", "appid", a.AppID, "reason", be.Limit)
			res.Outcome, res.Reason = OutcomeForceRefused, be.Error()
			return res
		}
	}
	sent := h.now()
	at, err := h.wechat.StableToken(ctx, a.AppID, a.Secret, force)
	if err != nil {
		h.alarm(ctx, a, err, force)
		// Record the failure next to the token: functions that find the
		// token unusable then report this answer (errcode, rid) to their
		// callers instead of a bare "no token".
		if f := tokens.FailureOf(err, sent); !f.Same(st.Failure) {
			st.Failure = f
			if werr := h.store(ctx, a, st); werr != nil {
				h.log.ErrorContext(ctx, "token refresh: recording the failure", "outcome", "failure_not_recorded", "error", werr)
			}
		}
		return h.finish(ctx, res, OutcomeFailed, err.Error(), nil)
	}
	outcome := OutcomeRefreshed
	if force {
		outcome = OutcomeForced
	}
	next := tokens.Stored{AccessToken: at.Token, ExpiresAt: sent.Add(at.ExpiresIn), RefreshedAt: h.now()}
	if at.Token == st.AccessToken && st.Failure == nil {
		// The platform has not rolled over yet; the stored expiry stays
		// (both count down from the same issue).
		return h.finish(ctx, res, OutcomeUnchanged, d.Reason, nil)
	}
	if err := h.store(ctx, a, next); err != nil {
		// A forced token that cannot be stored leaves functions with a
		// dead one; they will ask again and the budget decides.
		h.log.ErrorContext(ctx, "token refresh", "outcome", OutcomeError, "alarm", "token_not_stored", "forced", force, "error", err)
		res.Outcome, res.Reason = OutcomeError, "write token secret: "+err.Error()
		return res
	}
	res.ExpiresAt, res.refreshedAt = next.ExpiresAt, next.RefreshedAt
	h.log.InfoContext(ctx, "token refresh", "outcome", outcome, "reason", d.Reason,
		"token", tokens.Fingerprint(next.AccessToken), "replaced", tokens.Fingerprint(st.AccessToken),
		"expires_at", next.ExpiresAt, "expires_in", at.ExpiresIn.String())
	res.Outcome, res.Reason = outcome, d.Reason
	return res
}

// alarm reports a failed token-endpoint call. IP whitelist (40164), IP risk
// (89503), a bad AppSecret (40125) and quota (45009) are configuration
// alarms: nothing changes until someone fixes the account or the egress IP.
func (h *Handler) alarm(ctx context.Context, a App, err error, forced bool) {
	class := wechat.ClassOf(err)
	code := 0
	var we *wechat.Error
	if errors.As(err, &we) {
		code = we.Code
	}
	if class == wechat.ClassConfig || class == wechat.ClassQuota {
		h.log.ErrorContext(ctx, "token refresh", "alarm", "configuration", "outcome", OutcomeFailed, "forced", forced,
			"errcode", code, "rid", wechat.RID(err), "class", class.String(), "error", err)
		h.metrics.Count("TokenConfigAlarm", "appid", a.AppID, "errcode", strconv.Itoa(code))
		return
	}
	h.log.WarnContext(ctx, "token refresh", "outcome", OutcomeFailed, "forced", forced,
		"errcode", code, "rid", wechat.RID(err), "class", class.String(), "error", err)
}

// finish logs an outcome that needs no more than its reason.
func (h *Handler) finish(ctx context.Context, res AppResult, outcome, reason string, err error) AppResult {
	res.Outcome, res.Reason = outcome, reason
	switch {
	case err != nil:
		res.Reason = reason + ": " + err.Error()
		h.log.ErrorContext(ctx, "token refresh", "outcome", outcome, "reason", reason, "error", err)
	case outcome == OutcomeFailed:
		// alarm has logged it.
	default:
		h.log.InfoContext(ctx, "token refresh", "outcome", outcome, "reason", reason, "expires_at", res.ExpiresAt)
	}
	return res
}

// storeAttempts bounds the writes of one token: a token the platform has
// just issued (and that invalidated the previous one, if forced) must not be
// lost to one throttled call.
const storeAttempts = 3

func (h *Handler) store(ctx context.Context, a App, st tokens.Stored) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i := 1; ; i++ {
		err = h.write(ctx, a, string(b))
		if err == nil || i == storeAttempts || ctx.Err() != nil {
			return err
		}
		// In real time, unlike h.sleep, which waits on the platform's clock.
		if backoff.Sleep(ctx, time.Duration(i)*200*time.Millisecond) != nil {
			return err
		}
	}
}

// write puts value into a's token secret. The secret of an app beyond the
// defaults is not made by the stack: the first write creates it, named by
// a.TokenSecret. A default app's secret is the stack's (an ARN); if it is
// gone, the stack is broken, and the refresher does not make another.
func (h *Handler) write(ctx context.Context, a App, value string) error {
	err := h.put(ctx, a, value)
	var nf *smtypes.ResourceNotFoundException
	if !errors.As(err, &nf) || strings.HasPrefix(a.TokenSecret, "arn:") {
		return err
	}
	_, err = h.secrets.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(a.TokenSecret),
		Description:  aws.String("wxbridge access token for " + a.AppID + " (written by the token-refresher only)"),
		SecretString: aws.String(value),
	})
	var exists *smtypes.ResourceExistsException
	switch {
	case errors.As(err, &exists):
		// Another run created it since (one whose lease ran out): a plain
		// write again, the later token wins as with any two writes.
		return h.put(ctx, a, value)
	case err != nil:
		return fmt.Errorf("create token secret %s: %w", a.TokenSecret, err)
	}
	h.log.InfoContext(ctx, "token secret created", "outcome", "secret_created", "secret", a.TokenSecret)
	return nil
}

func (h *Handler) put(ctx context.Context, a App, value string) error {
	_, err := h.secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(a.TokenSecret), SecretString: aws.String(value),
	})
	return err
}
