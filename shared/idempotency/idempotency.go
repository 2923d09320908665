// Package idempotency makes "do this once" explicit: a caller claims a key
// with one conditional write, does the work, and marks it done; a retry of
// the same key finds it done (or still in flight) and does nothing. Claims
// carry a lease, so work whose worker died can be claimed again once the
// lease runs out, and every record expires by TTL.
package idempotency

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DB is the part of the DynamoDB API the store uses.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// State is what a claim found.
type State int

// Claim outcomes.
const (
	Claimed  State = iota // the caller owns the key now: do the work
	Done                  // the work was done (or durably handed on) already
	InFlight              // someone else holds an unexpired claim
)

func (s State) String() string {
	return [...]string{"claimed", "done", "in_flight"}[s]
}

// Store keeps claims in a DynamoDB table, as items "IDEM#<scope>#<key>".
type Store struct {
	db    DB
	table string
	scope string
	// Retention is how long a record is kept (TTL) after it is written.
	Retention time.Duration
	Now       func() time.Time
}

// NewStore returns a store for one scope (for example "push").
func NewStore(db DB, table, scope string) *Store {
	return &Store{db: db, table: table, scope: scope, Retention: 24 * time.Hour, Now: time.Now}
}

func (s *Store) key(k string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "IDEM#" + s.scope + "#" + k}}
}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// Claim takes key for lease. It costs one conditional write whatever the
// outcome: a failed condition returns the existing record, which tells a
// finished key from one in flight.
func (s *Store) Claim(ctx context.Context, key string, lease time.Duration) (State, error) {
	now := s.Now()
	item := s.key(key)
	item["status"] = &types.AttributeValueMemberS{Value: "claimed"}
	item["lease_until"] = num(now.Add(lease).UnixMilli())
	item["ttl"] = num(now.Add(s.Retention).Unix())
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &s.table,
		Item:      item,
		// Free, or claimed by someone whose lease ran out.
		ConditionExpression:                 aws.String("attribute_not_exists(pk) OR (#s = :claimed AND lease_until < :now)"),
		ExpressionAttributeNames:            map[string]string{"#s": "status"},
		ExpressionAttributeValues:           map[string]types.AttributeValue{":claimed": &types.AttributeValueMemberS{Value: "claimed"}, ":now": num(now.UnixMilli())},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return Claimed, nil
	case errors.As(err, &ccf):
		if st, ok := ccf.Item["status"].(*types.AttributeValueMemberS); ok && st.Value == "claimed" {
			return InFlight, nil
		}
		return Done, nil
	}
	return 0, fmt.Errorf("idempotency: claim: %w", err)
}

// Complete marks key done, with a note of how (for example "handled" or
// "queued"), so that later claims find it done.
func (s *Store) Complete(ctx context.Context, key, how string) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       s.key(key),
		UpdateExpression:          aws.String("SET #s = :done, how = :how, #t = :ttl REMOVE lease_until"),
		ExpressionAttributeNames:  map[string]string{"#s": "status", "#t": "ttl"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":done": &types.AttributeValueMemberS{Value: "done"}, ":how": &types.AttributeValueMemberS{Value: how}, ":ttl": num(s.Now().Add(s.Retention).Unix())},
	})
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	return nil
}

// Release gives up a claim whose work neither happened nor was handed on,
// so that a retry can claim it at once.
func (s *Store) Release(ctx context.Context, key string) error {
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 &s.table,
		Key:                       s.key(key),
		ConditionExpression:       aws.String("#s = :claimed"),
		ExpressionAttributeNames:  map[string]string{"#s": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":claimed": &types.AttributeValueMemberS{Value: "claimed"}},
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	return nil
}
