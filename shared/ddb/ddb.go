// Package ddb is wxbridge's small DynamoDB toolkit: attribute values, the
// key of the one table, telling a lost race from a failure, and leases (a
// time-bounded, exclusive hold on one item).
package ddb

import (
	"errors"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Item is one DynamoDB item, or a key, or expression values.
type Item = map[string]types.AttributeValue

// Key is the table's key for partition key pk (the table has no sort key).
func Key(pk string) Item { return Item{"pk": S(pk)} }

// S is a string attribute.
func S(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// N is a number attribute.
func N(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// Bool is a boolean attribute.
func Bool(b bool) types.AttributeValue { return &types.AttributeValueMemberBOOL{Value: b} }

// Millis is t as Unix milliseconds, the table's unit for lease deadlines.
func Millis(t time.Time) types.AttributeValue { return N(t.UnixMilli()) }

// TTL is t as Unix seconds, the unit of the table's TTL attribute.
func TTL(t time.Time) types.AttributeValue { return N(t.Unix()) }

// String reads a string attribute; "" when absent or of another type.
func String(it Item, name string) string {
	if v, ok := it[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// Int reads a number attribute; 0 when absent, of another type or not an
// integer.
func Int(it Item, name string) int64 {
	if v, ok := it[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

// ConditionFailed reports whether err is a single write whose condition
// did not hold, and returns the item as it was when the write asked for it
// (ReturnValuesOnConditionCheckFailure ALL_OLD); nil otherwise.
func ConditionFailed(err error) (Item, bool) {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return ccf.Item, true
	}
	return nil, false
}

// LostRace reports whether err means another writer got there first: a
// condition that no longer held (ConditionalCheckFailed), a single-item
// write refused because a transaction was writing the item at that moment
// (TransactionConflictException), or a transaction cancelled because one of
// its conditions failed or it collided with another transaction. The caller
// re-reads and decides again; any other error is a failure.
func LostRace(err error) bool {
	if _, ok := ConditionFailed(err); ok {
		return true
	}
	var conflict *types.TransactionConflictException
	if errors.As(err, &conflict) {
		return true
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		for _, r := range tce.CancellationReasons {
			if c := aws.ToString(r.Code); c == "ConditionalCheckFailed" || c == "TransactionConflict" {
				return true
			}
		}
	}
	return false
}
