package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Status is where a job stands in the ledger.
type Status string

// The ledger states. INPROGRESS is the only one that changes by itself
// (its lease runs out); SENT changes once more when WeChat reports the
// template message's delivery; the others are final.
const (
	InProgress    Status = "INPROGRESS"    // claimed by a worker, or waiting to be retried
	Sent          Status = "SENT"          // WeChat accepted it (template messages: msgid)
	Failed        Status = "FAILED"        // it will not be sent: errcode, rid and class say why
	Undeliverable Status = "UNDELIVERABLE" // the person cannot be reached on any allowed channel
	Expired       Status = "EXPIRED"       // found after its expires_at
	Delivered     Status = "DELIVERED"     // WeChat reported the template message delivered
	Blocked       Status = "BLOCKED"       // WeChat reported the person refuses the account's messages
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
	Report     string     `dynamodbav:"report,omitempty"`
	LeaseUntil int64      `dynamodbav:"lease_until,omitempty"` // Unix ms; 0: not held
	CreatedAt  time.Time  `dynamodbav:"created_at"`
	UpdatedAt  time.Time  `dynamodbav:"updated_at"`
	ReportedAt *time.Time `dynamodbav:"reported_at,omitempty"`
}

// Final reports whether the job is settled: nothing will send it again.
func (e Entry) Final() bool { return e.Status != InProgress && e.Status != "" }

// DB is the part of the DynamoDB API the ledger uses.
type DB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Ledger keeps one item per job id in the wxbridge table:
//
//	pk          "SEND#<job id>"
//	status      INPROGRESS, SENT, FAILED, UNDELIVERABLE, EXPIRED, DELIVERED, BLOCKED
//	claim       the token of the worker holding it (INPROGRESS only)
//	lease_until Unix ms the claim holds to; 0 once released for a retry
//	msg_key     "<OA appid>#<msgid>" of a sent template message: the key of
//	            the sparse MsgKey index by which a delivery report finds it
//	attempts, uid, channel, msgid, errcode, rid, class, reason, report,
//	created_at, updated_at, reported_at, ttl
//
// A delivered message costs two writes: the claim and the SENT record.
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

func ledgerKey(jobID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str("SEND#" + jobID)}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func timeValue(t time.Time) types.AttributeValue { return str(t.UTC().Format(time.RFC3339Nano)) }

// ClaimState is what a claim found.
type ClaimState int

// Claim outcomes.
const (
	Claimed  ClaimState = iota // the caller holds the job: send it
	Settled                    // the job is final already (or reported): do nothing
	InFlight                   // another worker holds an unexpired claim
)

// Claim is the caller's hold on a job.
type Claim struct {
	State    ClaimState
	Token    string
	Attempt  int   // 1 for the first claim of the job
	Takeover bool  // the previous holder's lease ran out unreleased: it may have sent
	Existing Entry // when Settled or InFlight: the entry found
	// had lists the outcome fields an earlier attempt left on the entry,
	// which the next write must remove if it does not set them.
	had map[string]bool
}

// the condition of every write that starts work on a job: no entry yet, or
// one in progress whose claim is released or ran out.
const claimable = "attribute_not_exists(pk) OR (#s = :inprogress AND lease_until < :now)"

// Claim takes job id until the lease ends (one conditional write,
// whatever the outcome).
func (l *Ledger) Claim(ctx context.Context, jobID, uid string, until time.Time) (Claim, error) {
	now := l.Now()
	token := newToken()
	out, err := l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &l.table,
		Key:                 ledgerKey(jobID),
		ConditionExpression: aws.String(claimable),
		UpdateExpression: aws.String("SET #s = :inprogress, claim = :token, lease_until = :until, job_id = :id, uid = :uid, " +
			"updated_at = :at, created_at = if_not_exists(created_at, :at), #ttl = :ttl ADD attempts :one"),
		ExpressionAttributeNames: map[string]string{"#s": "status", "#ttl": "ttl"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":inprogress": str(string(InProgress)), ":now": num(now.UnixMilli()), ":token": str(token),
			":until": num(until.UnixMilli()), ":id": str(jobID), ":uid": str(uid), ":at": timeValue(now),
			":ttl": num(now.Add(l.Retention).Unix()), ":one": num(1),
		},
		ReturnValues:                        types.ReturnValueAllOld,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		e, derr := decodeEntry(ccf.Item)
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
	old, err := decodeEntry(out.Attributes)
	if err != nil {
		return Claim{}, err
	}
	had := map[string]bool{}
	for name := range out.Attributes {
		had[name] = true
	}
	return Claim{State: Claimed, Token: token, Attempt: old.Attempts + 1, Takeover: old.Status == InProgress && old.LeaseUntil > 0, had: had}, nil
}

func newToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func decodeEntry(item map[string]types.AttributeValue) (Entry, error) {
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
	MsgID   string
	MsgKey  string // "<appid>#<msgid>" for template messages
	ErrCode int
	RID     string
	Class   string
	Reason  string
}

// set extends a SET expression with r's fields and lists the fields to
// remove (those r leaves empty that the entry had). Every attribute goes through a name
// placeholder: "class" and "status" are DynamoDB reserved words.
func (r result) set(expr string, had map[string]bool, names map[string]string, values map[string]types.AttributeValue) (string, []string) {
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
	add("channel", str(string(r.Channel)), r.Channel != "")
	add("msgid", str(r.MsgID), r.MsgID != "")
	add("msg_key", str(r.MsgKey), r.MsgKey != "")
	add("errcode", num(int64(r.ErrCode)), r.ErrCode != 0)
	add("rid", str(r.RID), r.RID != "")
	add("class", str(r.Class), r.Class != "")
	add("reason", str(r.Reason), r.Reason != "")
	return expr, remove
}

// Settle records the final outcome of a claimed job (one conditional
// write). It fails with ErrClaimLost when the claim is no longer held.
func (l *Ledger) Settle(ctx context.Context, jobID string, c Claim, r result) error {
	now := l.Now()
	values := map[string]types.AttributeValue{
		":inprogress": str(string(InProgress)), ":token": str(c.Token), ":status": str(string(r.Status)),
		":at": timeValue(now), ":ttl": num(now.Add(l.Retention).Unix()),
	}
	names := map[string]string{"#s": "status", "#ttl": "ttl"}
	expr, remove := r.set("SET #s = :status, updated_at = :at, #ttl = :ttl", c.had, names, values)
	remove = append(remove, "claim", "lease_until")
	return l.conditional(ctx, jobID, expr+" REMOVE "+strings.Join(remove, ", "), "#s = :inprogress AND claim = :token", names, values)
}

// SettleSent records a claimed job SENT on channel; for a template
// message, appid and msgid are what its delivery report will carry.
func (l *Ledger) SettleSent(ctx context.Context, jobID string, c Claim, channel Channel, appid, msgid string) error {
	r := result{Status: Sent, Channel: channel, MsgID: msgid}
	if channel == Template {
		r.MsgKey = msgKey(appid, msgid)
	}
	return l.Settle(ctx, jobID, c, r)
}

// Release gives a claimed job back for a later retry, noting why (one
// conditional write): the next claim does not count as a takeover.
func (l *Ledger) Release(ctx context.Context, jobID string, c Claim, r result) error {
	now := l.Now()
	values := map[string]types.AttributeValue{
		":inprogress": str(string(InProgress)), ":token": str(c.Token), ":zero": num(0),
		":at": timeValue(now), ":ttl": num(now.Add(l.Retention).Unix()),
	}
	r.Status, r.MsgID, r.MsgKey = "", "", ""
	names := map[string]string{"#s": "status", "#ttl": "ttl"}
	expr, remove := r.set("SET lease_until = :zero, updated_at = :at, #ttl = :ttl", c.had, names, values)
	remove = append(remove, "claim")
	return l.conditional(ctx, jobID, expr+" REMOVE "+strings.Join(remove, ", "), "#s = :inprogress AND claim = :token", names, values)
}

func (l *Ledger) conditional(ctx context.Context, jobID, update, cond string, names map[string]string, values map[string]types.AttributeValue) error {
	_, err := l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &l.table,
		Key:                       ledgerKey(jobID),
		UpdateExpression:          &update,
		ConditionExpression:       &cond,
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return ErrClaimLost
	case err != nil:
		return fmt.Errorf("notify: ledger %s: %w", jobID, err)
	}
	return nil
}

// Record settles a job that was never claimed (invalid, expired, or nobody
// to send to), unless a worker holds it or it is settled already; then it
// returns that entry and changes nothing. One conditional write.
func (l *Ledger) Record(ctx context.Context, jobID, uid string, r result) (Entry, bool, error) {
	now := l.Now()
	e := Entry{JobID: jobID, Status: r.Status, UID: uid, Channel: r.Channel, ErrCode: r.ErrCode, RID: r.RID, Class: r.Class, Reason: r.Reason, CreatedAt: now, UpdatedAt: now}
	item, err := attributevalue.MarshalMap(e)
	if err != nil {
		return Entry{}, false, err
	}
	item["pk"] = ledgerKey(jobID)["pk"]
	item["ttl"] = num(now.Add(l.Retention).Unix())
	_, err = l.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           &l.table,
		Item:                                item,
		ConditionExpression:                 aws.String(claimable),
		ExpressionAttributeNames:            map[string]string{"#s": "status"},
		ExpressionAttributeValues:           map[string]types.AttributeValue{":inprogress": str(string(InProgress)), ":now": num(now.UnixMilli())},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		old, derr := decodeEntry(ccf.Item)
		return old, false, derr
	case err != nil:
		return Entry{}, false, fmt.Errorf("notify: record %s: %w", jobID, err)
	}
	return e, true, nil
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
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": str(key)},
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
	values := map[string]types.AttributeValue{
		":sent": str(string(Sent)), ":k": str(key), ":to": str(string(to)), ":report": str(status),
		":at": timeValue(now), ":ttl": num(now.Add(l.Retention).Unix()),
	}
	update := "SET #s = :to, report = :report, reported_at = :at, updated_at = :at, #ttl = :ttl"
	if to == Failed {
		update += ", reason = :reason, #c = :class"
		values[":reason"] = str("delivery report: " + status)
		values[":class"] = str("delivery")
	}
	names := map[string]string{"#s": "status", "#ttl": "ttl"}
	if to == Failed {
		names["#c"] = "class"
	}
	_, err = l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &l.table,
		Key:                       map[string]types.AttributeValue{"pk": out.Items[0]["pk"]},
		UpdateExpression:          &update,
		ConditionExpression:       aws.String("#s = :sent AND msg_key = :k"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return true, nil // reported already
	case err != nil:
		return true, fmt.Errorf("notify: report: %w", err)
	}
	return true, nil
}
