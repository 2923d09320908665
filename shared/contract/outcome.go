package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Status is where a job stands: the send ledger's state, and the status
// of an outcome event.
type Status string

// The states. INPROGRESS is the only one that changes by itself (its lease
// runs out) and the only one no outcome event carries; SENT changes once
// more when WeChat reports the delivery of a template message or an
// official-account subscribe notification; the others are final.
const (
	InProgress    Status = "INPROGRESS"    // claimed by a worker, or waiting to be retried
	Sent          Status = "SENT"          // WeChat accepted it (template messages and OA subscribe notifications: msgid)
	Failed        Status = "FAILED"        // it will not be sent: errcode, rid and class say why
	Undeliverable Status = "UNDELIVERABLE" // the person cannot be reached on any allowed channel
	Expired       Status = "EXPIRED"       // found after its expires_at
	Delivered     Status = "DELIVERED"     // WeChat reported the message delivered
	Blocked       Status = "BLOCKED"       // WeChat reported the person refuses the account's messages
	// Unknown: an attempt on channel went out and no answer came back (it
	// was lost, or the worker stopped), so the message may or may not have
	// reached the person; no other channel is tried, and it is not sent
	// again. reason says what happened.
	Unknown Status = "UNKNOWN"
)

// Final reports whether nothing will change the status any more.
func (s Status) Final() bool { return s != InProgress && s != Sent && s != "" }

// AwaitsReport reports whether a job SENT on channel with msgid may still
// change: WeChat reports the delivery of a template message
// (TEMPLATESENDJOBFINISH) and of an OA subscribe notification
// (subscribe_msg_sent_event) by msgid. A mini-program subscribe message, a
// customer-service message, or a send whose answer carried no msgid gets no
// report that could be matched: SENT is its end.
func AwaitsReport(channel Channel, msgid string) bool {
	return (channel == Template || channel == OASubscribe) && msgid != ""
}

// FinalOutcome is an outcome's final: whether nothing will change the job
// with status, sent (if it was) on channel with msgid.
func FinalOutcome(s Status, channel Channel, msgid string) bool {
	return s.Final() || s == Sent && !AwaitsReport(channel, msgid)
}

// Source is the source of every outcome event on the bus.
const Source = "wxbridge"

// OutcomeVersion is the version of Outcome's shape. A change that removes
// or redefines a field bumps it; new optional fields do not.
const OutcomeVersion = "1"

// detailTypes are the outcome events' detail-types, one per status: what
// an EventBridge rule matches on.
var detailTypes = map[Status]string{
	Sent:          "Notification Sent",
	Delivered:     "Notification Delivered",
	Blocked:       "Notification Blocked",
	Failed:        "Notification Failed",
	Undeliverable: "Notification Undeliverable",
	Expired:       "Notification Expired",
	Unknown:       "Notification Outcome Unknown",
}

// DetailType is the outcome event's detail-type for status, or "" for a
// status no event carries (INPROGRESS).
func DetailType(s Status) string { return detailTypes[s] }

// Try is what one channel of a job came to: sent, refused by WeChat, or
// skipped (never called) because wxbridge knew it could not reach the
// person.
type Try struct {
	Channel Channel `json:"channel" dynamodbav:"channel"`
	// AppID is the app the channel sent (or would have sent) from: the
	// one the job's from names, else the default of the channel's kind.
	AppID string `json:"appid,omitempty" dynamodbav:"appid,omitempty"`
	// Outcome is "sent", "failed" (WeChat answered an error), "unknown"
	// (the answer was lost) or "skipped" (not called).
	Outcome string `json:"outcome" dynamodbav:"outcome"`
	ErrCode int    `json:"errcode,omitempty" dynamodbav:"errcode,omitempty"`
	RID     string `json:"rid,omitempty" dynamodbav:"rid,omitempty"`
	Class   string `json:"class,omitempty" dynamodbav:"class,omitempty"`
	Reason  string `json:"reason,omitempty" dynamodbav:"reason,omitempty"`
}

// The outcomes of a Try.
const (
	TrySent    = "sent"
	TryFailed  = "failed"
	TryUnknown = "unknown"
	TrySkipped = "skipped"
)

// Outcome is the detail of an outcome event: one change of a job's state,
// as the send ledger recorded it.
type Outcome struct {
	Version string `json:"version"`
	// EventID is the same each time this change is published again (at
	// least once delivery): consumers deduplicate on it.
	EventID string `json:"event_id"`
	JobID   string `json:"job_id"`
	Status  Status `json:"status"`
	// Final is false only for a SENT that a delivery report may still
	// change (AwaitsReport): nothing changes the others any more.
	Final   bool    `json:"final"`
	Channel Channel `json:"channel,omitempty"`
	MsgID   string  `json:"msgid,omitempty"`
	ErrCode int     `json:"errcode,omitempty"`
	RID     string  `json:"rid,omitempty"`
	Class   string  `json:"class,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	// Tried has one Try per channel wxbridge called or skipped, in the
	// order first considered, each with that channel's latest answer: a
	// retry that calls a channel again replaces its Try (Attempts counts
	// retries).
	Tried    []Try `json:"tried,omitempty"`
	Attempts int   `json:"attempts"`
	// Report is WeChat's delivery report of a template message or an OA
	// subscribe notification ("success", "failed:user block", ...).
	Report string `json:"report,omitempty"`
	// To is the recipient as the job named it; UID the person wxbridge
	// resolved it to.
	To        *Recipient `json:"to,omitempty"`
	UID       string     `json:"uid,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	// At is when the ledger changed to this status.
	At         time.Time  `json:"at"`
	ReportedAt *time.Time `json:"reported_at,omitempty"`
}

// OutcomeEventID is the event id of job's change to status, for the job
// whose ledger entry was created at created: the same however often the
// change is published, and distinct for each change (a job reaches each
// status at most once; a job id used again after its entry expired has a
// new created time).
func OutcomeEventID(jobID string, created time.Time, status Status) string {
	h := sha256.Sum256([]byte(jobID + "\x00" + created.UTC().Format(time.RFC3339Nano) + "\x00" + string(status)))
	return hex.EncodeToString(h[:16])
}

// DecodeOutcome decodes an outcome event's detail, refusing a version it
// does not know.
func DecodeOutcome(b []byte) (Outcome, error) {
	var o Outcome
	if err := json.Unmarshal(b, &o); err != nil {
		return Outcome{}, fmt.Errorf("contract: outcome: %w", err)
	}
	if o.Version != OutcomeVersion {
		return Outcome{}, fmt.Errorf("contract: outcome version %q, this package reads %q", o.Version, OutcomeVersion)
	}
	if o.EventID == "" || o.JobID == "" || DetailType(o.Status) == "" {
		return Outcome{}, fmt.Errorf("contract: outcome without event_id, job_id or a known status")
	}
	// What consumers deduplicate and branch on must be what wxbridge
	// publishes (the schema's event_id pattern, final only when the status
	// is), not merely present.
	if !isEventID(o.EventID) {
		return Outcome{}, fmt.Errorf("contract: outcome event_id %q is not 32 lowercase hex digits", o.EventID)
	}
	if o.Final != FinalOutcome(o.Status, o.Channel, o.MsgID) {
		return Outcome{}, fmt.Errorf("contract: outcome %s with final %v", o.Status, o.Final)
	}
	return o, nil
}

func isEventID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Event is an EventBridge event as a target receives it (an SQS message
// body, a Lambda's input, an API destination's request body) with an
// outcome as its detail.
type Event struct {
	ID         string    `json:"id"` // EventBridge's id: new on each publish; use Detail.EventID
	DetailType string    `json:"detail-type"`
	Source     string    `json:"source"`
	Time       time.Time `json:"time"`
	Detail     Outcome   `json:"detail"`
}

// DecodeEvent decodes an outcome event as EventBridge delivers it.
func DecodeEvent(b []byte) (Event, error) {
	var raw struct {
		Event
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Event{}, fmt.Errorf("contract: event: %w", err)
	}
	if raw.Source != Source {
		return Event{}, fmt.Errorf("contract: event from %q, not %q", raw.Source, Source)
	}
	o, err := DecodeOutcome(raw.Detail)
	if err != nil {
		return Event{}, err
	}
	// Rules route on detail-type, code reads detail.status: they must agree
	// (encoding/json would also take a second, upper-case "STATUS" key that
	// rules and the schema never see).
	if raw.DetailType != DetailType(o.Status) {
		return Event{}, fmt.Errorf("contract: event of detail-type %q with status %s", raw.DetailType, o.Status)
	}
	ev := raw.Event
	ev.Detail = o
	return ev, nil
}
