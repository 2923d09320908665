package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/streams"
)

// splitStream serves the dynamodbstreams API for a stream whose shard
// split: shard-1 is closed, shard-2 its child. moto keeps one shard per
// stream for ever, so this is the one part of the source that needs a
// stand-in. The child is listed first: the source must still read the
// parent to its end before it.
func splitStream(t *testing.T) string {
	type shard struct {
		parent string
		keys   []string
		closed bool
	}
	shards := map[string]shard{
		"shard-2": {parent: "shard-1", keys: []string{"c", "d"}},
		"shard-1": {keys: []string{"a", "b"}, closed: true},
	}
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		var out any
		switch op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDBStreams_20120810."); op {
		case "DescribeStream":
			out = map[string]any{"StreamDescription": map[string]any{"StreamArn": in["StreamArn"], "StreamStatus": "ENABLED", "Shards": []any{
				map[string]any{"ShardId": "shard-2", "ParentShardId": "shard-1", "SequenceNumberRange": map[string]any{"StartingSequenceNumber": "300"}},
				map[string]any{"ShardId": "shard-1", "SequenceNumberRange": map[string]any{"StartingSequenceNumber": "100", "EndingSequenceNumber": "200"}},
			}}}
		case "GetShardIterator":
			out = map[string]any{"ShardIterator": in["ShardId"].(string) + "/0"}
		case "GetRecords":
			id, at, _ := strings.Cut(in["ShardIterator"].(string), "/")
			from, _ := strconv.Atoi(at)
			sh := shards[id]
			var recs []any
			for i, k := range sh.keys[from:] {
				seq := fmt.Sprintf("%s%d", strings.TrimPrefix(id, "shard-"), from+i)
				recs = append(recs, map[string]any{"eventID": id + k, "eventName": "INSERT", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
					"dynamodb": map[string]any{"Keys": map[string]any{"pk": map[string]any{"S": k}}, "SequenceNumber": seq, "SizeBytes": 10, "StreamViewType": "KEYS_ONLY"}})
			}
			page := map[string]any{"Records": recs}
			if !sh.closed || len(recs) > 0 {
				page["NextShardIterator"] = fmt.Sprintf("%s/%d", id, len(sh.keys))
			}
			out = page
		default:
			http.Error(w, "unexpected "+op, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestParentShardBeforeChild(t *testing.T) {
	url := splitStream(t)
	var got []string
	s := &streams.Source{
		AWS:       aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")},
		StreamARN: "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x", Trigger: cfn.StreamTrigger{StartingPosition: "TRIM_HORIZON"},
		Handler: func(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
			for _, r := range ev.Records {
				got = append(got, r.Change.Keys["pk"].String())
			}
			return events.DynamoDBEventResponse{}, nil
		},
	}
	drain(t, s)
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("records = %v, want %v: the parent's before the child's", got, want)
	}
}
