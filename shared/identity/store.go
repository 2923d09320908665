package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/oklog/ulid/v2"

	"wxbridge/shared/backoff"
	"wxbridge/shared/ddb"
	"wxbridge/shared/observe"
)

// DB is the part of the DynamoDB API the store uses.
type DB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Store keeps people and their identity markers in one DynamoDB table.
//
// Items: a person is "P#<uid>"; each identity key has a marker item named
// by Key.String() holding the owner's uid (a mini-program marker also holds
// the latest session_key). A person and its markers change only together,
// in one transaction whose conditions fail if anything read has moved. A
// verified phone number has a lookup item "PHONE#<number>" naming who
// verified it last and when; the person's Phone is the truth, the item a
// hint that a later verification or a merge may leave stale.
type Store struct {
	db    DB
	table string
	// Now and NewUID can be replaced by tests.
	Now    func() time.Time
	NewUID func() string
	// Attempts bounds how often Link retries after losing a race.
	Attempts int
	// Metrics, when set, counts every merge (Merges) and every refused
	// link (LinkConflicts) by the sighting's source, whichever function
	// links: callers do not count them.
	Metrics *observe.Metrics
}

// NewStore returns a store over table.
func NewStore(db DB, table string) *Store {
	return &Store{
		db:       db,
		table:    table,
		Now:      time.Now,
		NewUID:   func() string { return ulid.Make().String() },
		Attempts: 12,
	}
}

// ErrNotFound reports an identity or uid nobody holds.
var ErrNotFound = errors.New("identity: not found")

// ErrContention reports a Link that lost its race more often than Attempts.
var ErrContention = errors.New("identity: too much contention, try again")

// errRace means a condition failed because someone else wrote first: read
// again and decide again.
var errRace = errors.New("identity: lost a race")

// Link folds sighting s into the person its identities belong to: it creates
// the person, attaches new identities or state, or merges the people that s
// reveals to be one. It returns ErrConflict, writing nothing, when the
// identities cannot be one person.
func (st *Store) Link(ctx context.Context, s Sighting) (Result, error) {
	res, err := st.linkFresh(ctx, s)
	st.count(s, res, err)
	return res, err
}

// linkFresh links s, deciding again from a fresh read after each lost race.
func (st *Store) linkFresh(ctx context.Context, s Sighting) (Result, error) {
	if err := s.validate(); err != nil {
		return Result{}, err
	}
	for attempt := 1; ; attempt++ {
		res, err := st.link(ctx, s)
		if !errors.Is(err, errRace) {
			return res, err
		}
		if attempt >= st.Attempts {
			return Result{}, ErrContention
		}
		// Full jitter: contenders spread out instead of colliding again.
		if err := backoff.Sleep(ctx, backoff.Full(backoff.Exp(5*time.Millisecond, 400*time.Millisecond, attempt))+time.Millisecond); err != nil {
			return Result{}, err
		}
	}
}

// count records what one Link did that someone may have to look at: a
// merge of people, or identities refused as conflicting (by field: an
// external_id conflict is a business binding refused).
func (st *Store) count(s Sighting, res Result, err error) {
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		st.Metrics.Count("LinkConflicts", "source", s.Source.label(), "field", ce.Field)
	case err == nil && len(res.Merged) > 0:
		st.Metrics.Count("Merges", "source", s.Source.label())
	}
}

func (st *Store) link(ctx context.Context, s Sighting) (Result, error) {
	owners, err := st.owners(ctx, s.Keys())
	if err != nil {
		return Result{}, err
	}
	people := make(map[string]Person, len(owners))
	for _, uid := range owners {
		people[uid] = Person{}
	}
	if err := st.people(ctx, people); err != nil {
		return Result{}, err
	}
	c, err := decide(s, owners, people, st.NewUID(), st.Now())
	if err != nil {
		return Result{}, err
	}
	if err := st.write(ctx, c); err != nil {
		return Result{}, err
	}
	res := Result{Person: c.person, Outcome: c.outcome}
	if c.write {
		res.Person.Version++
	}
	for _, r := range c.retired {
		res.Merged = append(res.Merged, r.UID)
	}
	return res, nil
}

// marker is the item that makes an identity key belong to one person.
type marker struct {
	PK         string    `dynamodbav:"pk"`
	UID        string    `dynamodbav:"uid"`
	SessionKey string    `dynamodbav:"session_key,omitempty"`
	LoginAt    time.Time `dynamodbav:"login_at,omitempty"`
}

// personItem is a person, or the tombstone of one merged away.
type personItem struct {
	PK string `dynamodbav:"pk"`
	Person
	MergedInto string `dynamodbav:"merged_into,omitempty"`
}

func personPK(uid string) string { return "P#" + uid }

// owners reads the markers of keys in one consistent batch and returns the
// uid owning each key that has one.
func (st *Store) owners(ctx context.Context, keys []Key) (map[Key]string, error) {
	byPK := make(map[string]Key, len(keys))
	for _, k := range keys {
		byPK[k.String()] = k
	}
	items, err := st.batchGet(ctx, keysOf(byPK))
	if err != nil {
		return nil, err
	}
	out := make(map[Key]string, len(items))
	for _, it := range items {
		var m marker
		if err := attributevalue.UnmarshalMap(it, &m); err != nil {
			return nil, fmt.Errorf("identity: marker: %w", err)
		}
		out[byPK[m.PK]] = m.UID
	}
	return out, nil
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// people fills in the people named by the keys of ps. A person that is
// missing or merged away means a marker moved after we read it: errRace.
func (st *Store) people(ctx context.Context, ps map[string]Person) error {
	if len(ps) == 0 {
		return nil
	}
	pks := make([]string, 0, len(ps))
	for uid := range ps {
		pks = append(pks, personPK(uid))
	}
	items, err := st.batchGet(ctx, pks)
	if err != nil {
		return err
	}
	if len(items) != len(ps) {
		return errRace
	}
	for _, it := range items {
		var p personItem
		if err := attributevalue.UnmarshalMap(it, &p); err != nil {
			return fmt.Errorf("identity: person: %w", err)
		}
		if p.MergedInto != "" {
			return errRace
		}
		ps[p.UID] = p.Person
	}
	return nil
}

// batchGet reads items by pk with strong consistency: one GetItem for one
// key, BatchGetItem for more, following UnprocessedKeys.
func (st *Store) batchGet(ctx context.Context, pks []string) ([]ddb.Item, error) {
	switch len(pks) {
	case 0:
		return nil, nil
	case 1:
		out, err := st.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.table, Key: ddb.Key(pks[0]), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("identity: read: %w", err)
		}
		if out.Item == nil {
			return nil, nil
		}
		return []ddb.Item{out.Item}, nil
	}
	ka := types.KeysAndAttributes{ConsistentRead: aws.Bool(true)}
	for _, p := range pks {
		ka.Keys = append(ka.Keys, ddb.Key(p))
	}
	req := map[string]types.KeysAndAttributes{st.table: ka}
	var items []ddb.Item
	for attempt := 0; len(req) > 0; attempt++ {
		// DynamoDB left keys unprocessed (throttling): come back for them
		// a little later each time.
		if err := backoff.Sleep(ctx, time.Duration(attempt)*10*time.Millisecond); err != nil {
			return nil, err
		}
		out, err := st.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return nil, fmt.Errorf("identity: read: %w", err)
		}
		items = append(items, out.Responses[st.table]...)
		req = out.UnprocessedKeys
		if attempt > 8 && len(req) > 0 {
			return nil, fmt.Errorf("identity: read: keys left unprocessed")
		}
	}
	return items, nil
}

// write applies a change as one conditional write: a single item operation
// when only one item changes (the common returning-user login), else one
// transaction. A failed condition is a lost race.
func (st *Store) write(ctx context.Context, c change) error {
	ops, err := st.ops(c)
	if err != nil {
		return err
	}
	return st.commit(ctx, ops)
}

// ops is the conditional writes that apply c.
func (st *Store) ops(c change) ([]types.TransactWriteItem, error) {
	var ops []types.TransactWriteItem
	now := st.Now()
	if c.write {
		item, err := attributevalue.MarshalMap(personItem{PK: personPK(c.person.UID), Person: bumped(c.person)})
		if err != nil {
			return nil, err
		}
		put := &types.Put{TableName: &st.table, Item: item}
		if c.create {
			put.ConditionExpression = aws.String("attribute_not_exists(pk)")
		} else {
			versionIs(put, c.person.Version)
		}
		ops = append(ops, types.TransactWriteItem{Put: put})
	}
	for _, r := range c.retired {
		tomb := personItem{PK: personPK(r.UID), Person: Person{UID: r.UID, CreatedAt: r.CreatedAt, UpdatedAt: now, Version: r.Version + 1}, MergedInto: c.person.UID}
		item, err := attributevalue.MarshalMap(tomb)
		if err != nil {
			return nil, err
		}
		put := &types.Put{TableName: &st.table, Item: item}
		versionIs(put, r.Version)
		ops = append(ops, types.TransactWriteItem{Put: put})
	}
	sessionPK := ""
	if c.sessions != nil {
		sessionPK = MPKey(c.sessions.AppID, c.sessions.OpenID).String()
	}
	sessionDone := false
	for _, k := range c.newKeys {
		m := marker{PK: k.String(), UID: c.person.UID}
		if m.PK == sessionPK {
			m.SessionKey, m.LoginAt, sessionDone = c.sessions.SessionKey, now, true
		}
		item, err := attributevalue.MarshalMap(m)
		if err != nil {
			return nil, err
		}
		ops = append(ops, types.TransactWriteItem{Put: &types.Put{
			TableName: &st.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)"),
		}})
	}
	for _, mv := range c.moved {
		u := markerOwnerUpdate(st.table, mv.key.String(), mv.from, c.person.UID)
		if mv.key.String() == sessionPK {
			withSession(u, c.sessions.SessionKey, now)
			sessionDone = true
		}
		ops = append(ops, types.TransactWriteItem{Update: u})
	}
	if sessionPK != "" && !sessionDone {
		u := markerOwnerUpdate(st.table, sessionPK, c.person.UID, "")
		withSession(u, c.sessions.SessionKey, now)
		ops = append(ops, types.TransactWriteItem{Update: u})
	}
	return ops, nil
}

func bumped(p Person) Person {
	p.Version++
	return p
}

func versionIs(put *types.Put, v int64) {
	put.ConditionExpression = aws.String("version = :v")
	put.ExpressionAttributeValues = ddb.Item{":v": ddb.N(v)}
}

// markerOwnerUpdate is an update of the marker pk that requires it to be
// owned by from, and moves it to to unless to is empty.
func markerOwnerUpdate(table, markerPK, from, to string) *types.Update {
	u := &types.Update{
		TableName:                 &table,
		Key:                       ddb.Key(markerPK),
		ConditionExpression:       aws.String("uid = :from"),
		ExpressionAttributeValues: ddb.Item{":from": ddb.S(from)},
		UpdateExpression:          aws.String("SET uid = :from"),
	}
	if to != "" {
		u.UpdateExpression = aws.String("SET uid = :to")
		u.ExpressionAttributeValues[":to"] = ddb.S(to)
	}
	return u
}

func withSession(u *types.Update, sessionKey string, at time.Time) {
	*u.UpdateExpression += ", session_key = :sk, login_at = :at"
	u.ExpressionAttributeValues[":sk"] = ddb.S(sessionKey)
	u.ExpressionAttributeValues[":at"] = ddb.S(at.UTC().Format(time.RFC3339Nano))
}

// commit runs ops: nothing, one conditional item write, or a transaction.
func (st *Store) commit(ctx context.Context, ops []types.TransactWriteItem) error {
	var err error
	switch {
	case len(ops) == 0:
		return nil
	case len(ops) == 1 && ops[0].Put != nil:
		p := ops[0].Put
		_, err = st.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: p.TableName, Item: p.Item, ConditionExpression: p.ConditionExpression,
			ExpressionAttributeValues: p.ExpressionAttributeValues,
		})
	case len(ops) == 1 && ops[0].Update != nil:
		u := ops[0].Update
		_, err = st.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: u.TableName, Key: u.Key, UpdateExpression: u.UpdateExpression,
			ConditionExpression: u.ConditionExpression, ExpressionAttributeValues: u.ExpressionAttributeValues,
		})
	default:
		_, err = st.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: ops})
	}
	if err == nil {
		return nil
	}
	if ddb.LostRace(err) {
		return errRace
	}
	return fmt.Errorf("identity: write: %w", err)
}

// Lookup returns the person holding key k: one marker read and one person
// read.
func (st *Store) Lookup(ctx context.Context, k Key) (Person, error) {
	for attempt := 0; attempt < 3; attempt++ {
		owners, err := st.owners(ctx, []Key{k})
		if err != nil {
			return Person{}, err
		}
		uid, ok := owners[k]
		if !ok {
			return Person{}, ErrNotFound
		}
		p, err := st.ByUID(ctx, uid)
		if errors.Is(err, ErrNotFound) {
			continue // merged and moved between the two reads
		}
		return p, err
	}
	return Person{}, ErrContention
}

// ByUID returns the person with uid, following merges: a uid merged into
// another person resolves to that person.
func (st *Store) ByUID(ctx context.Context, uid string) (Person, error) {
	for hops := 0; hops < 8; hops++ {
		items, err := st.batchGet(ctx, []string{personPK(uid)})
		if err != nil {
			return Person{}, err
		}
		if len(items) == 0 {
			return Person{}, ErrNotFound
		}
		var p personItem
		if err := attributevalue.UnmarshalMap(items[0], &p); err != nil {
			return Person{}, fmt.Errorf("identity: person: %w", err)
		}
		if p.MergedInto == "" {
			return p.Person, nil
		}
		uid = p.MergedInto
	}
	return Person{}, fmt.Errorf("identity: merge chain from %s too long", uid)
}

// MPSession is what the store keeps for a mini-program identity's latest
// login.
type MPSession struct {
	UID        string
	SessionKey string
	LoginAt    time.Time
}

// String leaves the session key out, so printing an MPSession leaks nothing.
func (s MPSession) String() string { return "identity.MPSession{UID:" + s.UID + "}" }

// GoString is String, for %#v.
func (s MPSession) GoString() string { return s.String() }

// Session returns the latest login's session key for a mini-program
// identity, and the uid that owns it now.
func (st *Store) Session(ctx context.Context, appid, openid string) (MPSession, error) {
	items, err := st.batchGet(ctx, []string{MPKey(appid, openid).String()})
	if err != nil {
		return MPSession{}, err
	}
	if len(items) == 0 {
		return MPSession{}, ErrNotFound
	}
	var m marker
	if err := attributevalue.UnmarshalMap(items[0], &m); err != nil {
		return MPSession{}, fmt.Errorf("identity: marker: %w", err)
	}
	return MPSession{UID: m.UID, SessionKey: m.SessionKey, LoginAt: m.LoginAt}, nil
}
