// Package handler is the outcome-publisher function: it reads the table's
// DynamoDB stream (Lambda's event source, filtered to send-ledger items),
// turns each change of a ledger entry that a business is told of into an
// outcome event built from the record's images alone (notify.Outcome), and
// puts the events on the outcome bus in the stream's order, up to 10 in a
// PutEvents call.
//
// The first record it cannot publish is reported as a batch item failure
// and nothing after it is published in that invocation: Lambda retries the
// shard from the lowest sequence number reported, so that record and every
// later one come back, and events keep the ledger's order. Delivery is at
// least once: a record published again (after a lost PutEvents answer, a
// failed entry earlier in its call, a timeout) carries the same event_id,
// so a consumer deduplicates on it.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/notify"
	"wxbridge/shared/observe"
)

// Bus is the EventBridge call the publisher makes.
type Bus interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Handler publishes a stream batch's outcomes.
type Handler struct {
	Bus     Bus
	BusName string // the outcome bus's name or ARN
	Log     *slog.Logger
	Metrics *observe.Metrics
}

// EventBridge's PutEvents limits.
const (
	// MaxEntries is the most entries one PutEvents call takes.
	MaxEntries = 10
	// MaxRequestSize is the most one PutEvents call's entries may add up
	// to, counted as EventBridge counts them (entrySize).
	MaxRequestSize = 256 * 1024
)

// Reasons a record is reported back to the stream (the OutcomePublishFailed
// metric's reason).
const (
	reasonThrottled  = "throttled"  // PutEvents, or the entry, was throttled past the SDK's retries
	reasonError      = "error"      // PutEvents failed otherwise, or EventBridge refused the entry
	reasonUnreadable = "unreadable" // the record is a ledger item the code cannot read
	reasonTooLarge   = "too_large"  // the event is over PutEvents' size limit on its own
	reasonDeadline   = "deadline"   // the invocation ran out of time before publishing it
)

// event is one outcome to publish, from the record with sequence number
// seq; or, when failure is set, a record that fails where it stands.
type event struct {
	seq     string
	outcome contract.Outcome
	entry   ebtypes.PutEventsRequestEntry
	size    int
	failure string // a reason: the record cannot be published
	err     error
}

// Handle publishes the outcomes of ev's records, answering the first that
// could not be published (if any) as the batch item failure.
func (h *Handler) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var pending []event
	for _, rec := range ev.Records {
		e, ok := h.eventOf(rec)
		if ok {
			pending = append(pending, e)
		}
	}
	for len(pending) > 0 {
		e := pending[0]
		if e.failure == "" && ctx.Err() != nil {
			e.failure, e.err = reasonDeadline, ctx.Err()
		}
		if e.failure != "" {
			h.failed(ctx, e, e.failure, e.err)
			return failure(e.seq), nil
		}
		n := chunk(pending)
		if bad := h.put(ctx, pending[:n]); bad >= 0 {
			return failure(pending[bad].seq), nil
		}
		pending = pending[n:]
	}
	return events.DynamoDBEventResponse{}, nil
}

func failure(seq string) events.DynamoDBEventResponse {
	return events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{{ItemIdentifier: seq}}}
}

// eventOf is the outcome event of rec, or ok false for a record that is
// none: not a ledger item, not a status change a business is told of (a
// claim, a retry), a removal (the entry's TTL ran out).
func (h *Handler) eventOf(rec events.DynamoDBEventRecord) (event, bool) {
	e := event{seq: rec.Change.SequenceNumber}
	o, ok, err := outcomeOf(rec)
	switch {
	case err != nil:
		e.failure, e.err = reasonUnreadable, err
		return e, true
	case !ok:
		return e, false
	}
	detail, err := json.Marshal(o)
	if err != nil {
		e.failure, e.err = reasonUnreadable, err
		return e, true
	}
	e.outcome = o
	e.entry = ebtypes.PutEventsRequestEntry{
		EventBusName: aws.String(h.BusName),
		Source:       aws.String(contract.Source),
		DetailType:   aws.String(contract.DetailType(o.Status)),
		Detail:       aws.String(string(detail)),
	}
	if !o.At.IsZero() {
		e.entry.Time = aws.Time(o.At)
	}
	if e.size = entrySize(e.entry); e.size > MaxRequestSize {
		e.failure, e.err = reasonTooLarge, fmt.Errorf("event of %d bytes, over PutEvents' %d", e.size, MaxRequestSize)
	}
	return e, true
}

// outcomeOf reads the ledger change rec records, or ok false when it is
// none a business is told of.
func outcomeOf(rec events.DynamoDBEventRecord) (contract.Outcome, bool, error) {
	if rec.EventName != "INSERT" && rec.EventName != "MODIFY" {
		return contract.Outcome{}, false, nil
	}
	key := rec.Change.Keys
	if len(key) == 0 { // Lambda always sends Keys; an emulator might not
		key = rec.Change.NewImage
	}
	keys, err := ddb.FromStream(key)
	if err != nil {
		return contract.Outcome{}, false, err
	}
	if !strings.HasPrefix(ddb.String(keys, "pk"), notify.LedgerPrefix) {
		return contract.Outcome{}, false, nil
	}
	// Without both images a ledger change cannot be told from a rewrite
	// of the same status: the table's StreamViewType must be
	// NEW_AND_OLD_IMAGES.
	if len(rec.Change.NewImage) == 0 || rec.EventName == "MODIFY" && len(rec.Change.OldImage) == 0 {
		return contract.Outcome{}, false, fmt.Errorf("a %s of a ledger item without its images: the stream must be NEW_AND_OLD_IMAGES", rec.EventName)
	}
	after, err := entry(rec.Change.NewImage)
	if err != nil {
		return contract.Outcome{}, false, err
	}
	// A status this code does not know (a newer writer's, a hand edit) or
	// an entry that names no job would otherwise be skipped like a claim:
	// it fails instead, and ends in the on-failure queue, where
	// OutcomeDLQAlarm tells someone. (moto's bare-key INSERT has no status.)
	if _, has := rec.Change.NewImage["status"]; has && after.Status != contract.InProgress && (after.JobID == "" || contract.DetailType(after.Status) == "") {
		return contract.Outcome{}, false, fmt.Errorf("a ledger item with status %q and job id %q: no outcome this code knows", after.Status, after.JobID)
	}
	before, err := entry(rec.Change.OldImage)
	if err != nil {
		return contract.Outcome{}, false, err
	}
	o, ok := notify.Outcome(before, after)
	return o, ok, nil
}

// entry decodes a ledger image; the zero Entry for none (an INSERT's
// OldImage).
func entry(image map[string]events.DynamoDBAttributeValue) (notify.Entry, error) {
	item, err := ddb.FromStream(image)
	if err != nil || item == nil {
		return notify.Entry{}, err
	}
	e, _, err := notify.EntryOf(item)
	return e, err
}

// chunk is how many of pending (which starts with a publishable event) go
// in the next PutEvents call: up to MaxEntries and MaxRequestSize, up to
// the next record that fails by itself, and never two changes of one job,
// so that a job's events enter the bus one call after the other, in order.
func chunk(pending []event) int {
	size := 0
	jobs := map[string]bool{}
	for n, e := range pending {
		if n == MaxEntries || e.failure != "" || jobs[e.outcome.JobID] || size+e.size > MaxRequestSize {
			return n
		}
		size += e.size
		jobs[e.outcome.JobID] = true
	}
	return len(pending)
}

// entrySize is the size EventBridge counts an entry at against
// MaxRequestSize: 14 bytes for a time, and the bytes of source,
// detail-type, detail and resources.
func entrySize(e ebtypes.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	if e.Time != nil {
		n += 14
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// put publishes batch in one PutEvents call and returns the index of its
// first event that was not published, or -1 when every one was. The
// entries after a failed one that EventBridge accepted are published; they
// are published again with it, under the same event ids.
func (h *Handler) put(ctx context.Context, batch []event) int {
	entries := make([]ebtypes.PutEventsRequestEntry, len(batch))
	for i, e := range batch {
		entries[i] = e.entry
	}
	out, err := h.Bus.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
	if err != nil {
		reason := reasonError
		if throttled(err) {
			reason = reasonThrottled
		}
		h.failed(ctx, batch[0], reason, err)
		return 0
	}
	first := -1
	for i, e := range batch {
		var code, msg string
		if i < len(out.Entries) {
			code, msg = aws.ToString(out.Entries[i].ErrorCode), aws.ToString(out.Entries[i].ErrorMessage)
		} else {
			code, msg = "Missing", "PutEvents answered fewer entries than it was given"
		}
		if code == "" {
			h.published(ctx, e)
			continue
		}
		if first < 0 {
			first = i
			reason := reasonError
			if strings.Contains(code, "Throttl") {
				reason = reasonThrottled
			}
			h.failed(ctx, e, reason, fmt.Errorf("entry refused: %s: %s", code, msg))
		}
	}
	return first
}

func throttled(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && strings.Contains(api.ErrorCode(), "Throttl")
}

// published logs and counts an event the bus accepted: its job, status
// and event id only, never the recipient or the rest of the detail.
func (h *Handler) published(ctx context.Context, e event) {
	h.Log.InfoContext(ctx, "publish", "outcome", "published", "job_id", e.outcome.JobID, "status", string(e.outcome.Status), "event_id", e.outcome.EventID)
	h.Metrics.Count("OutcomesPublished", "status", string(e.outcome.Status))
}

// failed logs and counts a record reported back to the stream.
func (h *Handler) failed(ctx context.Context, e event, reason string, err error) {
	attrs := []any{"outcome", "failed", "reason", reason, "sequence_number", e.seq}
	if e.outcome.JobID != "" {
		attrs = append(attrs, "job_id", e.outcome.JobID, "status", string(e.outcome.Status), "event_id", e.outcome.EventID)
	}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	h.Log.WarnContext(ctx, "publish", attrs...)
	h.Metrics.Count("OutcomePublishFailed", "reason", reason)
}
