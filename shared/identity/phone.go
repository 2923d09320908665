package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"wxbridge/shared/backoff"
	"wxbridge/shared/ddb"
	"wxbridge/shared/wechat"
)

// Phone is a number the person verified in a mini program
// (getuserphonenumber). It is a lookup, never a merge key: carriers
// reassign numbers, and people share them, so a number belongs to whoever
// verified it last. It is personal data: String and LogValue mask it.
type Phone struct {
	Number     string    `dynamodbav:"number"` // E.164: "+8613800000000"
	VerifiedAt time.Time `dynamodbav:"verified_at"`
	AppID      string    `dynamodbav:"appid"` // the mini program it was verified in
}

// String masks the number, so printing a Person leaks none.
func (p Phone) String() string { return "identity.Phone{" + wechat.MaskPhone(p.Number) + "}" }

// GoString is String, for %#v.
func (p Phone) GoString() string { return p.String() }

// LogValue masks the number in log lines.
func (p Phone) LogValue() slog.Value { return slog.StringValue(wechat.MaskPhone(p.Number)) }

// validNumber checks an E.164 number's shape: "+" and 6 to 15 digits. The
// error never carries the number.
func validNumber(n string) error {
	if len(n) < 7 || len(n) > 16 || n[0] != '+' {
		return fmt.Errorf("%w: phone number is not + and 6 to 15 digits", ErrInvalid)
	}
	for _, r := range n[1:] {
		if r < '0' || r > '9' {
			return fmt.Errorf("%w: phone number is not + and 6 to 15 digits", ErrInvalid)
		}
	}
	return nil
}

// phoneChange is the decision for one verification.
type phoneChange struct {
	verifier Person  // the verifier's new state; Version is the one read
	loser    *Person // the previous holder without the number; Version as read
	write    bool
}

// decidePhone computes what verifying number in appid at at changes. The
// number moves to the most recent verifier: a verification older than the
// marker's changes nothing, whoever holds the number. The previous holder
// (resolved through merges, nil when nobody) loses it only if it is still
// theirs: their own later verification of another number, or a merge that
// kept another, already took it away. A verification older than the
// verifier's own latest leaves the verifier's number as it is.
func decidePhone(verifier Person, marker *phoneMarker, holder *Person, appid, number string, at, now time.Time) phoneChange {
	c := phoneChange{verifier: verifier}
	if marker != nil && marker.VerifiedAt.After(at) {
		return c
	}
	holds := func(p *Person) bool { return p != nil && p.Phone != nil && p.Phone.Number == number }
	self := holder != nil && holder.UID == verifier.UID
	if self && holds(&verifier) && !at.After(verifier.Phone.VerifiedAt) {
		return c
	}
	c.write = true
	c.verifier = clonePerson(verifier)
	// The verifier's own later verification of another number landed
	// first (two taps, the first request slower): as if this one had
	// landed in order, the verifier keeps the later number, and the
	// previous holder has lost this one all the same.
	if verifier.Phone == nil || !verifier.Phone.VerifiedAt.After(at) {
		c.verifier.Phone = &Phone{Number: number, VerifiedAt: at, AppID: appid}
	}
	c.verifier.UpdatedAt = now
	if !self && holds(holder) {
		loser := clonePerson(*holder)
		loser.Phone = nil
		loser.UpdatedAt = now
		c.loser = &loser
	}
	return c
}

// phoneMarker is the item that points a number to the person who verified
// it last, and when. It is a hint: the person's Phone is the truth. A merge
// does not move it: the uid may be merged away, and resolves as ByUID
// resolves it.
type phoneMarker struct {
	PK         string    `dynamodbav:"pk"`
	UID        string    `dynamodbav:"uid"`
	VerifiedAt time.Time `dynamodbav:"verified_at"`
}

func phonePK(number string) string { return "PHONE#" + number }

// VerifyPhone records that the person uid verified number (E.164) in the
// mini program appid at at (zero: now), and returns the person. The number
// moves to the most recent verifier: whoever held it before loses it, and
// a verification older than the number's latest one changes nothing (the
// person is returned as stored); one older than the verifier's own latest
// leaves the verifier's number as it is. It never merges people nor touches their
// identities. uid may be one merged away. ErrNotFound: no such person;
// ErrInvalid: not an E.164 number.
func (st *Store) VerifyPhone(ctx context.Context, uid, appid, number string, at time.Time) (Person, error) {
	if err := validNumber(number); err != nil {
		return Person{}, err
	}
	if at.IsZero() {
		at = st.Now()
	}
	for attempt := 1; ; attempt++ {
		p, err := st.verifyPhone(ctx, uid, appid, number, at)
		if !errors.Is(err, errRace) {
			return p, err
		}
		if attempt >= st.Attempts {
			return Person{}, ErrContention
		}
		if err := backoff.Sleep(ctx, backoff.Full(backoff.Exp(5*time.Millisecond, 400*time.Millisecond, attempt))+time.Millisecond); err != nil {
			return Person{}, err
		}
	}
}

func (st *Store) verifyPhone(ctx context.Context, uid, appid, number string, at time.Time) (Person, error) {
	verifier, err := st.ByUID(ctx, uid)
	if err != nil {
		return Person{}, err
	}
	marker, raw, err := st.phoneMarker(ctx, number)
	if err != nil {
		return Person{}, err
	}
	var holder *Person
	if marker != nil {
		h, err := st.ByUID(ctx, marker.UID)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return Person{}, err
		default:
			holder = &h
		}
	}
	c := decidePhone(verifier, marker, holder, appid, number, at, st.Now())
	if !c.write {
		return verifier, nil
	}
	ops, err := phoneOps(st.table, c, number, at, raw)
	if err != nil {
		return Person{}, err
	}
	if err := st.commit(ctx, ops); err != nil {
		return Person{}, err
	}
	if c.loser != nil {
		st.Metrics.Count("PhoneMoves")
	}
	return bumped(c.verifier), nil
}

// phoneOps is the one transaction that applies c: the marker, as read
// (raw; nil when absent), now pointing to the verifier, and each person
// changed, conditional on the version read.
func phoneOps(table string, c phoneChange, number string, at time.Time, raw ddb.Item) ([]types.TransactWriteItem, error) {
	item, err := attributevalue.MarshalMap(phoneMarker{PK: phonePK(number), UID: c.verifier.UID, VerifiedAt: at})
	if err != nil {
		return nil, err
	}
	put := &types.Put{TableName: &table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}
	if raw != nil {
		// Exactly the marker read: a verification that moved it since
		// may have given the number to someone this one did not strip.
		put.ConditionExpression = aws.String("uid = :uid AND verified_at = :at")
		put.ExpressionAttributeValues = ddb.Item{":uid": raw["uid"], ":at": raw["verified_at"]}
	}
	ops := []types.TransactWriteItem{{Put: put}}
	for _, p := range []*Person{&c.verifier, c.loser} {
		if p == nil {
			continue
		}
		item, err := attributevalue.MarshalMap(personItem{PK: personPK(p.UID), Person: bumped(*p)})
		if err != nil {
			return nil, err
		}
		put := &types.Put{TableName: &table, Item: item}
		versionIs(put, p.Version)
		ops = append(ops, types.TransactWriteItem{Put: put})
	}
	return ops, nil
}

// phoneMarker reads number's marker: nil when nobody verified it. raw is
// the item as stored, for a write conditional on it.
func (st *Store) phoneMarker(ctx context.Context, number string) (*phoneMarker, ddb.Item, error) {
	items, err := st.batchGet(ctx, []string{phonePK(number)})
	if err != nil || len(items) == 0 {
		return nil, nil, err
	}
	var m phoneMarker
	if err := attributevalue.UnmarshalMap(items[0], &m); err != nil {
		return nil, nil, fmt.Errorf("identity: phone marker: %w", err)
	}
	return &m, items[0], nil
}

// ByPhone returns the person holding number (E.164): the one who verified
// it last, unless a merge since kept another number of theirs. A marker
// read and a person read; ErrNotFound when nobody holds it.
func (st *Store) ByPhone(ctx context.Context, number string) (Person, error) {
	if err := validNumber(number); err != nil {
		return Person{}, err
	}
	var last *phoneMarker
	for attempt := 0; attempt < 3; attempt++ {
		m, _, err := st.phoneMarker(ctx, number)
		if err != nil {
			return Person{}, err
		}
		if m == nil || last != nil && m.UID == last.UID && m.VerifiedAt.Equal(last.VerifiedAt) {
			// Nobody, or a stale marker read twice: not a number that
			// moved between our reads.
			return Person{}, ErrNotFound
		}
		p, err := st.ByUID(ctx, m.UID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Person{}, err
		}
		if err == nil && p.Phone != nil && p.Phone.Number == number {
			return p, nil
		}
		last = m
	}
	return Person{}, ErrContention
}
