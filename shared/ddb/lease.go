package ddb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// Attributes every leased item carries.
const (
	LeaseOwner = "lease_owner" // who holds the lease (Lease.Owner)
	LeaseUntil = "lease_until" // when it runs out, Unix milliseconds
)

// LeaseAPI is the part of the DynamoDB API leases use.
type LeaseAPI interface {
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// ErrHeld reports a lease that someone else holds, or an item that is no
// longer free to lease (Take's While did not hold).
var ErrHeld = errors.New("ddb: held by another owner")

// Take asks for a lease on one item.
type Take struct {
	Table string
	Key   Item
	// Owner names the holder: Renew and Release check it. Empty: a random
	// one is made.
	Owner string
	Until time.Time
	Now   time.Time
	// While, if set, is a condition an item must also meet to be leased
	// (for example "#s = :inprogress": a job not settled yet). It is not
	// asked of an item that does not exist yet.
	While string
	// Set adds clauses to the update's SET (for example the item's status
	// and TTL); Add, clauses to an ADD (for example "attempts :one").
	Set, Add string
	Names    map[string]string
	Values   Item
}

// Lease is a hold on one item, until Until.
type Lease struct {
	Table string
	Key   Item
	Owner string
	Until time.Time
	// Before is the item as it was before the lease was taken (nil when
	// it did not exist, or when BeforeUnknown): a lease over one that ran
	// out is a takeover.
	Before Item
	// BeforeUnknown reports a take whose answer was lost after DynamoDB
	// had committed it (a 500 or a timeout, which AWS documents may have
	// succeeded): the SDK's retry of the same request found the item held
	// by this very take. The lease is ours, but the item as it was before
	// went with the lost answer. A caller that reads Before must then
	// assume the worst of what it may have been; Taken returns the item as
	// the take left it (its current item) to help.
	BeforeUnknown bool
}

// Taken asks for t's lease with one conditional update: the item is free
// when it does not exist, or when its lease has run out (or it never had
// one) and t.While holds. When it is not free, Taken returns ErrHeld and
// the item as it is, which tells who holds it and until when.
//
// An item held by this very take (t's owner, until t.Until) is a take
// that DynamoDB committed while its answer was lost and the request was
// retried: Taken returns the lease, with BeforeUnknown, and the item as
// it is now.
func Taken(ctx context.Context, db LeaseAPI, t Take) (*Lease, Item, error) {
	owner := t.Owner
	if owner == "" {
		owner = NewOwner()
	}
	names := map[string]string{"#lo": LeaseOwner, "#lu": LeaseUntil}
	maps.Copy(names, t.Names)
	values := Item{":lease_owner": S(owner), ":lease_until": Millis(t.Until), ":lease_now": Millis(t.Now)}
	maps.Copy(values, t.Values)
	free := "(attribute_not_exists(#lu) OR #lu < :lease_now)"
	if t.While != "" {
		free = "(" + free + " AND (" + t.While + "))"
	}
	update := "SET #lo = :lease_owner, #lu = :lease_until"
	if t.Set != "" {
		update += ", " + t.Set
	}
	if t.Add != "" {
		update += " ADD " + t.Add
	}
	out, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           &t.Table,
		Key:                                 t.Key,
		ConditionExpression:                 ptr("attribute_not_exists(pk) OR " + free),
		UpdateExpression:                    &update,
		ExpressionAttributeNames:            names,
		ExpressionAttributeValues:           values,
		ReturnValues:                        "ALL_OLD",
		ReturnValuesOnConditionCheckFailure: "ALL_OLD",
	})
	if cur, ok := ConditionFailed(err); ok {
		if String(cur, LeaseOwner) == owner && Int(cur, LeaseUntil) == t.Until.UnixMilli() {
			return &Lease{Table: t.Table, Key: t.Key, Owner: owner, Until: t.Until, BeforeUnknown: true}, cur, nil
		}
		return nil, cur, ErrHeld
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ddb: take lease: %w", err)
	}
	var before Item
	if len(out.Attributes) > 0 {
		before = out.Attributes
	}
	return &Lease{Table: t.Table, Key: t.Key, Owner: owner, Until: t.Until, Before: before}, nil, nil
}

// Takeover reports whether the lease was taken over from a holder whose
// lease had run out (the holder may have died halfway through its work),
// or may have been (BeforeUnknown).
func (l *Lease) Takeover() bool { return l.BeforeUnknown || Int(l.Before, LeaseUntil) > 0 }

// End is an update made by the holder as it lets go of the lease: it
// removes the lease attributes, so the item is free (unless While-style
// conditions of later Takes say otherwise), and applies Set and Remove.
type End struct {
	Set    string // SET clauses, such as "#s = :done"
	Remove string // further REMOVE clauses
	Names  map[string]string
	Values Item
	// Delete deletes the item instead (Set and Remove are then ignored).
	Delete bool
}

// LeaseDeleteAPI is LeaseAPI with DeleteItem, for End.Delete.
type LeaseDeleteAPI interface {
	LeaseAPI
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// ErrLost reports a lease that is no longer ours: it ran out and another
// owner took the item, or the item was settled by someone else.
var ErrLost = errors.New("ddb: lease lost")

// Release lets go of the lease with one update (or delete) conditioned on
// still owning it; ErrLost if we do not.
func (l *Lease) Release(ctx context.Context, db LeaseDeleteAPI, e End) error {
	names := map[string]string{"#lo": LeaseOwner, "#lu": LeaseUntil}
	maps.Copy(names, e.Names)
	values := Item{":lease_owner": S(l.Owner)}
	cond := "#lo = :lease_owner"
	var err error
	if e.Delete {
		_, err = db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName: &l.Table, Key: l.Key, ConditionExpression: &cond,
			ExpressionAttributeNames: map[string]string{"#lo": LeaseOwner}, ExpressionAttributeValues: values,
		})
	} else {
		maps.Copy(values, e.Values)
		var b strings.Builder
		if e.Set != "" {
			b.WriteString("SET " + e.Set + " ")
		}
		b.WriteString("REMOVE #lo, #lu")
		if e.Remove != "" {
			b.WriteString(", " + e.Remove)
		}
		update := b.String()
		_, err = db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: &l.Table, Key: l.Key, ConditionExpression: &cond, UpdateExpression: &update,
			ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		})
	}
	if _, ok := ConditionFailed(err); ok {
		return ErrLost
	}
	if err != nil {
		return fmt.Errorf("ddb: release lease: %w", err)
	}
	return nil
}

// NewOwner is a random owner name.
func NewOwner() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func ptr(s string) *string { return &s }
