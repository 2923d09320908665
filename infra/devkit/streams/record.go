package streams

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// Invocation is the record Lambda sends to a stream trigger's on-failure
// destination when it gives up on a batch: where the records are in the
// stream, not the records.
type Invocation struct {
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionARN            string `json:"functionArn"`
		Condition              string `json:"condition"` // RetryAttemptsExhausted
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError,omitempty"` // "Unhandled" when the function failed
	} `json:"responseContext"`
	Version   string    `json:"version"`
	Timestamp string    `json:"timestamp"`
	Batch     BatchInfo `json:"DDBStreamBatchInfo"`
}

// BatchInfo locates the records given up on in the stream.
type BatchInfo struct {
	ShardID             string `json:"shardId"`
	StartSequenceNumber string `json:"startSequenceNumber"`
	EndSequenceNumber   string `json:"endSequenceNumber"`
	FirstArrival        string `json:"approximateArrivalOfFirstRecord"`
	LastArrival         string `json:"approximateArrivalOfLastRecord"`
	BatchSize           int    `json:"batchSize"`
	StreamARN           string `json:"streamArn"`
}

// read takes the next page of sh's records: those the filters keep go to
// sh.buf. It returns how many records the page held and how many of them
// were new.
func (s *Source) read(ctx context.Context, sh *shard) (page, fresh int, err error) {
	if sh.iter == "" {
		if err := s.position(ctx, sh); err != nil {
			return 0, 0, err
		}
	}
	out, err := s.streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: aws.String(sh.iter), Limit: aws.Int32(readLimit)})
	var expired *types.ExpiredIteratorException
	if errors.As(err, &expired) {
		// Iterators live 15 minutes: take a new one after the last record read.
		if err := s.position(ctx, sh); err != nil {
			return 0, 0, err
		}
		out, err = s.streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: aws.String(sh.iter), Limit: aws.Int32(readLimit)})
	}
	if err != nil {
		return 0, 0, fmt.Errorf("streams: get records of %s: %w", sh.id, err)
	}

	if out.NextShardIterator == nil {
		sh.closed = true
	} else {
		sh.iter = *out.NextShardIterator
	}
	for _, r := range out.Records {
		// A threaded moto_server (one given by AWS_ENDPOINT_URL;
		// infra/devkit/moto serializes requests) can number two concurrent
		// writes alike, and its next iterator starts after the highest
		// number read, so it hands such a record out again; DynamoDB never
		// does. Those are dropped here.
		if !sh.seen.add(aws.ToString(r.EventID)) {
			continue
		}
		fresh++
		rec, err := convert(r, s.StreamARN)
		if err != nil {
			return len(out.Records), fresh, err
		}
		sh.lastSeq = rec.ev.Change.SequenceNumber
		if s.keep(rec.ev) {
			sh.buf = append(sh.buf, rec)
		}
	}
	return len(out.Records), fresh, nil
}

// position gets sh an iterator: after the last record read, or at its
// starting position before the first read.
func (s *Source) position(ctx context.Context, sh *shard) error {
	in := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(s.StreamARN), ShardId: aws.String(sh.id), ShardIteratorType: sh.start}
	if sh.lastSeq != "" {
		in.ShardIteratorType, in.SequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(sh.lastSeq)
	}
	out, err := s.streams.GetShardIterator(ctx, in)
	if err != nil {
		return fmt.Errorf("streams: shard iterator of %s: %w", sh.id, err)
	}
	sh.iter = aws.ToString(out.ShardIterator)
	return nil
}

// keep applies the trigger's filters: a record passes when one of them
// matches it, or when there are none.
func (s *Source) keep(ev events.DynamoDBEventRecord) bool {
	if len(s.filters) == 0 {
		return true
	}
	b, _ := json.Marshal(ev)
	var doc map[string]any
	json.Unmarshal(b, &doc)
	for _, p := range s.filters {
		if p.match(doc) {
			return true
		}
	}
	return false
}

// convert turns a GetRecords record into the record Lambda hands over.
func convert(r types.Record, streamARN string) (record, error) {
	ev := events.DynamoDBEventRecord{
		AWSRegion: aws.ToString(r.AwsRegion), EventID: aws.ToString(r.EventID), EventName: string(r.EventName),
		EventSource: aws.ToString(r.EventSource), EventVersion: aws.ToString(r.EventVersion), EventSourceArn: streamARN,
	}
	if r.UserIdentity != nil {
		ev.UserIdentity = &events.DynamoDBUserIdentity{Type: aws.ToString(r.UserIdentity.Type), PrincipalID: aws.ToString(r.UserIdentity.PrincipalId)}
	}
	d := r.Dynamodb
	if d == nil || d.SequenceNumber == nil {
		return record{}, fmt.Errorf("streams: record %s has no sequence number", ev.EventID)
	}
	arrived := time.Now()
	if d.ApproximateCreationDateTime != nil {
		arrived = *d.ApproximateCreationDateTime
	}
	ev.Change = events.DynamoDBStreamRecord{
		ApproximateCreationDateTime: events.SecondsEpochTime{Time: arrived},
		Keys:                        image(d.Keys),
		NewImage:                    image(d.NewImage),
		OldImage:                    image(d.OldImage),
		SequenceNumber:              aws.ToString(d.SequenceNumber),
		SizeBytes:                   aws.ToInt64(d.SizeBytes),
		StreamViewType:              string(d.StreamViewType),
	}
	return record{ev: ev, arrived: arrived}, nil
}

func image(m map[string]types.AttributeValue) map[string]events.DynamoDBAttributeValue {
	if m == nil {
		return nil
	}
	out := make(map[string]events.DynamoDBAttributeValue, len(m))
	for k, v := range m {
		out[k] = attribute(v)
	}
	return out
}

func attribute(v types.AttributeValue) events.DynamoDBAttributeValue {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return events.NewStringAttribute(v.Value)
	case *types.AttributeValueMemberN:
		return events.NewNumberAttribute(v.Value)
	case *types.AttributeValueMemberB:
		return events.NewBinaryAttribute(v.Value)
	case *types.AttributeValueMemberBOOL:
		return events.NewBooleanAttribute(v.Value)
	case *types.AttributeValueMemberNULL:
		return events.NewNullAttribute()
	case *types.AttributeValueMemberSS:
		return events.NewStringSetAttribute(v.Value)
	case *types.AttributeValueMemberNS:
		return events.NewNumberSetAttribute(v.Value)
	case *types.AttributeValueMemberBS:
		return events.NewBinarySetAttribute(v.Value)
	case *types.AttributeValueMemberL:
		l := make([]events.DynamoDBAttributeValue, len(v.Value))
		for i, e := range v.Value {
			l[i] = attribute(e)
		}
		return events.NewListAttribute(l)
	case *types.AttributeValueMemberM:
		return events.NewMapAttribute(image(v.Value))
	}
	return events.NewNullAttribute() // a type this SDK version does not know
}

// seenIDs remembers the event ids of the latest records read, to drop a
// record moto hands out twice (see read).
type seenIDs struct {
	set  map[string]bool
	ring []string
	next int
}

const seenWindow = 4 * readLimit

// add records id and reports whether it is new.
func (s *seenIDs) add(id string) bool {
	if s.set[id] {
		return false
	}
	if s.set == nil {
		s.set, s.ring = map[string]bool{}, make([]string, seenWindow)
	}
	delete(s.set, s.ring[s.next])
	s.ring[s.next] = id
	s.set[id] = true
	s.next = (s.next + 1) % seenWindow
	return true
}

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
