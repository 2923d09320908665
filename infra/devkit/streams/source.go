// Package streams plays Lambda's event source mapping for DynamoDB Streams
// against moto (or any endpoint with the dynamodbstreams API): it reads a
// table's stream with DescribeStream, GetShardIterator and GetRecords,
// keeps the records the trigger's filter criteria keep, and hands them to
// a handler in batches as the events.DynamoDBEvent Lambda sends, honouring
// what Lambda honours: order per shard, partial batch failures (retry from
// the lowest failed sequence number), whole-batch retries (bisected when
// asked), the retry limit and the on-failure destination's invocation
// record.
package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/shared/backoff"
)

// Source is one stream trigger of one function: the event source mapping
// Lambda runs. Run and Drain keep its position between calls; call one at
// a time.
type Source struct {
	AWS       aws.Config
	StreamARN string
	Trigger   cfn.StreamTrigger
	// OnFailureURL is the SQS queue URL of Trigger.OnFailure, "" for none:
	// records given up on are then dropped, as Lambda drops them.
	OnFailureURL string
	Handler      func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

	// FunctionARN names the function in on-failure records.
	FunctionARN string
	// Log, when set, hears what Run keeps going through: failed polls,
	// failed batches, records given up on.
	Log *slog.Logger
	// Poll is how long an idle shard waits before it is read again;
	// Lambda's 4 polls a second when zero.
	Poll time.Duration
	// RetryDelay is the wait after a failed invocation before the shard's
	// next, doubled for each further failure in a row up to 5 s; 100 ms
	// when zero.
	RetryDelay time.Duration

	once    sync.Once
	initErr error
	filters []pattern
	streams *dynamodbstreams.Client
	sqs     *sqs.Client

	mu     sync.Mutex
	shards map[string]*shard // by shard id
	order  []string          // shard ids in the order DescribeStream gave them
}

const (
	defaultBatchSize = 100 // Lambda's default for DynamoDB streams
	maxBatchSize     = 10000
	readLimit        = 1000 // GetRecords' largest page
	retryCeiling     = 5 * time.Second
	discoverEvery    = time.Second
)

// shard is one shard's reading position and the records read from it that
// the handler has not yet taken.
type shard struct {
	id, parent string
	start      types.ShardIteratorType
	iter       string // the next GetRecords iterator; "" before the first read
	lastSeq    string // the last sequence number read
	closed     bool   // read to the end of a closed shard
	done       bool   // closed, and every record handed over or given up on

	buf  []record // read and kept by the filters, not yet in a batch
	work []batch  // the batch being tried, and the halves waiting after it
	seen seenIDs
	// failures counts the invocations that failed since the last that
	// did not: the shard waits longer before each next one.
	failures int
}

// record is one stream record as the handler gets it.
type record struct {
	ev      events.DynamoDBEventRecord
	arrived time.Time
}

// batch is records handed to the handler together, and how many times
// they have been retried.
type batch struct {
	recs    []record
	retries int
	// lost is set once the batch is given up on while its on-failure
	// record has not been sent: only the sending is tried again.
	lost *loss
}

// loss is why a batch was given up on, for its on-failure record.
type loss struct {
	invokes       int
	functionError bool
	cause         error
}

// Open checks the trigger and finds the stream's shards, placing each at
// the trigger's starting position. Run and Drain open the source if it is
// not open; calling it first surfaces a bad trigger before anything runs.
func (s *Source) Open(ctx context.Context) error {
	s.once.Do(func() {
		switch s.Trigger.StartingPosition {
		case string(types.ShardIteratorTypeTrimHorizon), string(types.ShardIteratorTypeLatest):
		default:
			s.initErr = fmt.Errorf("streams: StartingPosition %q: want TRIM_HORIZON or LATEST", s.Trigger.StartingPosition)
			return
		}
		if s.Trigger.BatchSize < 0 || s.Trigger.BatchSize > maxBatchSize {
			s.initErr = fmt.Errorf("streams: BatchSize %d: want 1 to %d", s.Trigger.BatchSize, maxBatchSize)
			return
		}
		if s.Handler == nil || s.StreamARN == "" {
			s.initErr = errors.New("streams: a Source needs a StreamARN and a Handler")
			return
		}
		for _, text := range s.Trigger.Filters {
			p, err := compile(text)
			if err != nil {
				s.initErr = err
				return
			}
			s.filters = append(s.filters, p)
		}
		s.streams = dynamodbstreams.NewFromConfig(s.AWS)
		s.sqs = sqs.NewFromConfig(s.AWS)
		s.shards = map[string]*shard{}
		// The shards there now start at the trigger's starting position;
		// those that appear later are children, read from their start.
		s.initErr = s.discover(ctx, types.ShardIteratorType(s.Trigger.StartingPosition))
	})
	return s.initErr
}

// Drain hands over every record the stream has now, retrying and giving
// up on batches as the trigger says, and returns; an error is one of
// reading the stream or of sending to the on-failure queue. Under an
// unlimited retry policy a batch that keeps failing holds it until ctx
// ends.
func (s *Source) Drain(ctx context.Context) error {
	if err := s.Open(ctx); err != nil {
		return err
	}
	for {
		if err := s.discover(ctx, types.ShardIteratorTypeTrimHorizon); err != nil {
			return err
		}
		progressed := false
		for _, sh := range s.ready() {
			for {
				did, err := s.step(ctx, sh)
				if err != nil {
					return err
				}
				if !did {
					break
				}
			}
			if s.finish(sh) {
				progressed = true // a child may be ready now
			}
		}
		if !progressed {
			return nil
		}
	}
}

// Run hands records over as they arrive until ctx ends, one goroutine per
// shard (Lambda's one batch at a time per shard), a child shard once its
// parent is done. It returns nil when ctx ends, an error only when the
// source cannot start (a bad trigger, no such stream).
func (s *Source) Run(ctx context.Context) error {
	if err := s.Open(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]bool{}
	for {
		for _, sh := range s.ready() {
			if running[sh.id] {
				continue
			}
			running[sh.id] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runShard(ctx, sh)
			}()
		}
		if backoff.Sleep(ctx, discoverEvery) != nil {
			return nil
		}
		if err := s.discover(ctx, types.ShardIteratorTypeTrimHorizon); err != nil && ctx.Err() == nil {
			s.warn("describe stream", "error", err)
		}
	}
}

func (s *Source) runShard(ctx context.Context, sh *shard) {
	poll := s.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	failures := 0
	for ctx.Err() == nil {
		did, err := s.step(ctx, sh)
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			s.warn("stream shard", "shard", sh.id, "error", err)
			backoff.Sleep(ctx, backoff.Exp(poll, retryCeiling, failures))
		case err != nil:
			return
		case did:
			failures = 0
		case s.finish(sh):
			return
		default:
			backoff.Sleep(ctx, poll)
		}
	}
}

// finish marks sh done once it is closed and empty, and says so.
func (s *Source) finish(sh *shard) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh.closed && len(sh.buf) == 0 && len(sh.work) == 0 {
		sh.done = true
	}
	return sh.done
}

// ready lists the shards not done whose parent is done (or gone), in
// stream order.
func (s *Source) ready() []*shard {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*shard
	for _, id := range s.order {
		sh := s.shards[id]
		if parent, ok := s.shards[sh.parent]; sh.done || ok && !parent.done {
			continue
		}
		out = append(out, sh)
	}
	return out
}

// discover adds the stream's shards it has not seen, new ones starting at
// start.
func (s *Source) discover(ctx context.Context, start types.ShardIteratorType) error {
	in := &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(s.StreamARN)}
	for {
		out, err := s.streams.DescribeStream(ctx, in)
		if err != nil {
			return fmt.Errorf("streams: describe %s: %w", s.StreamARN, err)
		}
		s.mu.Lock()
		for _, d := range out.StreamDescription.Shards {
			id := aws.ToString(d.ShardId)
			if _, ok := s.shards[id]; !ok {
				s.shards[id] = &shard{id: id, parent: aws.ToString(d.ParentShardId), start: start}
				s.order = append(s.order, id)
			}
		}
		s.mu.Unlock()
		if out.StreamDescription.LastEvaluatedShardId == nil {
			return nil
		}
		in.ExclusiveStartShardId = out.StreamDescription.LastEvaluatedShardId
	}
}

// step does the next piece of sh's work: it tries the batch at the head of
// its work (reading and forming one first if there is none) and settles
// the outcome. It reports false when there was nothing new to do.
func (s *Source) step(ctx context.Context, sh *shard) (bool, error) {
	if len(sh.work) == 0 {
		size := s.Trigger.BatchSize
		if size == 0 {
			size = defaultBatchSize
		}
		// Lambda invokes with what a poll finds (there is no batching
		// window here), at most BatchSize records; a full page the filters
		// emptied is followed at once by the next.
		fresh := 0
		for len(sh.buf) == 0 && !sh.closed {
			page, n, err := s.read(ctx, sh)
			if err != nil {
				return false, err
			}
			fresh += n
			if page < readLimit {
				break
			}
		}
		if len(sh.buf) == 0 {
			return fresh > 0, nil
		}
		n := min(size, len(sh.buf))
		sh.work = []batch{{recs: sh.buf[:n:n]}}
		sh.buf = sh.buf[n:]
	}
	b := sh.work[0]
	if b.lost != nil {
		if err := s.giveUp(ctx, sh, b.recs, *b.lost); err != nil {
			return false, err
		}
		sh.work = sh.work[1:]
		return true, nil
	}
	if sh.failures > 0 {
		delay := s.RetryDelay
		if delay <= 0 {
			delay = 100 * time.Millisecond
		}
		if err := backoff.Sleep(ctx, backoff.Exp(delay, retryCeiling, sh.failures)); err != nil {
			return false, err
		}
	}
	resp, err := s.invoke(ctx, b.recs)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err() // stopping: the batch stays for the next call
		}
		sh.failures++
		return true, s.fail(ctx, sh, b.recs, b.retries, true, err)
	}
	if !s.Trigger.ReportBatchItemFailures || len(resp.BatchItemFailures) == 0 {
		sh.work, sh.failures = sh.work[1:], 0
		return true, nil
	}
	sh.failures++
	at, ok := lowestFailure(b.recs, resp.BatchItemFailures)
	if !ok {
		return true, s.fail(ctx, sh, b.recs, b.retries, true, errors.New("batchItemFailures names a record not in the batch"))
	}
	// Lambda checkpoints before the lowest failed record and retries from
	// it: the records before it are done.
	return true, s.fail(ctx, sh, b.recs[at:], b.retries, false, nil)
}

// lowestFailure is the batch index of the earliest record failures name,
// or ok false when one names none (an empty or unknown identifier makes
// Lambda treat the whole batch as failed).
func lowestFailure(recs []record, failures []events.DynamoDBBatchItemFailure) (int, bool) {
	index := map[string]int{}
	for i, r := range recs {
		if _, dup := index[r.ev.Change.SequenceNumber]; !dup {
			index[r.ev.Change.SequenceNumber] = i
		}
	}
	lowest := len(recs)
	for _, f := range failures {
		i, ok := index[f.ItemIdentifier]
		if !ok {
			return 0, false
		}
		lowest = min(lowest, i)
	}
	return lowest, true
}

// invoke calls the handler with recs as one event. A panic is a function
// error, as a crashed runtime is in Lambda.
func (s *Source) invoke(ctx context.Context, recs []record) (resp events.DynamoDBEventResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("streams: handler panicked: %v", p)
		}
	}()
	ev := events.DynamoDBEvent{Records: make([]events.DynamoDBEventRecord, len(recs))}
	for i, r := range recs {
		ev.Records[i] = r.ev
	}
	return s.Handler(ctx, ev)
}

// fail settles a failed try of sh's head batch whose records from recs on
// were not processed: retried (bisected, for a function error, when the
// trigger asks), or given up on once the retries are spent.
func (s *Source) fail(ctx context.Context, sh *shard, recs []record, retries int, functionError bool, cause error) error {
	if max := s.Trigger.MaximumRetryAttempts; max >= 0 && retries >= max {
		l := loss{invokes: retries + 1, functionError: functionError, cause: cause}
		if err := s.giveUp(ctx, sh, recs, l); err != nil {
			sh.work[0] = batch{recs: recs, retries: retries, lost: &l} // send it again, the records stay skipped
			return err
		}
		sh.work = sh.work[1:]
		return nil
	}
	if functionError && s.Trigger.Bisect && len(recs) > 1 {
		h := len(recs) / 2
		sh.work = append([]batch{{recs: recs[:h], retries: retries + 1}, {recs: recs[h:], retries: retries + 1}}, sh.work[1:]...)
		return nil
	}
	sh.work[0] = batch{recs: recs, retries: retries + 1}
	return nil
}

// giveUp sends the invocation record of recs to the on-failure queue (the
// records themselves stay in the stream, as in Lambda) and skips them.
func (s *Source) giveUp(ctx context.Context, sh *shard, recs []record, l loss) error {
	first, last := recs[0], recs[len(recs)-1]
	s.warn("stream records given up on", "shard", sh.id, "records", len(recs),
		"first", first.ev.Change.SequenceNumber, "last", last.ev.Change.SequenceNumber, "invokes", l.invokes, "error", l.cause)
	if s.OnFailureURL == "" {
		return nil
	}
	inv := Invocation{Version: "1.0", Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000Z")}
	inv.RequestContext.RequestID = requestID()
	inv.RequestContext.FunctionARN = s.FunctionARN
	inv.RequestContext.Condition = "RetryAttemptsExhausted"
	inv.RequestContext.ApproximateInvokeCount = l.invokes
	inv.ResponseContext.StatusCode = 200
	inv.ResponseContext.ExecutedVersion = "$LATEST"
	if l.functionError {
		inv.ResponseContext.FunctionError = "Unhandled"
	}
	inv.Batch = BatchInfo{
		ShardID:             sh.id,
		StartSequenceNumber: first.ev.Change.SequenceNumber,
		EndSequenceNumber:   last.ev.Change.SequenceNumber,
		FirstArrival:        first.arrived.UTC().Format(time.RFC3339),
		LastArrival:         last.arrived.UTC().Format(time.RFC3339),
		BatchSize:           len(recs),
		StreamARN:           s.StreamARN,
	}
	body, _ := json.Marshal(inv)
	_, err := s.sqs.SendMessage(context.WithoutCancel(ctx), &sqs.SendMessageInput{QueueUrl: aws.String(s.OnFailureURL), MessageBody: aws.String(string(body))})
	if err != nil {
		return fmt.Errorf("streams: on-failure record to %s: %w", s.OnFailureURL, err)
	}
	return nil
}

func (s *Source) warn(msg string, args ...any) {
	if s.Log != nil {
		s.Log.Warn(msg, append([]any{"stream", s.StreamARN}, args...)...)
	}
}
