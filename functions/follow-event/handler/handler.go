// Package handler is the follow-event function: the official account's
// server push (GET and POST /wechat/push) and the retry queue that holds
// pushes acknowledged before they could be handled. One Lambda serves both
// triggers.
//
// A push is answered "success" only once its event is handled or durably
// queued: WeChat stops retrying after that answer, so an event answered any
// other way must not be lost and one answered "success" must not be either.
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

	"wxbridge/shared/httpapi"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/wechat/push"
)

// Claims deduplicates WeChat's retries.
type Claims interface {
	Claim(ctx context.Context, key string, lease time.Duration) (idempotency.State, error)
	Complete(ctx context.Context, key, how string) error
	Release(ctx context.Context, key string) error
}

// Queue is where events go that could not be handled in time.
type Queue interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Processor applies one event.
type Processor interface {
	Process(ctx context.Context, e push.Event) (pushevent.Result, error)
}

// Handler serves the push route and consumes the retry queue.
type Handler struct {
	Receiver  *push.Receiver
	Processor Processor
	Claims    Claims
	Queue     Queue
	QueueURL  string
	// Budget is how long a push may spend being handled before it is
	// queued instead: WeChat gives up on an answer after 5 s.
	Budget  time.Duration
	Log     *slog.Logger
	Metrics *observe.Metrics
}

// DefaultBudget leaves room, within WeChat's 5 s, to queue the event and
// answer after handling it ran out of time.
const DefaultBudget = 3 * time.Second

// enqueueTimeout bounds the hand-over to the retry queue, so that a push is
// always answered within WeChat's 5 s.
const enqueueTimeout = time.Second

// claimLease bounds how long a claim blocks WeChat's retries of an event
// whose handler died: the budget and the hand-over, and a margin. WeChat
// retries within about 15 s, so a retry after a dead handler takes the
// event over instead of finding it in flight until WeChat gives up.
func (h *Handler) claimLease() time.Duration { return h.budget() + enqueueTimeout + 2*time.Second }

// retryTimeout bounds one queued event's handling in the retry consumer.
const retryTimeout = 8 * time.Second

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

// HTTP serves GET (the console's URL check) and POST (a push).
func (h *Handler) HTTP(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	log := h.Log.With("request_id", observe.RequestID(ctx))
	switch req.RequestContext.HTTP.Method {
	case http.MethodGet:
		echo, err := h.Receiver.Echo(queryOf(req))
		if err != nil {
			log.Warn("url check refused", "outcome", "refused", "reason", err.Error())
			return text(http.StatusForbidden, "signature mismatch"), nil
		}
		log.Info("url check", "outcome", "ok")
		return text(http.StatusOK, echo), nil
	case http.MethodPost:
		return h.push(ctx, req, log), nil
	}
	return text(http.StatusMethodNotAllowed, "GET or POST"), nil
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

func (h *Handler) push(ctx context.Context, req events.APIGatewayV2HTTPRequest, log *slog.Logger) events.APIGatewayV2HTTPResponse {
	body, err := httpapi.Body(req, push.MaxBody)
	if err != nil {
		log.Warn("push refused", "outcome", "refused", "reason", push.ErrTooLarge.Error())
		h.Metrics.Count("PushRefused", "reason", "too_large")
		return text(http.StatusRequestEntityTooLarge, "refused")
	}
	e, err := h.Receiver.Open(queryOf(req), body)
	if err != nil {
		log.Warn("push refused", "outcome", "refused", "reason", err.Error())
		h.Metrics.Count("PushRefused", "reason", fmt.Sprint(refusal(err)))
		return text(refusal(err), "refused")
	}
	log = log.With("kind", e.Kind(), "create_time", e.CreateTime)
	key := e.DedupKey()
	state, err := h.Claims.Claim(ctx, key, h.claimLease())
	switch {
	case err != nil:
		// The store is out: the queue still takes the event, and handling
		// is idempotent, so a duplicate that slips through does no harm.
		log.Warn("dedup unavailable", "outcome", "dedup_unavailable", "error", err)
		return h.handOver(ctx, e, "", log)
	case state == idempotency.Done:
		log.Info("push", "outcome", "duplicate")
		h.Metrics.Count("PushDuplicates")
		return text(http.StatusOK, "success")
	case state == idempotency.InFlight:
		// An earlier delivery is still being handled; WeChat will retry
		// and find it done.
		log.Info("push", "outcome", "in_flight")
		return text(http.StatusServiceUnavailable, "in progress")
	}
	pctx, cancel := context.WithTimeout(ctx, h.budget())
	res, err := h.Processor.Process(pctx, e)
	cancel()
	switch {
	case err == nil:
		h.complete(ctx, key, "handled", log)
		log.Info("push", "outcome", res.Action, "uid", res.UID)
		return text(http.StatusOK, "success")
	case !pushevent.Retryable(err):
		h.complete(ctx, key, "failed", log)
		log.Error("push", "outcome", "failed", "error", err)
		h.Metrics.Count("PushFailed")
		return text(http.StatusOK, "success")
	}
	log.Warn("push not handled in time, queueing", "outcome", "deferred", "error", err)
	return h.handOver(ctx, e, key, log)
}

// handOver queues e for the retry consumer and answers success, or, if the
// queue is out too, gives the claim back and lets WeChat retry.
func (h *Handler) handOver(ctx context.Context, e push.Event, key string, log *slog.Logger) events.APIGatewayV2HTTPResponse {
	if err := h.enqueue(ctx, e); err != nil {
		log.Error("push", "outcome", "not_accepted", "error", err)
		h.Metrics.Count("PushNotAccepted")
		if key != "" {
			if rerr := h.Claims.Release(ctx, key); rerr != nil {
				log.Warn("release claim", "outcome", "claim_not_released", "error", rerr)
			}
		}
		return text(http.StatusServiceUnavailable, "retry")
	}
	if key != "" {
		h.complete(ctx, key, "queued", log)
	}
	log.Info("push", "outcome", "queued")
	h.Metrics.Count("PushQueued")
	return text(http.StatusOK, "success")
}

func (h *Handler) complete(ctx context.Context, key, how string, log *slog.Logger) {
	// A claim left unmarked only means a retry after its lease handles the
	// event again, which is harmless.
	if err := h.Claims.Complete(ctx, key, how); err != nil {
		log.Warn("complete claim", "outcome", "claim_not_completed", "error", err)
	}
}

func (h *Handler) enqueue(ctx context.Context, e push.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	defer cancel()
	_, err = h.Queue.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &h.QueueURL, MessageBody: new(string(b))})
	return err
}

func (h *Handler) budget() time.Duration {
	if h.Budget > 0 {
		return h.Budget
	}
	return DefaultBudget
}

// Retry handles queued events, reporting those that failed again so that
// SQS redelivers them (and, after its receive limit, moves them to the
// dead-letter queue).
func (h *Handler) Retry(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var out events.SQSEventResponse
	for _, m := range ev.Records {
		log := h.Log.With("request_id", observe.RequestID(ctx), "message_id", m.MessageId)
		var e push.Event
		if err := json.Unmarshal([]byte(m.Body), &e); err != nil || e.FromUserName == "" {
			log.Error("retry", "outcome", "dropped", "reason", "not an event")
			continue
		}
		// Events were queued because WeChat or the store was slow: each gets
		// a bounded time, and those the invocation has no time left for go
		// back to the queue rather than die with it.
		if d, ok := ctx.Deadline(); ok && time.Until(d) < retryTimeout+time.Second {
			log.Warn("retry", "outcome", "again", "kind", e.Kind(), "reason", "no time left in this invocation")
			out.BatchItemFailures = append(out.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
			continue
		}
		ectx, cancel := context.WithTimeout(ctx, retryTimeout)
		res, err := h.Processor.Process(ectx, e)
		cancel()
		switch {
		case err == nil:
			log.Info("retry", "outcome", res.Action, "kind", e.Kind(), "uid", res.UID)
		case !pushevent.Retryable(err):
			log.Error("retry", "outcome", "failed", "kind", e.Kind(), "error", err)
			h.Metrics.Count("PushFailed")
		default:
			log.Warn("retry", "outcome", "again", "kind", e.Kind(), "error", err)
			out.BatchItemFailures = append(out.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
		}
	}
	return out, nil
}
