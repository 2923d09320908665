package handler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Table is the DynamoDB calls of the lease and the force budget.
type Table interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// The force refresh's limits (getStableAccessToken: "强制刷新模式每天限用20次且需间隔30秒"),
// counted per platform day, which starts at midnight Beijing time.
const (
	forcePerDay  = 20
	forceSpacing = 30 * time.Second
)

var beijing = time.FixedZone("CST", 8*60*60)

func platformDay(t time.Time) string { return t.In(beijing).Format(time.DateOnly) }

const (
	// leaseTTL bounds how long a crashed run can block the others. It is
	// longer than a run holds the lease (a secret read, one platform call
	// of at most 5 s, a secret write) and than the function's timeout.
	leaseTTL = 2 * time.Minute
	// leaseWait is how long a forced-refresh request waits for the lease;
	// the functions that asked wait about as long for the new token.
	leaseWait = 10 * time.Second
	// recordTTL keeps ledger items around long enough to be read, then
	// lets DynamoDB's TTL remove them.
	recordTTL = 48 * time.Hour
	// budgetAttempts bounds the optimistic retries of the budget update.
	budgetAttempts = 5
)

// ledger is the refresher's state in the table: per app, a lease item
// ("TOKENLEASE#<appid>") that overlapping runs take before reading and
// refreshing a token, and the force budget ("TOKENFORCE#<appid>").
type ledger struct {
	db    Table
	table string
	now   func() time.Time
}

type lease struct {
	pk    string
	owner string
}

func leasePK(appid string) string  { return "TOKENLEASE#" + appid }
func budgetPK(appid string) string { return "TOKENFORCE#" + appid }

func key(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}}
}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

// acquire takes appid's lease with a conditional put that succeeds only if
// nobody holds an unexpired one. It returns nil, nil when the lease is
// held; with wait it retries for up to leaseWait first.
func (l *ledger) acquire(ctx context.Context, appid string, wait bool) (*lease, error) {
	b := make([]byte, 8)
	rand.Read(b)
	ls := &lease{pk: leasePK(appid), owner: hex.EncodeToString(b)}
	deadline := time.Now().Add(leaseWait)
	for pause := 25 * time.Millisecond; ; pause = min(2*pause, 250*time.Millisecond) {
		now := l.now()
		_, err := l.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(l.table),
			Item: map[string]types.AttributeValue{
				"pk":    &types.AttributeValueMemberS{Value: ls.pk},
				"owner": &types.AttributeValueMemberS{Value: ls.owner},
				"until": num(now.Add(leaseTTL).UnixMilli()),
				"ttl":   num(now.Add(recordTTL).Unix()),
			},
			ConditionExpression:       aws.String("attribute_not_exists(pk) OR #until < :now"),
			ExpressionAttributeNames:  map[string]string{"#until": "until"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(now.UnixMilli())},
		})
		switch {
		case err == nil:
			return ls, nil
		case !isConditionFailed(err):
			return nil, err
		case !wait || time.Now().Add(pause).After(deadline):
			return nil, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// release gives the lease back if it is still ours. A failure only delays
// the next run until the lease expires, so it is not reported.
func (l *ledger) release(ctx context.Context, ls *lease) {
	l.db.DeleteItem(context.WithoutCancel(ctx), &dynamodb.DeleteItemInput{
		TableName:                 aws.String(l.table),
		Key:                       key(ls.pk),
		ConditionExpression:       aws.String("#owner = :owner"),
		ExpressionAttributeNames:  map[string]string{"#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":owner": &types.AttributeValueMemberS{Value: ls.owner}},
	})
}

// forceBudget is one app's use of forced refreshes.
type forceBudget struct {
	PK      string `dynamodbav:"pk"`
	Day     string `dynamodbav:"day"`     // platform day of Count
	Count   int    `dynamodbav:"count"`   // forced refreshes that day
	LastMS  int64  `dynamodbav:"last_ms"` // the latest one, Unix milliseconds
	Version int64  `dynamodbav:"version"` // for the optimistic update
	TTL     int64  `dynamodbav:"ttl"`
}

// budgetError is a forced refresh the budget does not allow.
type budgetError struct {
	kind string // "daily" or "spacing"
	msg  string
}

func (e *budgetError) Error() string { return e.msg }

// allow applies the platform's limits to a forced refresh at now.
func (b forceBudget) allow(now time.Time) error {
	if b.Day == platformDay(now) && b.Count >= forcePerDay {
		return &budgetError{kind: "daily", msg: fmt.Sprintf("%d forced refreshes today (platform day %s), the daily limit", b.Count, b.Day)}
	}
	if b.LastMS != 0 {
		if since := now.Sub(time.UnixMilli(b.LastMS)); since < forceSpacing {
			return &budgetError{kind: "spacing", msg: fmt.Sprintf("the previous forced refresh was %s ago; they must be %s apart", since.Round(time.Millisecond), forceSpacing)}
		}
	}
	return nil
}

// spend returns the budget after a forced refresh at now.
func (b forceBudget) spend(now time.Time) forceBudget {
	if day := platformDay(now); b.Day != day {
		b.Day, b.Count = day, 0
	}
	b.Count++
	b.LastMS = now.UnixMilli()
	b.Version++
	b.TTL = now.Add(recordTTL).Unix()
	return b
}

// spendForce takes one forced refresh from appid's budget before the call,
// so that concurrent runs cannot both spend the last one: read, apply the
// rule, write conditionally on the version read, retry on a lost race. It
// returns a *budgetError when the budget says no.
func (l *ledger) spendForce(ctx context.Context, appid string) error {
	pk := budgetPK(appid)
	for i := 0; i < budgetAttempts; i++ {
		out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(l.table), Key: key(pk), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return err
		}
		b := forceBudget{PK: pk}
		exists := out.Item != nil
		if exists {
			if err := attributevalue.UnmarshalMap(out.Item, &b); err != nil {
				return fmt.Errorf("force budget item: %w", err)
			}
		}
		now := l.now()
		if err := b.allow(now); err != nil {
			return err
		}
		next := b.spend(now)
		item, err := attributevalue.MarshalMap(next)
		if err != nil {
			return err
		}
		in := &dynamodb.PutItemInput{TableName: aws.String(l.table), Item: item}
		if exists {
			in.ConditionExpression = aws.String("#v = :v")
			in.ExpressionAttributeNames = map[string]string{"#v": "version"}
			in.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(b.Version)}
		} else {
			in.ConditionExpression = aws.String("attribute_not_exists(pk)")
		}
		_, err = l.db.PutItem(ctx, in)
		if err == nil {
			return nil
		}
		if !isConditionFailed(err) {
			return err
		}
	}
	return errors.New("force budget: too many concurrent updates")
}
