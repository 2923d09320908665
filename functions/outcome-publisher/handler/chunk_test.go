package handler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"wxbridge/shared/contract"
)

// A PutEvents call takes at most 10 entries of at most 256 KB in all,
// counted as EventBridge counts them; chunk stops before a record that
// fails by itself and before a second change of the same job.
func TestChunk(t *testing.T) {
	ev := func(job string, size int) event {
		return event{outcome: contract.Outcome{JobID: job}, size: size}
	}
	many := func(n, size int) []event {
		var out []event
		for i := range n {
			out = append(out, ev(fmt.Sprint("job-", i), size))
		}
		return out
	}
	bad := event{failure: reasonUnreadable}
	for _, tc := range []struct {
		name    string
		pending []event
		want    int
	}{
		{"all_small", many(3, 100), 3},
		{"ten_at_most", many(25, 100), MaxEntries},
		{"size_limit", many(5, 100*1024), 2},
		{"exactly_the_limit", many(2, MaxRequestSize/2), 2},
		{"up_to_a_failing_record", append(many(2, 100), bad, ev("x", 1)), 2},
		{"same_job_twice", []event{ev("a", 1), ev("b", 1), ev("a", 1), ev("c", 1)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := chunk(tc.pending); got != tc.want {
				t.Fatalf("chunk = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestEntrySize(t *testing.T) {
	e := ebtypes.PutEventsRequestEntry{
		Source: aws.String("wxbridge"), DetailType: aws.String("Notification Sent"), Detail: aws.String(`{"a":"é"}`),
		Time: aws.Time(time.Unix(0, 0)), Resources: []string{"r1"}, EventBusName: aws.String("not-counted"),
	}
	// 8 + 17 + 10 (é is 2 bytes) + 14 + 2
	if got := entrySize(e); got != 51 {
		t.Fatalf("entrySize = %d, want 51", got)
	}
	if got := entrySize(ebtypes.PutEventsRequestEntry{Detail: aws.String(strings.Repeat("x", 10))}); got != 10 {
		t.Fatalf("entrySize without time = %d, want 10", got)
	}
}
