package binding

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/ddb"
)

// ErrSpent reports a token that has already bound another WeChat user.
var ErrSpent = errors.New("binding: token already bound another WeChat user")

// DB is the part of the DynamoDB API Uses needs.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Uses remembers which WeChat user each binding token bound, as items
// "BIND#<hash of the token's mac>" in the table, kept until the token
// expires (TTL): after that the token is refused by Check anyway.
type Uses struct {
	db    DB
	table string
	Now   func() time.Time
}

// NewUses returns the token uses kept in table.
func NewUses(db DB, table string) *Uses {
	return &Uses{db: db, table: table, Now: time.Now}
}

// Spend records that t binds holder, a name of the WeChat user that stays
// the same wherever they present the token ("UNION#<unionid>" when the
// unionid is known, else the app identity, such as "MP#<appid>#<openid>").
// It costs one conditional write. The same holder may present the token
// again (a retried login, a second scan): first is then false. Anyone else
// gets ErrSpent.
func (u *Uses) Spend(ctx context.Context, t Token, holder string) (first bool, err error) {
	if t.mac == "" || holder == "" {
		return false, fmt.Errorf("binding: spend: %w", ErrInvalid)
	}
	item := u.key(t)
	item["holder"] = ddb.S(holder)
	item["external_id"] = ddb.S(t.ExternalID)
	item["spent_at"] = ddb.Millis(u.Now())
	item["ttl"] = ddb.TTL(t.Expires)
	out, err := u.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &u.table, Item: item,
		ConditionExpression:       ptr("attribute_not_exists(pk) OR holder = :holder"),
		ExpressionAttributeValues: ddb.Item{":holder": ddb.S(holder)},
		ReturnValues:              "ALL_OLD",
	})
	if _, ok := ddb.ConditionFailed(err); ok {
		return false, ErrSpent
	}
	if err != nil {
		return false, fmt.Errorf("binding: spend: %w", err)
	}
	return len(out.Attributes) == 0, nil
}

// Unspend gives back a token that holder spent first (Spend answered first)
// for a binding that was then refused, so that nothing stays written for a
// binding that was not made. Never call it after a failure that may have
// bound (a timeout): the token would bind a second user.
func (u *Uses) Unspend(ctx context.Context, t Token, holder string) error {
	_, err := u.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: &u.table, Key: u.key(t),
		ConditionExpression:       ptr("holder = :holder"),
		ExpressionAttributeValues: ddb.Item{":holder": ddb.S(holder)},
	})
	if _, ok := ddb.ConditionFailed(err); ok || err == nil {
		return nil
	}
	return fmt.Errorf("binding: unspend: %w", err)
}

func (u *Uses) key(t Token) ddb.Item {
	sum := sha256.Sum256([]byte(t.mac))
	return ddb.Key("BIND#" + hex.EncodeToString(sum[:16]))
}

func ptr(s string) *string { return &s }
