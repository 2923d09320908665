package notify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
)

// Status is where a job stands in the ledger (contract.Status: the
// outcome events carry it).
type Status = contract.Status

// The ledger states (contract's).
const (
	InProgress    = contract.InProgress
	Sent          = contract.Sent
	Failed        = contract.Failed
	Undeliverable = contract.Undeliverable
	Expired       = contract.Expired
	Delivered     = contract.Delivered
	Blocked       = contract.Blocked
	Unknown       = contract.Unknown
)

// Entry is a job's ledger record.
type Entry struct {
	JobID    string  `dynamodbav:"job_id"`
	Status   Status  `dynamodbav:"status"`
	UID      string  `dynamodbav:"uid,omitempty"`
	Channel  Channel `dynamodbav:"channel,omitempty"`
	MsgID    string  `dynamodbav:"msgid,omitempty"`
	ErrCode  int     `dynamodbav:"errcode,omitempty"`
	RID      string  `dynamodbav:"rid,omitempty"`
	Class    string  `dynamodbav:"class,omitempty"`
	Reason   string  `dynamodbav:"reason,omitempty"`
	Attempts int     `dynamodbav:"attempts,omitempty"`
	// Report is the TEMPLATESENDJOBFINISH status ("success",
	// "failed:user block", ...).
	Report     string `dynamodbav:"report,omitempty"`
	LeaseUntil int64  `dynamodbav:"lease_until,omitempty"` // Unix ms; 0: not held
	// Trying is the channel of an attempt whose outcome is not known (yet):
	// the message may have gone out on it. TriedAt (Unix ms) is when the
	// first such attempt went out, at the earliest.
	Trying  Channel `dynamodbav:"trying,omitempty"`
	TriedAt int64   `dynamodbav:"tried_at,omitempty"`
	// TryingVia is where that attempt went, "<appid>#<openid>": a resend
	// is deduplicated (client_msg_id) only to the same openid of the same
	// app. Empty on entries written before it was kept.
	TryingVia string `dynamodbav:"trying_via,omitempty"`
	// To is the recipient as the job named it (written by each claim and
	// by Record). Tried holds one Try per channel wxbridge called, in the
	// order first called, each with that channel's latest answer: a retry
	// that calls a channel again replaces its Try, so the list never grows
	// with retries (Attempts counts those). A channel skipped (known not to
	// reach the person) has a Try too, unless an answer of its own is
	// there already. Outcome events carry both.
	To         *contract.Recipient `dynamodbav:"to,omitempty"`
	Tried      []contract.Try      `dynamodbav:"tried,omitempty"`
	CreatedAt  time.Time           `dynamodbav:"created_at"`
	UpdatedAt  time.Time           `dynamodbav:"updated_at"`
	ReportedAt *time.Time          `dynamodbav:"reported_at,omitempty"`
}

// Final reports whether the job is settled: nothing will send it again.
func (e Entry) Final() bool { return e.Status != InProgress && e.Status != "" }

// DB is the part of the DynamoDB API the ledger uses.
type DB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	// DeleteItem completes ddb.LeaseDeleteAPI; the ledger never deletes.
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Ledger keeps one item per job id in the wxbridge table:
//
//	pk          "SEND#<job id>"
//	status      INPROGRESS, SENT, FAILED, UNDELIVERABLE, EXPIRED, DELIVERED, BLOCKED, UNKNOWN
//	lease_owner the worker holding the job (a ddb lease; INPROGRESS only)
//	lease_until Unix ms the lease holds to; both are removed when the
//	            worker lets go (settled, or released for a retry)
//	trying      the channel of an attempt whose outcome is not known: set
//	            when a worker claims the job for a channel (or falls back to
//	            another) and removed once WeChat's answer says nothing went
//	            out; a worker that finds it set never tries another channel
//	tried_at    Unix ms the first such attempt went out, at the earliest: the
//	            start of client_msg_id's 10-minute window
//	trying_via  "<appid>#<openid>" that attempt went to: a job whose
//	            from or recipient changed since (a copy naming another
//	            app, a phone number that moved) is not sent again
//	msg_key     "<OA appid>#<msgid>" of a sent template message: the key of
//	            the sparse MsgKey index by which a delivery report finds it
//	to          the recipient as the job named it (a map: uid, external_id,
//	            unionid, oa_openid or mp_openid)
//	tried       a list, one map per channel called or skipped: channel,
//	            outcome (sent, failed, unknown, skipped), errcode, rid,
//	            class, reason (Entry.Tried)
//	attempts, uid, channel, msgid, errcode, rid, class, reason, report,
//	created_at, updated_at, reported_at, ttl
//
// A delivered message costs two writes: the claim and the SENT record
// (a fallback to another channel one more, before it sends). to and tried
// ride on those writes; each write of tried sets the whole list, so a
// write repeated (the SDK's retry of a lost answer, persist) changes
// nothing.
type Ledger struct {
	db    DB
	table string
	// Retention is how long an entry is kept (TTL) after its last write.
	Retention time.Duration
	Now       func() time.Time
}

// MsgKeyIndex is the table's index on msg_key (template.yaml).
const MsgKeyIndex = "MsgKey"

// NewLedger returns the ledger in table.
func NewLedger(db DB, table string) *Ledger {
	return &Ledger{db: db, table: table, Retention: 30 * 24 * time.Hour, Now: time.Now}
}

// msgKey is the MsgKey index's key of a template message.
func msgKey(appid, msgid string) string { return appid + "#" + msgid }

func ledgerKey(jobID string) ddb.Item { return ddb.Key(LedgerPrefix + jobID) }

func timeValue(t time.Time) types.AttributeValue { return ddb.S(t.UTC().Format(time.RFC3339Nano)) }

// Attribute names that go through placeholders ("status", "ttl", "to" and
// "class" are DynamoDB reserved words; the others for symmetry).
var ledgerNames = map[string]string{"#s": "status", "#ttl": "ttl", "#trying": "trying", "#tried": "tried_at", "#via": "trying_via", "#to": "to", "#tries": "tried"}

func attrNames(use ...string) map[string]string {
	out := make(map[string]string, len(use))
	for _, n := range use {
		out[n] = ledgerNames[n]
	}
	return out
}

// ClaimState is what a claim found.
type ClaimState int

// Claim outcomes.
const (
	Claimed  ClaimState = iota // the caller holds the job: send it
	Settled                    // the job is final already (or reported): do nothing
	InFlight                   // another worker holds an unexpired claim
)

// Claim is the caller's hold on a job: a ddb lease on its entry.
type Claim struct {
	State    ClaimState
	Token    string    // the lease owner
	At       time.Time // when the claim was taken
	Attempt  int       // 1 for the first claim of the job
	Takeover bool      // the previous holder's lease ran out unreleased: it may have sent
	// Uncertain is the channel of an earlier attempt whose outcome is not
	// known (its answer was lost, or its worker stopped): that attempt may
	// have sent the message. UncertainSince is when it went out, at the
	// earliest.
	Uncertain      Channel
	UncertainSince time.Time
	// UncertainVia is where that attempt went ("<appid>#<openid>"); empty
	// when the entry does not say (written before it was kept).
	UncertainVia string
	Existing     Entry // when Settled or InFlight: the entry found
	// tried is the entry's Tried as the claim found it: the writes under
	// the claim set it merged with what this attempt learns.
	tried []contract.Try
	// had lists the outcome fields an earlier attempt left on the entry,
	// which the next write must remove if it does not set them.
	had   map[string]bool
	lease *ddb.Lease
}

// Claim takes job id until the lease ends (one conditional write,
// whatever the outcome), without naming a channel.
func (l *Ledger) Claim(ctx context.Context, jobID, uid string, until time.Time) (Claim, error) {
	return l.claim(ctx, jobID, uid, until, "", "", nil)
}

// claim takes job id until the lease ends, for an attempt on channel
// first to via ("<appid>#<openid>"): unless an earlier attempt left
// another channel uncertain, the entry says from now on that first may
// send (trying) and where (trying_via), so that whoever finds the job
// after a crash knows which channel may have sent it, and to whom. A
// non-nil to is recorded as the job's recipient.
func (l *Ledger) claim(ctx context.Context, jobID, uid string, until time.Time, first Channel, via string, to *Recipient) (Claim, error) {
	now := l.Now()
	set := "#s = :inprogress, job_id = :id, uid = :uid, updated_at = :at, created_at = if_not_exists(created_at, :at), #ttl = :ttl"
	values := ddb.Item{
		":inprogress": ddb.S(string(InProgress)), ":id": ddb.S(jobID), ":uid": ddb.S(uid), ":at": timeValue(now),
		":ttl": ddb.TTL(now.Add(l.Retention)), ":one": ddb.N(1),
	}
	n := attrNames("#s", "#ttl")
	if first != "" {
		set += ", #trying = if_not_exists(#trying, :trying), #tried = if_not_exists(#tried, :tried)"
		values[":trying"], values[":tried"] = ddb.S(string(first)), ddb.Millis(now)
		n = attrNames("#s", "#ttl", "#trying", "#tried")
		if via != "" {
			set += ", #via = if_not_exists(#via, :via)"
			values[":via"], n["#via"] = ddb.S(via), ledgerNames["#via"]
		}
	}
	if to != nil {
		v, err := attributevalue.Marshal(to)
		if err != nil {
			return Claim{}, fmt.Errorf("notify: claim %s: %w", jobID, err)
		}
		set += ", #to = :to"
		values[":to"], n["#to"] = v, ledgerNames["#to"]
	}
	lease, cur, err := ddb.Taken(ctx, l.db, ddb.Take{
		Table: l.table, Key: ledgerKey(jobID), Until: until, Now: now,
		While: "#s = :inprogress", Set: set, Add: "attempts :one", Names: n, Values: values,
	})
	switch {
	case errors.Is(err, ddb.ErrHeld):
		e, derr := decodeEntry(cur)
		if derr != nil {
			return Claim{}, derr
		}
		if e.Final() {
			return Claim{State: Settled, Existing: e}, nil
		}
		return Claim{State: InFlight, Existing: e}, nil
	case err != nil:
		return Claim{}, fmt.Errorf("notify: claim %s: %w", jobID, err)
	}
	before := lease.Before
	if lease.BeforeUnknown {
		before = beforeClaim(cur, now, first)
	}
	old, err := decodeEntry(before)
	if err != nil {
		return Claim{}, err
	}
	had := map[string]bool{}
	for name := range before {
		had[name] = true
	}
	c := Claim{State: Claimed, Token: lease.Owner, At: now, Attempt: old.Attempts + 1, Takeover: lease.Takeover(), tried: old.Tried, had: had, lease: lease}
	if old.Trying != "" {
		c.Uncertain, c.UncertainSince, c.UncertainVia = old.Trying, time.UnixMilli(old.TriedAt), old.TryingVia
	}
	return c, nil
}

// beforeClaim rebuilds what a claim needs of the entry as it was before
// the claim, from the entry as the claim left it (after), for a claim
// whose answer was lost after DynamoDB committed it (ddb.Lease's
// BeforeUnknown). The claim added one attempt and kept every outcome
// field. It set trying and tried_at only if no earlier attempt had: a
// trying mark whose tried_at is this claim's own time (now) and whose
// channel is first was written by this claim, not left by an earlier
// attempt whose outcome is unknown (two claims of one job cannot fall in
// the same millisecond: the earlier one had to send and let go first).
// Any other mark is an earlier attempt's, and is honoured.
func beforeClaim(after ddb.Item, now time.Time, first Channel) ddb.Item {
	before := maps.Clone(after)
	before["attempts"] = ddb.N(ddb.Int(after, "attempts") - 1)
	if first != "" && ddb.String(after, "trying") == string(first) && ddb.Int(after, "tried_at") == now.UnixMilli() {
		delete(before, "trying")
		delete(before, "tried_at")
		delete(before, "trying_via")
	}
	return before
}

func decodeEntry(item ddb.Item) (Entry, error) {
	var e Entry
	if len(item) == 0 {
		return e, nil
	}
	if err := attributevalue.UnmarshalMap(item, &e); err != nil {
		return Entry{}, fmt.Errorf("notify: ledger entry: %w", err)
	}
	return e, nil
}

// ErrClaimLost reports a write by a worker whose claim was taken over.
var ErrClaimLost = errors.New("notify: claim lost to another worker")

// Outcome fields of a settled entry.
type result struct {
	Status  Status
	Channel Channel
	AppID   string // the app Channel went through: on its Try only
	MsgID   string
	MsgKey  string // "<appid>#<msgid>" for template messages
	ErrCode int
	RID     string
	Class   string
	Reason  string
	// tries are the channels this attempt called, in order, with their
	// answers: merged into the entry's tried (mergeTries).
	tries []contract.Try
}

// try is what r says of its channel's call, as outcome: r's answer, with
// the reason without the channel's name in front.
func (r result) try(outcome string) contract.Try {
	return contract.Try{Channel: r.Channel, AppID: r.AppID, Outcome: outcome, ErrCode: r.ErrCode, RID: r.RID, Class: r.Class,
		Reason: strings.TrimPrefix(r.Reason, string(r.Channel)+": ")}
}

// after returns r recording, after the calls before, its own channel's
// call as outcome.
func (r result) after(before []contract.Try, outcome string) result {
	r.tries = append(slices.Clip(before), r.try(outcome))
	return r
}

// mergeTries is the tried list after an attempt: each of tries replaces
// the entry's Try of its channel, or is appended when the channel has
// none. An attempt that calls a channel again (a retry) thus leaves one
// Try for it, its latest answer, in the place of its first call.
func mergeTries(entry, tries []contract.Try) []contract.Try {
	out := slices.Clone(entry)
	for _, t := range tries {
		if i := slices.IndexFunc(out, func(o contract.Try) bool { return o.Channel == t.Channel }); i >= 0 {
			out[i] = t
		} else {
			out = append(out, t)
		}
	}
	return out
}

// setTries extends a SET expression with the whole tried list, the
// claim's merged with tries, when this attempt called a channel: setting
// the whole list, a write made twice leaves it as once.
func setTries(expr string, c Claim, tries []contract.Try, names map[string]string, values ddb.Item) (string, error) {
	if len(tries) == 0 {
		return expr, nil
	}
	v, err := attributevalue.Marshal(mergeTries(c.tried, tries))
	if err != nil {
		return expr, fmt.Errorf("notify: tried: %w", err)
	}
	names["#tries"], values[":tries"] = ledgerNames["#tries"], v
	return expr + ", #tries = :tries", nil
}

// set extends a SET expression with r's fields and lists the fields to
// remove (those r leaves empty that the entry had). Every attribute goes
// through a name placeholder: "class" and "status" are DynamoDB reserved
// words.
func (r result) set(expr string, had map[string]bool, names map[string]string, values ddb.Item) (string, []string) {
	var remove []string
	add := func(name string, v types.AttributeValue, present bool) {
		switch {
		case present:
			names["#"+name] = name
			expr += ", #" + name + " = :" + name
			values[":"+name] = v
		case had[name]:
			names["#"+name] = name
			remove = append(remove, "#"+name)
		}
	}
	add("channel", ddb.S(string(r.Channel)), r.Channel != "")
	add("msgid", ddb.S(r.MsgID), r.MsgID != "")
	add("msg_key", ddb.S(r.MsgKey), r.MsgKey != "")
	add("errcode", ddb.N(int64(r.ErrCode)), r.ErrCode != 0)
	add("rid", ddb.S(r.RID), r.RID != "")
	add("class", ddb.S(r.Class), r.Class != "")
	add("reason", ddb.S(r.Reason), r.Reason != "")
	return expr, remove
}

// end lets go of c's lease with the update expr/remove (one conditional
// write); ErrClaimLost when the lease is no longer c's.
func (l *Ledger) end(ctx context.Context, jobID string, c Claim, set string, remove []string, names map[string]string, values ddb.Item) error {
	if c.lease == nil {
		return fmt.Errorf("notify: ledger %s: write without a claim", jobID)
	}
	err := c.lease.Release(ctx, l.db, ddb.End{Set: set, Remove: strings.Join(remove, ", "), Names: names, Values: values})
	switch {
	case errors.Is(err, ddb.ErrLost):
		return ErrClaimLost
	case err != nil:
		return fmt.Errorf("notify: ledger %s: %w", jobID, err)
	}
	return nil
}

// Settle records the final outcome of a claimed job (one conditional
// write). It fails with ErrClaimLost when the claim is no longer held.
func (l *Ledger) Settle(ctx context.Context, jobID string, c Claim, r result) error {
	now := l.Now()
	values := ddb.Item{":status": ddb.S(string(r.Status)), ":at": timeValue(now), ":ttl": ddb.TTL(now.Add(l.Retention))}
	n := attrNames("#s", "#ttl", "#trying", "#tried", "#via")
	set, remove := r.set("#s = :status, updated_at = :at, #ttl = :ttl", c.had, n, values)
	set, err := setTries(set, c, r.tries, n, values)
	if err != nil {
		return err
	}
	return l.end(ctx, jobID, c, set, append(remove, "#trying", "#tried", "#via"), n, values)
}

// SettleSent records a claimed job SENT on channel; for a template
// message or an OA subscribe notification, appid and msgid are what its
// delivery report (TEMPLATESENDJOBFINISH, subscribe_msg_sent_event) will
// carry. A send without a msgid cannot be matched to its report.
func (l *Ledger) SettleSent(ctx context.Context, jobID string, c Claim, channel Channel, appid, msgid string) error {
	r := result{Status: Sent, Channel: channel, MsgID: msgid}
	if (channel == Template || channel == OASubscribe) && msgid != "" {
		r.MsgKey = msgKey(appid, msgid)
	}
	return l.Settle(ctx, jobID, c, r)
}

// Release gives a claimed job back for a later retry, noting why (one
// conditional write), after an attempt that WeChat's answer says sent
// nothing: the next claim is no takeover, and may try any channel.
func (l *Ledger) Release(ctx context.Context, jobID string, c Claim, r result) error {
	return l.release(ctx, jobID, c, r, false)
}

// release is Release; with uncertain, the entry keeps saying that a
// channel may have sent (trying), for the next claim to honour.
func (l *Ledger) release(ctx context.Context, jobID string, c Claim, r result, uncertain bool) error {
	now := l.Now()
	values := ddb.Item{":at": timeValue(now), ":ttl": ddb.TTL(now.Add(l.Retention))}
	n := attrNames("#ttl")
	r.Status, r.MsgID, r.MsgKey = "", "", ""
	set, remove := r.set("updated_at = :at, #ttl = :ttl", c.had, n, values)
	set, err := setTries(set, c, r.tries, n, values)
	if err != nil {
		return err
	}
	if !uncertain {
		n["#trying"], n["#tried"], n["#via"] = ledgerNames["#trying"], ledgerNames["#tried"], ledgerNames["#via"]
		remove = append(remove, "#trying", "#tried", "#via")
	}
	return l.end(ctx, jobID, c, set, remove, n, values)
}

// try notes, before a claimed job falls back to channel (to via,
// "<appid>#<openid>"), that channel may now send it, and what the
// channels called before it answered (tries), with one conditional write;
// it returns when it did. ErrClaimLost when the claim is no longer held.
func (l *Ledger) try(ctx context.Context, jobID string, c Claim, channel Channel, via string, tries []contract.Try) (time.Time, error) {
	now := l.Now()
	if c.lease == nil {
		return now, fmt.Errorf("notify: ledger %s: write without a claim", jobID)
	}
	n := attrNames("#trying", "#tried", "#via")
	n["#lo"] = ddb.LeaseOwner
	values := ddb.Item{":owner": ddb.S(c.lease.Owner), ":trying": ddb.S(string(channel)), ":tried": ddb.Millis(now), ":via": ddb.S(via), ":at": timeValue(now)}
	set, err := setTries("SET #trying = :trying, #tried = :tried, #via = :via, updated_at = :at", c, tries, n, values)
	if err != nil {
		return now, err
	}
	_, err = l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &l.table,
		Key:                       ledgerKey(jobID),
		ConditionExpression:       aws.String("#lo = :owner"),
		UpdateExpression:          &set,
		ExpressionAttributeNames:  n,
		ExpressionAttributeValues: values,
	})
	if _, ok := ddb.ConditionFailed(err); ok {
		return now, ErrClaimLost
	}
	if err != nil {
		return now, fmt.Errorf("notify: ledger %s: %w", jobID, err)
	}
	return now, nil
}

// Record settles a job that was never claimed (invalid, expired, or nobody
// to send to), unless a worker holds it, it is settled already, or an
// earlier attempt may have sent it (trying): then it returns that entry and
// changes nothing. One conditional write. An entry an earlier attempt
// released keeps its created_at, attempts, tried and uid (when uid is
// empty); its other outcome fields give way to r's, and r's tries (the
// channels skipped) become its tried only when it had none. A non-nil to is
// recorded as the job's recipient.
func (l *Ledger) Record(ctx context.Context, jobID, uid string, to *Recipient, r result) (Entry, bool, error) {
	now := l.Now()
	n := attrNames("#s", "#ttl", "#trying", "#tried")
	n["#lo"], n["#lu"] = ddb.LeaseOwner, ddb.LeaseUntil
	values := ddb.Item{
		":status": ddb.S(string(r.Status)), ":id": ddb.S(jobID), ":at": timeValue(now), ":ttl": ddb.TTL(now.Add(l.Retention)),
		":inprogress": ddb.S(string(InProgress)), ":now": ddb.Millis(now),
	}
	set := "#s = :status, job_id = :id, updated_at = :at, created_at = if_not_exists(created_at, :at), #ttl = :ttl"
	if uid != "" {
		set += ", uid = :uid"
		values[":uid"] = ddb.S(uid)
	}
	if to != nil {
		v, err := attributevalue.Marshal(to)
		if err != nil {
			return Entry{}, false, fmt.Errorf("notify: record %s: %w", jobID, err)
		}
		set += ", #to = :to"
		values[":to"], n["#to"] = v, ledgerNames["#to"]
	}
	if len(r.tries) > 0 {
		// The channels skipped: an earlier attempt's answers, when the
		// entry has them, say more and stay.
		v, err := attributevalue.Marshal(r.tries)
		if err != nil {
			return Entry{}, false, fmt.Errorf("notify: record %s: %w", jobID, err)
		}
		set += ", #tries = if_not_exists(#tries, :tries)"
		values[":tries"], n["#tries"] = v, ledgerNames["#tries"]
	}
	// Whatever a released attempt left goes (removing an absent attribute
	// is no error), and so does a lease that ran out.
	every := map[string]bool{"channel": true, "msgid": true, "msg_key": true, "errcode": true, "rid": true, "class": true, "reason": true}
	set, remove := r.set(set, every, n, values)
	update := "SET " + set + " REMOVE " + strings.Join(append(remove, "#lo", "#lu", "#tried"), ", ")
	out, err := l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        &l.table,
		Key:              ledgerKey(jobID),
		UpdateExpression: &update,
		ConditionExpression: aws.String("attribute_not_exists(pk) OR " +
			"(#s = :inprogress AND (attribute_not_exists(#lu) OR #lu < :now) AND attribute_not_exists(#trying))"),
		ExpressionAttributeNames:            n,
		ExpressionAttributeValues:           values,
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if cur, ok := ddb.ConditionFailed(err); ok {
		old, derr := decodeEntry(cur)
		return old, false, derr
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("notify: record %s: %w", jobID, err)
	}
	e, err := decodeEntry(out.Attributes)
	return e, true, err
}

// Get returns job id's entry, or ok false when there is none.
func (l *Ledger) Get(ctx context.Context, jobID string) (Entry, bool, error) {
	out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &l.table, Key: ledgerKey(jobID), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Entry{}, false, fmt.Errorf("notify: ledger %s: %w", jobID, err)
	}
	e, err := decodeEntry(out.Item)
	return e, len(out.Item) > 0, err
}

// reportStatus maps a TEMPLATESENDJOBFINISH Status to the ledger: success
// is DELIVERED, "failed:user block" (the person refuses the account's
// messages) is BLOCKED, and any other failure ("failed: system failed",
// "failed:freq limit") is FAILED with the status as the reason.
func reportStatus(status string) Status {
	switch status {
	case "success":
		return Delivered
	case "failed:user block", "failed: user block":
		return Blocked
	}
	return Failed
}

// Report applies a TEMPLATESENDJOBFINISH push: the SENT entry of the
// template message appid/msgid becomes DELIVERED, BLOCKED or FAILED. It
// reports whether an entry matched; a msgid wxbridge did not send (another
// system sharing the account) matches nothing. Reports are idempotent: a
// repeated one changes nothing.
func (l *Ledger) Report(ctx context.Context, appid, msgid, status string) (bool, error) {
	key := msgKey(appid, msgid)
	out, err := l.db.Query(ctx, &dynamodb.QueryInput{
		TableName:                 &l.table,
		IndexName:                 aws.String(MsgKeyIndex),
		KeyConditionExpression:    aws.String("msg_key = :k"),
		ExpressionAttributeValues: ddb.Item{":k": ddb.S(key)},
		Limit:                     aws.Int32(1),
	})
	if err != nil {
		return false, fmt.Errorf("notify: report lookup: %w", err)
	}
	if len(out.Items) == 0 {
		return false, nil
	}
	now := l.Now()
	to := reportStatus(status)
	values := ddb.Item{
		":sent": ddb.S(string(Sent)), ":k": ddb.S(key), ":to": ddb.S(string(to)), ":report": ddb.S(status),
		":at": timeValue(now), ":ttl": ddb.TTL(now.Add(l.Retention)),
	}
	update := "SET #s = :to, report = :report, reported_at = :at, updated_at = :at, #ttl = :ttl"
	if to == Failed {
		update += ", reason = :reason, #c = :class"
		values[":reason"] = ddb.S("delivery report: " + status)
		values[":class"] = ddb.S("delivery")
	}
	names := map[string]string{"#s": "status", "#ttl": "ttl"}
	if to == Failed {
		names["#c"] = "class"
	}
	_, err = l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &l.table,
		Key:                       ddb.Item{"pk": out.Items[0]["pk"]},
		UpdateExpression:          &update,
		ConditionExpression:       aws.String("#s = :sent AND msg_key = :k"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	if _, ok := ddb.ConditionFailed(err); ok {
		return true, nil // reported already
	}
	if err != nil {
		return true, fmt.Errorf("notify: report: %w", err)
	}
	return true, nil
}
