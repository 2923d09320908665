// Package handler is the follow-event function: the official accounts'
// server push (GET and POST /wechat/push for the default official account,
// /wechat/push/{appid} for each configured one) and the retry queue that
// holds pushes acknowledged before they could be handled. One Lambda serves
// both triggers.
//
// Each official account's pushes are checked with its own Token and
// EncodingAESKey and applied under its own appid: dedup claims, identities,
// reach, delivery reports and user/info calls. A queued event carries the
// appid it was pushed for, so that its retry is applied for the same
// account.
//
// A push is answered "success" only once its event is handled or durably
// queued: WeChat stops retrying after that answer, so an event answered any
// other way must not be lost and one answered "success" must not be either.
// Everything before the answer, the dedup claim included, fits in Budget, so
// that a slow DynamoDB or WeChat never keeps WeChat waiting past its 5 s.
//
// The retry consumer handles a batch's events concurrently, each within its
// own bounded time. An event the invocation has no time left to start is
// sent again as a new message carrying its attempt count, and the original
// deleted: SQS counts every receive toward the dead-letter queue, and an
// event never tried must not spend one (docs/operations.md, "The push retry
// queue").
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/backoff"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/queue"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// Claims deduplicates WeChat's retries (idempotency.Store).
type Claims interface {
	Claim(ctx context.Context, key, outcome string, lease time.Duration) (*idempotency.Claim, error)
}

// Queue is the retry queue (and its dead-letter queue): where events go
// that could not be handled in time, and how the consumer hands them back.
type Queue interface {
	queue.Visibility
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Processor applies one event (pushevent.Processor).
type Processor interface {
	Process(ctx context.Context, e push.Event) (pushevent.Result, error)
	ProcessLate(ctx context.Context, e push.Event) (pushevent.Result, error)
}

// Account is one official account's push endpoint: the receiver that
// checks and opens its pushes (its Token and EncodingAESKey) and the
// processor that applies them under its appid.
type Account struct {
	Receiver  *push.Receiver
	Processor Processor
}

// Handler serves the push routes and consumes the retry queue.
type Handler struct {
	// Accounts are the official accounts whose pushes are served, by
	// appid: /wechat/push/{appid} serves each, /wechat/push the Default.
	// An appid not here is answered 404 before anything is read.
	Accounts map[string]Account
	// Default is the appid /wechat/push serves, and that of a queued
	// event written before events carried theirs.
	Default  string
	Claims   Claims
	Queue    Queue
	QueueURL string
	// DeadLetterURL is the retry queue's dead-letter queue, where the
	// consumer moves an event whose attempts, over all the messages that
	// carried it, reach MaxAttempts. Empty: such an event is tried again
	// and SQS's redrive moves it once its last message is received too
	// often.
	DeadLetterURL string
	// Budget is how long a push may spend being claimed and handled before
	// it is queued instead: WeChat gives up on an answer after 5 s.
	Budget time.Duration
	// Concurrency bounds the retry queue's events handled at once; it is
	// the event source's batch size, so that a batch's events all start
	// at once (template.yaml, WXB_PUSH_RETRY_CONCURRENCY).
	Concurrency int
	// MaxAttempts is how often a queued event is tried: the retry queue's
	// maxReceiveCount in template.yaml.
	MaxAttempts int
	Log         *slog.Logger
	Metrics     *observe.Metrics
}

// Defaults of the push path and the retry consumer; docs/operations.md
// ("The push retry queue") explains how they fit template.yaml's timeout,
// batch size and visibility timeout.
const (
	// DefaultBudget leaves room, within WeChat's 5 s, to queue the event
	// and settle its claim after handling it ran out of time.
	DefaultBudget = 3 * time.Second
	// DefaultConcurrency is the retry event source's BatchSize.
	DefaultConcurrency = 10
	// DefaultMaxAttempts is the retry queue's maxReceiveCount.
	DefaultMaxAttempts = 10

	// enqueueTimeout bounds the hand-over to the retry queue, and
	// settleTimeout marking a claim done or giving it back, so that a
	// push is always answered within WeChat's 5 s: Budget + enqueue +
	// settle is at most 4.5 s.
	enqueueTimeout = time.Second
	settleTimeout  = 500 * time.Millisecond

	// retryBudget bounds one queued event's handling: user/info (the
	// WeChat client's 5 s timeout), the token read and the identity
	// store's writes.
	retryBudget = 8 * time.Second
	// minRetryBudget is the least time an event is started with: less,
	// and it is handed back untried rather than started to time out.
	minRetryBudget = 3 * time.Second
	// handBackMargin is kept at the end of an invocation to hand events
	// back (ChangeMessageVisibility or a new message).
	handBackMargin = 2 * time.Second

	// Queued events that failed again come back after a delay growing
	// from retryBase to retryCeiling: 3 to 4 hours over 10 attempts, so
	// that a configuration error (an IP whitelist, a permission) has time
	// to be fixed before the event goes to the dead-letter queue.
	retryBase    = 30 * time.Second
	retryCeiling = time.Hour
)

// claimLease bounds how long a claim blocks WeChat's retries of an event
// whose handler died: the budget, the hand-over and a margin. WeChat
// retries within about 15 s, so a retry after a dead handler takes the
// event over instead of finding it in flight until WeChat gives up.
func (h *Handler) claimLease() time.Duration {
	return h.budget() + enqueueTimeout + settleTimeout + 2*time.Second
}

// Handle is the Lambda entry point: an SQS batch from the retry queue or an
// HTTP API request.
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records []struct {
			EventSource string `json:"eventSource"`
		} `json:"Records"`
	}
	if err := json.Unmarshal(raw, &probe); err == nil && len(probe.Records) > 0 && probe.Records[0].EventSource == "aws:sqs" {
		var ev events.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("follow-event: SQS event: %w", err)
		}
		return h.Retry(ctx, ev)
	}
	var req events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("follow-event: HTTP event: %w", err)
	}
	return h.HTTP(ctx, req)
}

func text(status int, body string) events.APIGatewayV2HTTPResponse {
	return events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: map[string]string{"Content-Type": "text/plain; charset=utf-8"}, Body: body}
}

func queryOf(req events.APIGatewayV2HTTPRequest) push.Query {
	p := req.QueryStringParameters
	return push.Query{
		Signature: p["signature"], Timestamp: p["timestamp"], Nonce: p["nonce"],
		EncryptType: p["encrypt_type"], MsgSignature: p["msg_signature"], EchoStr: p["echostr"],
	}
}

// account is the official account a request is for: the path's appid,
// or the default one on /wechat/push, which has no appid in its path.
func (h *Handler) account(req events.APIGatewayV2HTTPRequest) (string, Account, bool) {
	appid, named := req.PathParameters["appid"]
	if !named {
		appid = h.Default
	}
	a, ok := h.Accounts[appid]
	return appid, a, ok
}

// HTTP serves GET (the console's URL check) and POST (a push), each for
// the official account of the path.
func (h *Handler) HTTP(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	appid, a, ok := h.account(req)
	if !ok {
		// Anyone can call the URL: the appid is only logged cut short.
		h.Log.WarnContext(ctx, "push refused", "outcome", "refused", "reason", "unknown_app", "path_appid", clip(appid, 32))
		h.Metrics.Count("PushRefused", "reason", fmt.Sprint(http.StatusNotFound))
		return text(http.StatusNotFound, "unknown app"), nil
	}
	ctx = observe.With(ctx, "appid", appid)
	switch req.RequestContext.HTTP.Method {
	case http.MethodGet:
		echo, err := a.Receiver.Echo(queryOf(req))
		if err != nil {
			h.Log.WarnContext(ctx, "url check refused", "outcome", "refused", "reason", err.Error())
			return text(http.StatusForbidden, "signature mismatch"), nil
		}
		h.Log.InfoContext(ctx, "url check", "outcome", "ok")
		return text(http.StatusOK, echo), nil
	case http.MethodPost:
		return h.push(ctx, appid, a, req), nil
	}
	return text(http.StatusMethodNotAllowed, "GET or POST"), nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// refusal maps why a push was refused to its answer.
func refusal(err error) int {
	switch {
	case errors.Is(err, push.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, push.ErrSignature), errors.Is(err, push.ErrStale):
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

func (h *Handler) push(ctx context.Context, appid string, a Account, req events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
	body, err := httpapi.Body(req, push.MaxBody)
	if err != nil {
		h.Log.WarnContext(ctx, "push refused", "outcome", "refused", "reason", push.ErrTooLarge.Error())
		h.Metrics.Count("PushRefused", "reason", "too_large")
		return text(http.StatusRequestEntityTooLarge, "refused")
	}
	e, err := a.Receiver.Open(queryOf(req), body)
	if err != nil {
		h.Log.WarnContext(ctx, "push refused", "outcome", "refused", "reason", err.Error())
		h.Metrics.Count("PushRefused", "reason", fmt.Sprint(refusal(err)))
		return text(refusal(err), "refused")
	}
	ctx = observe.With(ctx, "kind", e.Kind(), "create_time", e.CreateTime)
	// The claim and the handling share the budget: a slow table delays
	// the answer no more than a slow WeChat does.
	bctx, cancel := context.WithTimeout(ctx, h.budget())
	defer cancel()
	claim, err := h.Claims.Claim(bctx, claimKey(appid, e), e.FollowState(), h.claimLease())
	switch {
	case err != nil:
		// The store is out or slow: the queue still takes the event, and
		// handling is idempotent, so a duplicate that slips through does
		// no harm.
		h.Log.WarnContext(ctx, "dedup unavailable", "outcome", "dedup_unavailable", "error", err)
		return h.handOver(ctx, appid, e, nil)
	case claim.State == idempotency.Done:
		h.Log.InfoContext(ctx, "push", "outcome", "duplicate")
		h.Metrics.Count("PushDuplicates")
		return text(http.StatusOK, "success")
	case claim.State == idempotency.InFlight:
		// A claim on this key is held: an earlier delivery still being
		// handled, or one whose handler died or could not mark it done
		// (its lease runs for seconds, and WeChat's retries may all come
		// within them). For a follow-state key it may also be another
		// event of the follower's second. Refusing would lose the event
		// once WeChat gives up, so it is queued: handled late, it asks
		// user/info and changes nothing already recorded.
		h.Log.InfoContext(ctx, "push", "outcome", "in_flight")
		return h.handOver(ctx, appid, e, nil)
	}
	process := a.Processor.Process
	if claim.Again {
		// Another event of this follower's second came first (a follow,
		// an unfollow, a follow again): this one may be out of order.
		process = a.Processor.ProcessLate
	}
	res, err := process(bctx, e)
	switch {
	case err == nil:
		h.settle(ctx, claim, "handled", res.Follow)
		h.Log.InfoContext(ctx, "push", "outcome", res.Action, "uid", res.UID)
		return text(http.StatusOK, "success")
	case !pushevent.Retryable(err):
		h.settle(ctx, claim, "failed", "")
		h.Log.ErrorContext(ctx, "push", "outcome", "failed", "error", err)
		h.Metrics.Count("PushFailed")
		return text(http.StatusOK, "success")
	}
	h.deferred(ctx, "push not handled in time, queueing", err)
	return h.handOver(ctx, appid, e, claim)
}

// claimKey is the dedup key of e pushed for official account appid: the
// same MsgId, or the same sender, time and event, on two accounts are two
// events.
func claimKey(appid string, e push.Event) string { return appid + "#" + e.DedupKey() }

// deferred logs and counts an event put off by a retryable failure, by
// class: the alarm on class config, quota or unknown says that follows are
// waiting for a person to act (docs/operations.md, PushBlockedAlarm).
func (h *Handler) deferred(ctx context.Context, msg string, err error, args ...any) {
	class := wechat.ClassOf(err)
	h.Metrics.Count("PushDeferred", "class", class.String())
	h.Log.WarnContext(ctx, msg, append([]any{"outcome", "deferred", "class", class.String(), "error", err, "rid", wechat.RID(err)}, args...)...)
}

// handOver queues e, pushed for official account appid, for the retry
// consumer and answers success, or, if the queue is out too, gives the
// claim back and lets WeChat retry.
func (h *Handler) handOver(ctx context.Context, appid string, e push.Event, claim *idempotency.Claim) events.APIGatewayV2HTTPResponse {
	if err := h.send(ctx, h.QueueURL, queued{AppID: appid, Event: e}); err != nil {
		h.Log.ErrorContext(ctx, "push", "outcome", "not_accepted", "error", err)
		h.Metrics.Count("PushNotAccepted")
		if claim != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
			defer cancel()
			if rerr := claim.Release(sctx); rerr != nil {
				h.Log.WarnContext(ctx, "release claim", "outcome", "claim_not_released", "error", rerr)
			}
		}
		return text(http.StatusServiceUnavailable, "retry")
	}
	if claim != nil {
		h.settle(ctx, claim, "queued", "")
	}
	h.Log.InfoContext(ctx, "push", "outcome", "queued")
	h.Metrics.Count("PushQueued")
	return text(http.StatusOK, "success")
}

// settle marks the claim done. A claim left unmarked only means that a
// WeChat retry after its lease handles the event again, which is harmless.
func (h *Handler) settle(ctx context.Context, claim *idempotency.Claim, how, outcome string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := claim.Complete(sctx, how, outcome); err != nil {
		h.Log.WarnContext(ctx, "complete claim", "outcome", "claim_not_completed", "error", err)
	}
}

// queued is a retry-queue message: the event, the official account it was
// pushed for, and the attempts it had in the messages that carried it
// before this one. Its JSON is the event's with "appid" and "attempts"
// added, so a message holding only an event (queued before events carried
// their appid) reads as one for the default account with no attempts
// before.
type queued struct {
	AppID string `json:"appid,omitempty"`
	push.Event
	Attempts int `json:"attempts,omitempty"`
}

// send puts q on the queue at url, within enqueueTimeout.
func (h *Handler) send(ctx context.Context, url string, q queued) error {
	b, err := json.Marshal(q)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	defer cancel()
	_, err = h.Queue.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: new(string(b))})
	return err
}

func (h *Handler) budget() time.Duration {
	if h.Budget > 0 {
		return h.Budget
	}
	return DefaultBudget
}

// Retry handles a batch of queued events, concurrently up to Concurrency,
// and answers which must come back.
func (h *Handler) Retry(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	b := queue.Batch{Queue: h.Queue, QueueURL: h.QueueURL, Concurrency: h.Concurrency, Log: h.Log}
	if b.Concurrency <= 0 {
		b.Concurrency = DefaultConcurrency
	}
	return b.Run(ctx, ev, h.retry), nil
}

// retry handles one queued event. Events come from the queue out of order
// with the follower's later ones, so they are processed as late.
func (h *Handler) retry(ctx context.Context, m queue.Message) error {
	var q queued
	if err := json.Unmarshal([]byte(m.Body), &q); err != nil || q.FromUserName == "" {
		h.Log.ErrorContext(ctx, "retry", "outcome", "dropped", "reason", "not an event")
		return nil
	}
	if q.AppID == "" {
		q.AppID = h.Default
	}
	ctx = observe.With(ctx, "appid", q.AppID, "kind", q.Kind(), "create_time", q.CreateTime)
	attempt := q.Attempts + m.Receives
	a, known := h.Accounts[q.AppID]
	if h.DeadLetterURL != "" && (attempt > h.maxAttempts() || !known) {
		// SQS counts receives per message; an event sent again untried
		// starts a new count, so its own count decides here. An event of
		// an official account no longer configured waits there for it to
		// be configured again (and redriven).
		if err := h.send(ctx, h.DeadLetterURL, queued{AppID: q.AppID, Event: q.Event, Attempts: attempt - 1}); err != nil {
			return fmt.Errorf("to the dead-letter queue: %w", err)
		}
		reason := "attempts"
		if !known {
			reason = "unknown_app"
		}
		h.Log.ErrorContext(ctx, "retry", "outcome", "dead_letter", "reason", reason, "attempts", attempt-1)
		return nil
	}
	if !known {
		// Without a dead-letter queue, SQS's redrive moves it there.
		return fmt.Errorf("official account %s is not configured", q.AppID)
	}
	budget, ok := h.eventBudget(ctx)
	if !ok {
		return h.handBack(ctx, q, attempt-1)
	}
	ectx, cancel := context.WithTimeout(ctx, budget)
	res, err := a.Processor.ProcessLate(ectx, q.Event)
	cancel()
	switch {
	case err == nil:
		h.Log.InfoContext(ctx, "retry", "outcome", res.Action, "uid", res.UID, "attempt", attempt)
		return nil
	case !pushevent.Retryable(err):
		h.Log.ErrorContext(ctx, "retry", "outcome", "failed", "error", err, "attempt", attempt)
		h.Metrics.Count("PushFailed")
		return nil
	}
	delay := retryDelay(err, attempt)
	h.deferred(ctx, "retry", err, "attempt", attempt, "delay", delay.String())
	return queue.RetryAfter(delay, err)
}

// handBack sends an event the invocation has no time to start as a new
// message carrying the attempts it had, and lets the original go: it was
// not tried, so it must not spend one of its attempts. If the queue does
// not take it, the original comes back after the visibility timeout
// instead, spending an attempt rather than losing the event.
func (h *Handler) handBack(ctx context.Context, q queued, attempts int) error {
	q.Attempts = attempts
	if err := h.send(ctx, h.QueueURL, q); err != nil {
		return fmt.Errorf("hand back untried: %w", err)
	}
	h.Log.InfoContext(ctx, "retry", "outcome", "handed_back", "reason", "no time left in this invocation", "attempts", attempts)
	h.Metrics.Count("PushHandedBack")
	return nil
}

// eventBudget is how long an event starting now may take, or false if the
// invocation has too little time left to start one.
func (h *Handler) eventBudget(ctx context.Context) (time.Duration, bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return retryBudget, true
	}
	left := time.Until(deadline) - handBackMargin
	if left < minRetryBudget {
		return 0, false
	}
	return min(left, retryBudget), true
}

// retryDelay is when an event that failed its attempt-th try comes back:
// after the quota day for an exhausted quota (45009), else growing with the
// attempts, spread so that a burst does not come back as a burst.
func retryDelay(err error, attempt int) time.Duration {
	if errors.Is(err, wechat.ErrQuota) {
		return backoff.Add(time.Until(wechat.QuotaDayEnd(time.Now())), 0.05)
	}
	return backoff.Spread(backoff.Exp(retryBase, retryCeiling, attempt), 0.25)
}

func (h *Handler) maxAttempts() int {
	if h.MaxAttempts > 0 {
		return h.MaxAttempts
	}
	return DefaultMaxAttempts
}
