package backfill

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/oklog/ulid/v2"

	"wxbridge/shared/backoff"
	"wxbridge/shared/ddb"
	"wxbridge/shared/wechat"
)

// DB is the part of the DynamoDB API the store uses.
type DB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Store keeps runs in the one table.
//
// Items, all under "SYNC#<appid>":
//
//	SYNC#<appid>                     the account's pointer: active (the running run's id), last
//	SYNC#<appid>#<run>               the run: Run's fields, the counters updated with ADD
//	SYNC#<appid>#<run>#P#<n>         page n: its openids, next_openid, last, done
//	SYNC#<appid>#<run>#C#<n>#<k>     chunk k of page n: done, its tally, attempts, errors
//
// A page or chunk is counted on the run in the same transaction that marks
// it done, under the condition that it was not: that is what makes counts
// exact however often a job runs. Page and chunk items expire after
// itemLifetime (TTL); the run item stays.
type Store struct {
	db    DB
	table string
	// Now and NewID can be replaced by tests.
	Now   func() time.Time
	NewID func() string
}

// itemLifetime is how long page and chunk items are kept: longer than any
// job stays on the queue (SQS keeps messages 14 days at most).
const itemLifetime = 30 * 24 * time.Hour

// maxErrors bounds the errors a chunk item keeps.
const maxErrors = 10

// NewStore returns a store over table.
func NewStore(db DB, table string) *Store {
	return &Store{db: db, table: table, Now: time.Now, NewID: func() string { return ulid.Make().String() }}
}

func pointerPK(appid string) string  { return "SYNC#" + appid }
func runPK(appid, run string) string { return "SYNC#" + appid + "#" + run }
func pagePK(appid, run string, n int) string {
	return runPK(appid, run) + "#P#" + strconv.Itoa(n)
}
func chunkPK(appid, run string, page, k int) string {
	return runPK(appid, run) + "#C#" + strconv.Itoa(page) + "#" + strconv.Itoa(k)
}

// stamp is t as the run item keeps times (as attributevalue marshals
// time.Time).
func stamp(t time.Time) types.AttributeValue { return ddb.S(t.UTC().Format(time.RFC3339Nano)) }

type pointer struct {
	Active string `dynamodbav:"active"`
	Last   string `dynamodbav:"last"`
}

type runItem struct {
	PK string `dynamodbav:"pk"`
	Run
}

// Page is a listed page, as saved before its chunk jobs are queued.
type Page struct {
	OpenIDs []string
	Next    string
	Last    bool
	Total   int
	Done    bool
	// ChunkSize is the followers of each of the page's chunks but the
	// last, as the syncer that listed it cut them: whoever queues the
	// page's chunks again (a redelivered page job, Resume) cuts the same.
	ChunkSize int
}

// Chunks cuts the page's openids into its chunks, in order.
func (p *Page) Chunks() [][]string {
	size := chunkSize(p.ChunkSize)
	var out [][]string
	for k := 0; k*size < len(p.OpenIDs); k++ {
		out = append(out, p.OpenIDs[k*size:min((k+1)*size, len(p.OpenIDs))])
	}
	return out
}

// chunkSize is n as a chunk's size: ChunkSize when n is not set or
// larger.
func chunkSize(n int) int {
	if n > 0 && n < ChunkSize {
		return n
	}
	return ChunkSize
}

type pageItem struct {
	PK      string `dynamodbav:"pk"`
	OpenIDs string `dynamodbav:"openids"` // newline-separated: 10,000 openids stay far below the 400 KB item limit
	Next    string `dynamodbav:"next_openid"`
	Last    bool   `dynamodbav:"last"`
	Total   int    `dynamodbav:"total"`
	Done    bool   `dynamodbav:"done"`
	// ChunkSize is absent (0) on pages saved before it was kept: they were
	// cut into chunks of ChunkSize.
	ChunkSize int   `dynamodbav:"chunk_size,omitempty"`
	TTL       int64 `dynamodbav:"ttl"`
}

// Tally is what a chunk's followers became.
type Tally struct {
	Linked, Waiting, WithoutUnionID, Unfollowed, Failed int
	// Errors says why followers failed (at most maxErrors lines, with the
	// platform's errcode and rid when WeChat refused).
	Errors []string
}

func (t *Tally) note(s string) {
	if len(t.Errors) < maxErrors {
		t.Errors = append(t.Errors, s)
	}
}

func (t Tally) outcome() string {
	if t.Failed > 0 {
		return "failures"
	}
	return "linked"
}

func (st *Store) get(ctx context.Context, pk string, v any) (bool, error) {
	out, err := st.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.table, Key: ddb.Key(pk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return false, fmt.Errorf("followers: read: %w", err)
	}
	if out.Item == nil {
		return false, nil
	}
	if err := attributevalue.UnmarshalMap(out.Item, v); err != nil {
		return false, fmt.Errorf("followers: item %s: %w", pk, err)
	}
	return true, nil
}

// Active returns the account's running run, or nil.
func (st *Store) Active(ctx context.Context, appid string) (*Run, error) {
	var p pointer
	if _, err := st.get(ctx, pointerPK(appid), &p); err != nil || p.Active == "" {
		return nil, err
	}
	r, err := st.Run(ctx, appid, p.Active)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Run returns run id, or with id "" the active run, else the latest one.
func (st *Store) Run(ctx context.Context, appid, id string) (Run, error) {
	if id == "" {
		var p pointer
		if _, err := st.get(ctx, pointerPK(appid), &p); err != nil {
			return Run{}, err
		}
		if id = p.Active; id == "" {
			id = p.Last
		}
		if id == "" {
			return Run{}, ErrNoRun
		}
	}
	var it runItem
	ok, err := st.get(ctx, runPK(appid, id), &it)
	switch {
	case err != nil:
		return Run{}, err
	case !ok:
		return Run{}, ErrNoRun
	}
	return it.Run, nil
}

// Create makes a new running run and points the account at it, unless a
// run is active already: then it returns that one, created false.
func (st *Store) Create(ctx context.Context, appid string) (Run, bool, error) {
	for attempt := 0; attempt < 3; attempt++ {
		now := st.Now().UTC()
		r := Run{AppID: appid, ID: st.NewID(), Status: Running, StartedAt: now, UpdatedAt: now}
		item, err := attributevalue.MarshalMap(runItem{PK: runPK(appid, r.ID), Run: r})
		if err != nil {
			return Run{}, false, err
		}
		_, err = st.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{TableName: &st.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			{Update: newUpdate().set("active", ddb.S(r.ID)).set("last", ddb.S(r.ID)).
				when("attribute_not_exists(%s)", "active").on(st.table, pointerPK(appid))},
		}})
		if err == nil {
			return r, true, nil
		}
		if !ddb.LostRace(err) {
			return Run{}, false, fmt.Errorf("followers: start: %w", err)
		}
		// Someone started one first: return theirs, unless it has ended
		// since, in which case try again.
		active, err := st.Active(ctx, appid)
		if err != nil {
			return Run{}, false, err
		}
		if active != nil {
			return *active, false, nil
		}
	}
	return Run{}, false, errors.New("followers: start: runs keep starting and ending, try again")
}

// Page returns page n of a run, or nil if it was never listed.
func (st *Store) Page(ctx context.Context, appid, run string, n int) (*Page, error) {
	var it pageItem
	ok, err := st.get(ctx, pagePK(appid, run, n), &it)
	if err != nil || !ok {
		return nil, err
	}
	p := &Page{Next: it.Next, Last: it.Last, Total: it.Total, Done: it.Done, ChunkSize: it.ChunkSize}
	if it.OpenIDs != "" {
		p.OpenIDs = strings.Split(it.OpenIDs, "\n")
	}
	return p, nil
}

// SavePage saves a listed page, to be cut into chunks of chunkSize
// followers, unless one was saved before, and returns the saved one:
// whoever lists page n first decides what it holds and how it is cut.
func (st *Store) SavePage(ctx context.Context, appid, run string, n int, fp wechat.FollowerPage, chunkSize int) (*Page, error) {
	it := pageItem{
		PK: pagePK(appid, run, n), OpenIDs: strings.Join(fp.OpenIDs, "\n"), Next: fp.NextOpenID,
		Last: fp.Last(), Total: fp.Total, ChunkSize: chunkSize, TTL: st.Now().Add(itemLifetime).Unix(),
	}
	item, err := attributevalue.MarshalMap(it)
	if err != nil {
		return nil, err
	}
	_, err = st.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &st.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")})
	switch {
	case err == nil:
		return &Page{OpenIDs: fp.OpenIDs, Next: it.Next, Last: it.Last, Total: it.Total, ChunkSize: chunkSize}, nil
	}
	if _, lost := ddb.ConditionFailed(err); lost {
		return st.Page(ctx, appid, run, n)
	}
	return nil, fmt.Errorf("followers: save page: %w", err)
}

// PageDone marks page n done and counts it on the run, once: counted is
// false when it was done already.
func (st *Store) PageDone(ctx context.Context, appid, run string, n int, p *Page, chunks int) (counted bool, err error) {
	count := newUpdate().set("updated_at", stamp(st.Now())).set("total", ddb.N(int64(p.Total))).
		add("pages", 1).add("seen", int64(len(p.OpenIDs))).add("chunks", int64(chunks))
	if p.Last {
		count.set("listing_done", ddb.Bool(true))
	}
	mark := newUpdate().set("done", ddb.Bool(true)).
		when("attribute_exists(%s) AND %s = %s", "pk", "done", ddb.Bool(false))
	return st.transact(ctx, "count page", []*types.Update{mark.on(st.table, pagePK(appid, run, n)), count.on(st.table, runPK(appid, run))},
		func(ctx context.Context) (bool, error) {
			p, err := st.Page(ctx, appid, run, n)
			return p == nil || p.Done, err
		})
}

// ChunkDone reports whether chunk k of page n is done.
func (st *Store) ChunkDone(ctx context.Context, appid, run string, page, k int) (bool, error) {
	var it struct {
		Done bool `dynamodbav:"done"`
	}
	_, err := st.get(ctx, chunkPK(appid, run, page, k), &it)
	return it.Done, err
}

// CommitChunk marks the chunk done with its tally and adds the tally to the
// run, once: counted is false when the chunk was done already.
func (st *Store) CommitChunk(ctx context.Context, appid, run string, page, k int, t Tally) (counted bool, err error) {
	errs := make([]types.AttributeValue, len(t.Errors))
	for i, e := range t.Errors {
		errs[i] = ddb.S(e)
	}
	mark := newUpdate().set("done", ddb.Bool(true)).set("ttl", ddb.N(st.Now().Add(itemLifetime).Unix())).
		set("errors", &types.AttributeValueMemberL{Value: errs}).
		when("attribute_not_exists(%s) OR %s = %s", "done", "done", ddb.Bool(false))
	count := newUpdate().set("updated_at", stamp(st.Now())).add("chunks_done", 1)
	for _, c := range []struct {
		name string
		n    int
	}{{"linked", t.Linked}, {"waiting", t.Waiting}, {"without_unionid", t.WithoutUnionID}, {"unfollowed", t.Unfollowed}, {"failed", t.Failed}} {
		mark.set(c.name, ddb.N(int64(c.n)))
		count.add(c.name, int64(c.n))
	}
	return st.transact(ctx, "count chunk", []*types.Update{mark.on(st.table, chunkPK(appid, run, page, k)), count.on(st.table, runPK(appid, run))},
		func(ctx context.Context) (bool, error) { return st.ChunkDone(ctx, appid, run, page, k) })
}

// maxCollisions bounds how often transact tries a transaction that keeps
// colliding with other writers.
const maxCollisions = 9

// transact runs updates in one transaction whose conditions hold while its
// work is still to do (a page or chunk not counted yet, a run not ended
// yet), and reports whether it wrote. A lost race is told apart by a fresh
// read: settled reports that the work was done meanwhile (by a duplicate
// job, another chunk's finish), and then there is nothing to write;
// otherwise the transaction collided with another on the same items (the
// run item is every chunk's counter) and is tried again after a pause.
func (st *Store) transact(ctx context.Context, what string, updates []*types.Update, settled func(context.Context) (bool, error)) (wrote bool, err error) {
	in := &dynamodb.TransactWriteItemsInput{}
	for _, u := range updates {
		in.TransactItems = append(in.TransactItems, types.TransactWriteItem{Update: u})
	}
	for attempt := 1; ; attempt++ {
		_, err := st.db.TransactWriteItems(ctx, in)
		if err == nil {
			return true, nil
		}
		if !ddb.LostRace(err) || attempt >= maxCollisions {
			return false, fmt.Errorf("followers: %s: %w", what, err)
		}
		if done, err := settled(ctx); err != nil || done {
			return false, err
		}
		if err := backoff.Sleep(ctx, backoff.Full(backoff.Exp(10*time.Millisecond, time.Second, attempt))+time.Millisecond); err != nil {
			return false, err
		}
	}
}

// Retried records on the run (and the chunk) why job j will be tried
// again.
func (st *Store) Retried(ctx context.Context, j Job, attempt int, cause error) error {
	msg := fmt.Sprintf("%s %d", j.Kind, j.Page)
	if j.Kind == ChunkJob {
		msg += fmt.Sprintf("/%d", j.Chunk)
	}
	msg += ": " + cause.Error()
	now := st.Now()
	if j.Kind == ChunkJob {
		u := newUpdate().set("attempts", ddb.N(int64(attempt))).set("last_error", ddb.S(cause.Error())).
			set("ttl", ddb.N(now.Add(itemLifetime).Unix()))
		if err := st.update(ctx, u.on(st.table, chunkPK(j.AppID, j.Run, j.Page, j.Chunk))); err != nil {
			return err
		}
	}
	u := newUpdate().set("last_error", ddb.S(msg)).set("updated_at", stamp(now)).add("retries", 1).
		when("attribute_exists(%s)", "pk")
	return st.update(ctx, u.on(st.table, runPK(j.AppID, j.Run)))
}

func (st *Store) update(ctx context.Context, u *types.Update) error {
	_, err := st.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: u.TableName, Key: u.Key, UpdateExpression: u.UpdateExpression, ConditionExpression: u.ConditionExpression,
		ExpressionAttributeNames: u.ExpressionAttributeNames, ExpressionAttributeValues: u.ExpressionAttributeValues,
	})
	return err
}

// Fail ends run id as failed, with why, unless it has ended already.
func (st *Store) Fail(ctx context.Context, appid, id string, cause error) error {
	_, err := st.end(ctx, appid, id, Failed, cause.Error())
	return err
}

// Finish ends run id as done if its listing is over and every chunk is
// done; ended says whether this call ended it.
func (st *Store) Finish(ctx context.Context, appid, id string) (ended bool, err error) {
	r, err := st.Run(ctx, appid, id)
	if err != nil || !r.Active() || !r.ListingDone || r.ChunksDone < r.Chunks {
		return false, err
	}
	return st.end(ctx, appid, id, Done, "")
}

// end sets the run's final status and frees the account for the next run,
// if the run is still running and, for done, its listing is over and every
// chunk is done; ended says whether this call ended it.
func (st *Store) end(ctx context.Context, appid, id, status, lastError string) (ended bool, err error) {
	now := stamp(st.Now())
	r := newUpdate().set("status", ddb.S(status)).set("finished_at", now).set("updated_at", now)
	if lastError != "" {
		r.set("last_error", ddb.S(lastError))
	}
	if status == Done {
		r.when("%s = %s AND %s = %s AND %s = %s", "status", ddb.S(Running), "listing_done", ddb.Bool(true), "chunks_done", "chunks")
	} else {
		r.when("%s = %s", "status", ddb.S(Running))
	}
	free := newUpdate().remove("active").when("%s = %s", "active", ddb.S(id))
	return st.transact(ctx, "end run", []*types.Update{r.on(st.table, runPK(appid, id)), free.on(st.table, pointerPK(appid))},
		func(ctx context.Context) (bool, error) {
			// Ended by someone else, or (for done) not ready to end: the
			// job that finishes the last chunk ends it.
			r, err := st.Run(ctx, appid, id)
			return !r.Active() || status == Done && (!r.ListingDone || r.ChunksDone < r.Chunks), err
		})
}

// Unfinished lists the jobs run id still needs: the chunks of listed pages
// that are not done, and the first page not done (or not listed).
func (st *Store) Unfinished(ctx context.Context, appid, id string) ([]Job, error) {
	var jobs []Job
	next := ""
	for n := 0; ; n++ {
		p, err := st.Page(ctx, appid, id, n)
		if err != nil {
			return nil, err
		}
		if p == nil || !p.Done {
			// Listing (again) queues its chunks and the pages after it.
			return append(jobs, Job{Kind: PageJob, AppID: appid, Run: id, Page: n, Next: next}), nil
		}
		chunks := p.Chunks()
		pks := make([]string, len(chunks))
		for k := range chunks {
			pks[k] = chunkPK(appid, id, n, k)
		}
		done, err := st.doneOf(ctx, pks)
		if err != nil {
			return nil, err
		}
		for k, pk := range pks {
			if !done[pk] {
				jobs = append(jobs, Job{Kind: ChunkJob, AppID: appid, Run: id, Page: n, Chunk: k, OpenIDs: chunks[k]})
			}
		}
		if p.Last {
			return jobs, nil
		}
		next = p.Next
	}
}

// doneOf reads which of the chunk items pks are done, 100 at a time.
func (st *Store) doneOf(ctx context.Context, pks []string) (map[string]bool, error) {
	done := map[string]bool{}
	for len(pks) > 0 {
		n := min(len(pks), 100)
		ka := types.KeysAndAttributes{
			ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String("#pk, #done"),
			ExpressionAttributeNames: map[string]string{"#pk": "pk", "#done": "done"},
		}
		for _, pk := range pks[:n] {
			ka.Keys = append(ka.Keys, ddb.Key(pk))
		}
		req := map[string]types.KeysAndAttributes{st.table: ka}
		for len(req) > 0 {
			out, err := st.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("followers: read chunks: %w", err)
			}
			for _, it := range out.Responses[st.table] {
				var c struct {
					PK   string `dynamodbav:"pk"`
					Done bool   `dynamodbav:"done"`
				}
				if err := attributevalue.UnmarshalMap(it, &c); err != nil {
					return nil, err
				}
				done[c.PK] = c.Done
			}
			req = out.UnprocessedKeys
		}
		pks = pks[n:]
	}
	return done, nil
}
