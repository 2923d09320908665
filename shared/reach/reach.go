// Package reach records what wxbridge learns about whether WeChat will let
// it reach a person on the channels that need the person's own leave: the
// subscribe consents they gave or withdrew (the official account's
// subscribe notifications and the mini program's subscribe messages, per
// template) and when they last interacted with an official account (the
// customer-service window: 48 hours after a message from the person, a
// minute after a menu click, a scan or a follow).
//
// The platform's consent events say accept or reject, never whether the
// template's consent is one-time or long-term: that is the template's
// kind, which the deployment names (LongTerm, WXB_LONG_TERM_TEMPLATES).
//
// What is not recorded is unknown, not refused: a person who accepted a
// template before wxbridge existed must still be tried. The store only
// lets the worker skip, without calling WeChat, a channel it knows cannot
// reach the person (Consent.Gone, State.WindowClosed).
//
// Pushes come twice and out of order, so every write is idempotent and
// none moves a time backwards: an interaction older than the recorded one
// changes nothing, a one-time acceptance is counted once per event, and
// an event older than the latest rejection (or WeChat's 43101) is spent.
package reach

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"wxbridge/shared/ddb"
)

// Prefix starts the key of every reach item: "REACH#<appid>#<openid>".
const Prefix = "REACH#"

// Window is how long after a message from the person an official account
// may send them customer-service messages (custom/send; 45015 after it).
const Window = 48 * time.Hour

// BriefWindow is how long after a menu click, a scan or a follow the
// account may send them (three) customer-service messages: since June 2021
// only a message from the person opens the 48-hour window.
const BriefWindow = time.Minute

// Key names one person in one app: an official account's or a mini
// program's appid and the person's openid there.
type Key struct{ AppID, OpenID string }

func (k Key) pk() string { return Prefix + k.AppID + "#" + k.OpenID }

// Consent is a person's consent to one subscribe template.
//
// As Consented's input it is one event at At: an acceptance (one-time, or
// LongTerm), a withdrawal (Rejected: the template turned off in the
// person's settings, refused, banned) or a declined popup (Declined: this
// request refused, earlier consents kept); Left is not read (a one-time
// acceptance adds one). As State's, it is what the events and the sends
// left: Left one-time consents not yet used, LongTerm, Rejected (the
// latest word was a withdrawal, or a decline with nothing left, and no
// acceptance came after it), and At, the time of the latest consent event
// recorded.
type Consent struct {
	TemplateID string
	LongTerm   bool
	Left       int // one-time consents left (MP and OA one-time)
	Rejected   bool
	Declined   bool // input only
	At         time.Time
}

// Gone reports whether the consent is known not to allow a send: rejected,
// or neither long-term nor with a one-time consent left.
func (c Consent) Gone() bool { return c.Rejected || (!c.LongTerm && c.Left <= 0) }

// State is what is recorded about one person in one app.
type State struct {
	// LastInteraction is the latest recorded message from the person to
	// the official account (it opens the 48-hour window); zero when none
	// is recorded.
	LastInteraction time.Time
	// LastBrief is the latest recorded menu click, scan or follow (it
	// opens the window for a minute); zero when none is recorded.
	LastBrief time.Time
	// Refused is when the latest customer-service message WeChat refused
	// (45015 window closed, 45047 the messages allowed used up) was
	// sent; zero when none is recorded. The interactions recorded before
	// it allow no more messages.
	Refused time.Time
	// Consents holds each template with a recorded consent event, by
	// template id.
	Consents map[string]Consent
	// Known is false when nothing at all is recorded.
	Known bool
}

// ConsentGone reports whether the person is known not to have consented
// to templateID: a recorded rejection, or recorded consents all used.
// A template with nothing recorded is unknown, so not gone.
func (st State) ConsentGone(templateID string) bool {
	c, ok := st.Consents[templateID]
	return ok && c.Gone()
}

// WindowOpen reports whether the customer-service window is known to be
// open at now: a message from the person within Window, or a menu click,
// scan or follow within BriefWindow, that WeChat has not refused a message
// since (Refused).
func (st State) WindowOpen(now time.Time) bool {
	return within(st.LastInteraction, now, Window) && st.LastInteraction.After(st.Refused) ||
		within(st.LastBrief, now, BriefWindow) && st.LastBrief.After(st.Refused)
}

// WindowSpent reports whether WeChat refused a customer-service message
// (45015, 45047) after every recorded interaction: none is allowed until
// the person interacts again, whatever the time.
func (st State) WindowSpent() bool {
	return !st.Refused.IsZero() && !st.LastInteraction.After(st.Refused) && !st.LastBrief.After(st.Refused)
}

// WindowClosed reports whether the customer-service window is known to be
// closed at now: the last recorded message is older than Window and no
// brief interaction holds it open. With no message recorded it is unknown
// (false): the caller decides from what else it knows (a follow older than
// Window, while wxbridge was receiving the account's pushes).
func (st State) WindowClosed(now time.Time) bool {
	return !st.LastInteraction.IsZero() && !st.WindowOpen(now)
}

func within(t, now time.Time, d time.Duration) bool { return !t.IsZero() && now.Sub(t) <= d }

// LongTerm is the set of template ids whose consents are long-term.
type LongTerm map[string]bool

// ParseLongTerm reads a comma-separated list of template ids (the value of
// WXB_LONG_TERM_TEMPLATES).
func ParseLongTerm(list string) LongTerm {
	out := LongTerm{}
	for id := range strings.SplitSeq(list, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out[id] = true
		}
	}
	return out
}

// Accepted is the consent event of an acceptance of templateID at at:
// long-term when the template is one of lt.
func (lt LongTerm) Accepted(templateID string, at time.Time) Consent {
	return Consent{TemplateID: templateID, LongTerm: lt[templateID], At: at}
}

// DB is the part of the DynamoDB API the store uses.
type DB interface {
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
}

// Store keeps one item per person and app in the wxbridge table:
//
//	pk            "REACH#<appid>#<openid>"
//	interacted    Unix ms of the latest recorded message from the person
//	brief         Unix ms of the latest recorded menu click, scan or follow
//	refused       Unix ms of the latest customer-service message WeChat
//	              refused (45015, 45047)
//	c:<id>:left   one-time consents left for template <id>
//	c:<id>:long   a long-term consent (BOOL)
//	c:<id>:rej    the latest word was a rejection (BOOL)
//	c:<id>:at     Unix ms of the latest consent event applied
//	c:<id>:reset  Unix ms of the latest rejection or 43101: acceptances
//	              older than it are spent
//	c:<id>:seen   Unix ms of each one-time acceptance counted (a number
//	              set): the same event twice counts once
//
// Each template's fields are top-level attributes so that a first write
// for a template needs no map to exist already.
type Store struct {
	db    DB
	table string
	// Now is the clock of Lost and of consents without a time; tests
	// replace it.
	Now func() time.Time
}

// New returns the store in table.
func New(db DB, table string) *Store { return &Store{db: db, table: table, Now: time.Now} }

// Interacted records a message the person sent the official account at
// at (it opens the 48-hour window), unless a later one is recorded.
func (s *Store) Interacted(ctx context.Context, k Key, at time.Time) error {
	return s.latest(ctx, k, "interacted", at)
}

// InteractedBriefly records a menu click, a scan or a follow at at (it
// opens the window for BriefWindow), unless a later one is recorded.
func (s *Store) InteractedBriefly(ctx context.Context, k Key, at time.Time) error {
	return s.latest(ctx, k, "brief", at)
}

// WindowRefused records WeChat's refusal (45015 or 45047) of a
// customer-service message sent at at: the interactions recorded before
// it allow no more (State.WindowSpent), until the person interacts again.
// Push times have whole seconds: an interaction pushed in the second of
// the refusal counts as before it (at worst a message is not tried until
// the person's next interaction).
func (s *Store) WindowRefused(ctx context.Context, k Key, at time.Time) error {
	return s.latest(ctx, k, "refused", at)
}

// latest sets the time attribute name to at unless it holds a later time.
func (s *Store) latest(ctx context.Context, k Key, name string, at time.Time) error {
	_, err := s.update(ctx, k, "SET #t = :at", "attribute_not_exists(#t) OR #t < :at",
		map[string]string{"#t": name}, ddb.Item{":at": ddb.Millis(at)})
	if err != nil && !isCondition(err) {
		return fmt.Errorf("reach: record %s: %w", name, err)
	}
	return nil
}

// Consented records consent events: an acceptance adds a one-time consent
// or makes it long-term, a rejection withdraws the template (until a newer
// acceptance), a declined popup refuses it only if nothing is left. Each
// event is applied once, and one older than what is recorded does not undo
// it: an event is its template and its time (At, to the millisecond; zero
// is now), so the same call made twice records it once. Several one-time
// acceptances of one template in one call are as many events, a
// millisecond apart.
func (s *Store) Consented(ctx context.Context, k Key, cs []Consent) error {
	now := s.Now()
	stamps := map[string]bool{}
	for _, c := range cs {
		if c.TemplateID == "" {
			continue
		}
		if c.At.IsZero() {
			c.At = now
		}
		if !c.Rejected && !c.Declined && !c.LongTerm {
			for stamps[c.TemplateID+"#"+strconv.FormatInt(c.At.UnixMilli(), 10)] {
				c.At = c.At.Add(time.Millisecond)
			}
			stamps[c.TemplateID+"#"+strconv.FormatInt(c.At.UnixMilli(), 10)] = true
		}
		var err error
		switch {
		case c.Rejected:
			err = s.rejected(ctx, k, c)
		case c.Declined:
			err = s.declined(ctx, k, c)
		case c.LongTerm:
			err = s.acceptedLongTerm(ctx, k, c)
		default:
			err = s.acceptedOnce(ctx, k, c)
		}
		if err != nil {
			return fmt.Errorf("reach: consent to %s: %w", c.TemplateID, err)
		}
	}
	return nil
}

// names are the placeholders of one template's attributes.
func names(templateID string) map[string]string {
	p := "c:" + templateID + ":"
	return map[string]string{"#left": p + "left", "#long": p + "long", "#rej": p + "rej", "#at": p + "at", "#reset": p + "reset", "#seen": p + "seen"}
}

// Conditions shared by the consent writes.
const (
	afterReset = "(attribute_not_exists(#reset) OR #reset < :at)"
	newest     = "(attribute_not_exists(#at) OR #at < :at)"
)

// rejected withdraws the template: no one-time consent left, no long-term
// one. A rejection older than the latest event recorded (an acceptance
// that came after it) changes nothing; one of the same second wins (push
// times have whole seconds, and a refusal reported in the second of the
// acceptance came after it).
func (s *Store) rejected(ctx context.Context, k Key, c Consent) error {
	_, err := s.update(ctx, k,
		"SET #rej = :true, #long = :false, #left = :zero, #reset = :at, #at = :at", "(attribute_not_exists(#at) OR #at <= :at)",
		names(c.TemplateID), ddb.Item{":at": ddb.Millis(c.At), ":true": ddb.Bool(true), ":false": ddb.Bool(false), ":zero": ddb.N(0)})
	if isCondition(err) {
		return nil
	}
	return err
}

// declined records a popup the person refused: it takes nothing away
// (earlier one-time consents stay theirs), but with nothing left, and
// nothing newer recorded, the template is known refused until the next
// acceptance.
func (s *Store) declined(ctx context.Context, k Key, c Consent) error {
	_, err := s.update(ctx, k,
		"SET #rej = :true, #left = :zero, #reset = :at, #at = :at",
		newest+" AND (attribute_not_exists(#left) OR #left <= :zero) AND (attribute_not_exists(#long) OR #long = :false)",
		names(c.TemplateID), ddb.Item{":at": ddb.Millis(c.At), ":true": ddb.Bool(true), ":false": ddb.Bool(false), ":zero": ddb.N(0)})
	if isCondition(err) {
		return nil
	}
	return err
}

// acceptedLongTerm makes the template's consent long-term, unless a
// rejection newer than the acceptance is recorded.
func (s *Store) acceptedLongTerm(ctx context.Context, k Key, c Consent) error {
	n, v := names(c.TemplateID), ddb.Item{":at": ddb.Millis(c.At), ":true": ddb.Bool(true), ":false": ddb.Bool(false)}
	old, err := s.update(ctx, k, "SET #long = :true, #rej = :false, #at = :at", afterReset+" AND "+newest, n, v)
	if !isCondition(err) {
		return err
	}
	if millis(old, n["#reset"]) >= c.At.UnixMilli() {
		return nil // withdrawn since
	}
	// Older than another event but newer than the latest rejection: it
	// still holds; the recorded time stays the latest.
	_, err = s.update(ctx, k, "SET #long = :true", afterReset, n, v)
	if isCondition(err) {
		return nil
	}
	return err
}

// acceptedOnce adds one one-time consent, once per event, unless a
// rejection (or a 43101) newer than the acceptance is recorded.
func (s *Store) acceptedOnce(ctx context.Context, k Key, c Consent) error {
	n := names(c.TemplateID)
	v := ddb.Item{":at": ddb.Millis(c.At), ":one": ddb.N(1), ":false": ddb.Bool(false),
		":stamp": &types.AttributeValueMemberNS{Value: []string{strconv.FormatInt(c.At.UnixMilli(), 10)}}}
	fresh := "NOT contains(#seen, :at) AND " + afterReset
	old, err := s.update(ctx, k, "SET #rej = :false, #at = :at ADD #left :one, #seen :stamp", fresh+" AND "+newest, n, v)
	if !isCondition(err) {
		return err
	}
	if seen(old, n["#seen"], c.At) || millis(old, n["#reset"]) >= c.At.UnixMilli() {
		return nil // counted already, or withdrawn since
	}
	// An acceptance that arrives after a later event: it counts, and the
	// recorded time stays the latest.
	_, err = s.update(ctx, k, "ADD #left :one, #seen :stamp", fresh, n, v)
	if isCondition(err) {
		return nil
	}
	return err
}

// Use records that a send spent one of the template's one-time consents.
// A long-term consent, or one with nothing recorded, is not spent.
func (s *Store) Use(ctx context.Context, k Key, templateID string) error {
	_, err := s.update(ctx, k, "SET #left = #left - :one", "#left > :zero AND (attribute_not_exists(#long) OR #long = :false)",
		names(templateID), ddb.Item{":one": ddb.N(1), ":zero": ddb.N(0), ":false": ddb.Bool(false)})
	if err != nil && !isCondition(err) {
		return fmt.Errorf("reach: use %s: %w", templateID, err)
	}
	return nil
}

// Lost records WeChat's word (43101) that the person has no consent left
// for the template: nothing left, not long-term, and acceptances of
// earlier seconds are spent. A rejection stays recorded.
//
// An acceptance of the answer's own second is kept: push times have
// whole seconds, so the person's answer to a popup shown while the send
// was refused carries that second, and must not be taken for one the
// 43101 spent (at worst the next send hears 43101 once more).
func (s *Store) Lost(ctx context.Context, k Key, templateID string) error {
	now := s.Now().Truncate(time.Second).Add(-time.Millisecond)
	_, err := s.update(ctx, k,
		"SET #left = :zero, #long = :false, #reset = :now, #at = if_not_exists(#at, :now)",
		"attribute_not_exists(#reset) OR #reset <= :now",
		names(templateID), ddb.Item{":zero": ddb.N(0), ":false": ddb.Bool(false), ":now": ddb.Millis(now)})
	if err != nil && !isCondition(err) {
		return fmt.Errorf("reach: lost %s: %w", templateID, err)
	}
	return nil
}

// maxBatch is BatchGetItem's limit of keys per call.
const maxBatch = 100

// Get returns what is recorded for each key: one BatchGetItem per 100
// keys (and again for any keys DynamoDB leaves unprocessed). Keys with
// nothing recorded have a State with Known false.
func (s *Store) Get(ctx context.Context, keys ...Key) (map[Key]State, error) {
	out := make(map[Key]State, len(keys))
	byPK := make(map[string]Key, len(keys))
	for _, k := range keys {
		out[k] = State{}
		byPK[k.pk()] = k
	}
	pending := make([]ddb.Item, 0, len(byPK))
	for pk := range byPK {
		pending = append(pending, ddb.Key(pk))
	}
	for len(pending) > 0 {
		n := min(len(pending), maxBatch)
		req := map[string]types.KeysAndAttributes{s.table: {Keys: pending[:n], ConsistentRead: aws.Bool(true)}}
		pending = pending[n:]
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if err := pause(ctx, attempt); err != nil {
					return nil, fmt.Errorf("reach: get: %w", err)
				}
			}
			res, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("reach: get: %w", err)
			}
			for _, it := range res.Responses[s.table] {
				if k, ok := byPK[ddb.String(it, "pk")]; ok {
					out[k] = decode(it)
				}
			}
			req = res.UnprocessedKeys
			if attempt == 8 && len(req) > 0 {
				return nil, fmt.Errorf("reach: get: keys left unprocessed after %d tries", attempt+1)
			}
		}
	}
	return out, nil
}

// pause waits before asking again for unprocessed keys (throttling).
func pause(ctx context.Context, attempt int) error {
	t := time.NewTimer(time.Duration(attempt*attempt) * 20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// decode reads a reach item.
func decode(it ddb.Item) State {
	st := State{Known: true, Consents: map[string]Consent{}}
	if ms := millis(it, "interacted"); ms > 0 {
		st.LastInteraction = time.UnixMilli(ms)
	}
	if ms := millis(it, "brief"); ms > 0 {
		st.LastBrief = time.UnixMilli(ms)
	}
	if ms := millis(it, "refused"); ms > 0 {
		st.Refused = time.UnixMilli(ms)
	}
	for name, v := range it {
		rest, ok := strings.CutPrefix(name, "c:")
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			continue
		}
		id, field := rest[:i], rest[i+1:]
		c := st.Consents[id]
		c.TemplateID = id
		switch field {
		case "left":
			c.Left = int(ddb.Int(it, name))
		case "long":
			b, _ := v.(*types.AttributeValueMemberBOOL)
			c.LongTerm = b != nil && b.Value
		case "rej":
			b, _ := v.(*types.AttributeValueMemberBOOL)
			c.Rejected = b != nil && b.Value
		case "at":
			c.At = time.UnixMilli(ddb.Int(it, name))
		}
		st.Consents[id] = c
	}
	return st
}

// update applies one conditional update to k's item and returns, when the
// condition failed, the item as it was (isCondition(err) is then true).
func (s *Store) update(ctx context.Context, k Key, update, cond string, n map[string]string, v ddb.Item) (ddb.Item, error) {
	// DynamoDB refuses placeholders an expression does not use: keep the
	// ones these two do.
	used := map[string]bool{}
	for _, t := range placeholder.FindAllString(update+" "+cond, -1) {
		used[t] = true
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                           &s.table,
		Key:                                 ddb.Key(k.pk()),
		UpdateExpression:                    &update,
		ConditionExpression:                 &cond,
		ExpressionAttributeValues:           ddb.Item{},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	for name, v := range v {
		if used[name] {
			in.ExpressionAttributeValues[name] = v
		}
	}
	for p, name := range n {
		if used[p] {
			if in.ExpressionAttributeNames == nil {
				in.ExpressionAttributeNames = map[string]string{}
			}
			in.ExpressionAttributeNames[p] = name
		}
	}
	_, err := s.db.UpdateItem(ctx, in)
	if old, ok := ddb.ConditionFailed(err); ok {
		return old, err
	}
	return nil, err
}

func isCondition(err error) bool {
	_, ok := ddb.ConditionFailed(err)
	return ok
}

// placeholder matches the name and value placeholders of an expression.
var placeholder = regexp.MustCompile(`[#:][A-Za-z0-9_]+`)

func millis(it ddb.Item, name string) int64 { return ddb.Int(it, name) }

// seen reports whether the number set name of it holds at's Unix ms.
func seen(it ddb.Item, name string, at time.Time) bool {
	ns, ok := it[name].(*types.AttributeValueMemberNS)
	if !ok {
		return false
	}
	want := strconv.FormatInt(at.UnixMilli(), 10)
	for _, v := range ns.Value {
		if v == want {
			return true
		}
	}
	return false
}
