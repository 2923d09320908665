package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/backoff"
	"wxbridge/shared/ddb"
)

// LedgerAPI is the DynamoDB calls of the refresher's lease and force budget.
type LedgerAPI interface {
	ddb.LeaseDeleteAPI
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

const (
	// leaseTTL bounds how long a crashed run can block the others. It is
	// longer than a run holds the lease (a secret read, one platform call
	// of at most 5 s, a secret write) and than the function's timeout.
	leaseTTL = 2 * time.Minute
	// recordTTL keeps ledger items around long enough to be read, then
	// lets DynamoDB's TTL remove them.
	recordTTL = 48 * time.Hour
	// budgetAttempts bounds the optimistic retries of the budget update.
	budgetAttempts = 5
)

// Ledger is the token-refresher's state in the table, per app: a lease item
// ("TOKENLEASE#<appid>") that overlapping runs take before reading and
// refreshing a token, so that they make one platform call between them, and
// the force budget ("TOKENFORCE#<appid>"), shared by every instance.
type Ledger struct {
	db    LedgerAPI
	table string
	now   func() time.Time
}

// NewLedger returns the Ledger kept in table. now is the clock the lease
// and the budget are counted on (time.Now if nil).
func NewLedger(db LedgerAPI, table string, now func() time.Time) *Ledger {
	if now == nil {
		now = time.Now
	}
	return &Ledger{db: db, table: table, now: now}
}

func leasePK(appid string) string  { return "TOKENLEASE#" + appid }
func budgetPK(appid string) string { return "TOKENFORCE#" + appid }

// Lease takes appid's refresh lease. While another run holds it, Lease
// tries again for up to wait (in real time), then returns ddb.ErrHeld.
func (l *Ledger) Lease(ctx context.Context, appid string, wait time.Duration) (*ddb.Lease, error) {
	deadline := time.Now().Add(wait)
	owner := ddb.NewOwner()
	for attempt := 1; ; attempt++ {
		now := l.now()
		lease, _, err := ddb.Taken(ctx, l.db, ddb.Take{
			Table: l.table, Key: ddb.Key(leasePK(appid)), Owner: owner,
			Until: now.Add(leaseTTL), Now: now,
			Set:    "#ttl = :ttl",
			Names:  map[string]string{"#ttl": "ttl"},
			Values: ddb.Item{":ttl": ddb.TTL(now.Add(recordTTL))},
		})
		if !errors.Is(err, ddb.ErrHeld) {
			return lease, err
		}
		pause := backoff.Exp(25*time.Millisecond, 250*time.Millisecond, attempt)
		if time.Now().Add(pause).After(deadline) {
			return nil, err
		}
		if serr := backoff.Sleep(ctx, pause); serr != nil {
			return nil, serr
		}
	}
}

// Release gives the lease back (deletes the lease item) if it is still
// ours; ddb.ErrLost if it ran out and another run took it. It runs even
// when ctx is done: the run is over either way.
func (l *Ledger) Release(ctx context.Context, lease *ddb.Lease) error {
	return lease.Release(context.WithoutCancel(ctx), l.db, ddb.End{Delete: true})
}

// The budget item's attributes.
const (
	attrDay     = "day"     // ForceBudget.Day
	attrCount   = "count"   // ForceBudget.Count
	attrLast    = "last_ms" // ForceBudget.Last, Unix milliseconds
	attrVersion = "version" // for the optimistic update
)

// SpendForce takes one forced refresh from appid's budget before the call,
// so that concurrent runs cannot both spend the last one: read, apply the
// rule, write conditionally on the version read, retry on a lost race. It
// returns a *BudgetError when the budget says no.
func (l *Ledger) SpendForce(ctx context.Context, appid string) error {
	key := ddb.Key(budgetPK(appid))
	for range budgetAttempts {
		out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(l.table), Key: key, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return fmt.Errorf("tokens: read force budget: %w", err)
		}
		b, version := budgetOf(out.Item)
		now := l.now()
		if err := b.Allow(now); err != nil {
			return err
		}
		next := b.Spend(now)
		item := ddb.Item{
			"pk":        key["pk"],
			attrDay:     ddb.S(next.Day),
			attrCount:   ddb.N(int64(next.Count)),
			attrLast:    ddb.Millis(next.Last),
			attrVersion: ddb.N(version + 1),
			"ttl":       ddb.TTL(now.Add(recordTTL)),
		}
		in := &dynamodb.PutItemInput{TableName: aws.String(l.table), Item: item}
		if out.Item != nil {
			in.ConditionExpression = aws.String("#v = :v")
			in.ExpressionAttributeNames = map[string]string{"#v": attrVersion}
			in.ExpressionAttributeValues = ddb.Item{":v": ddb.N(version)}
		} else {
			in.ConditionExpression = aws.String("attribute_not_exists(pk)")
		}
		_, err = l.db.PutItem(ctx, in)
		if !ddb.LostRace(err) {
			if err != nil {
				return fmt.Errorf("tokens: write force budget: %w", err)
			}
			return nil
		}
	}
	return errors.New("tokens: force budget: too many concurrent updates")
}

// budgetOf reads a budget item (nil: no forced refresh yet) and its version.
func budgetOf(it ddb.Item) (ForceBudget, int64) {
	b := ForceBudget{Day: ddb.String(it, attrDay), Count: int(ddb.Int(it, attrCount))}
	if ms := ddb.Int(it, attrLast); ms != 0 {
		b.Last = time.UnixMilli(ms)
	}
	return b, ddb.Int(it, attrVersion)
}
