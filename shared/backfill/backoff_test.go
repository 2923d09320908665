package backfill

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"wxbridge/shared/ddb"
	"wxbridge/shared/queue"
	"wxbridge/shared/wechat"
)

func TestBackoff(t *testing.T) {
	quota := &wechat.Error{API: "/cgi-bin/user/info/batchget", Code: 45009}
	frequent := &wechat.Error{API: "/cgi-bin/user/info/batchget", Code: 45011}
	busy := &wechat.Error{API: "/cgi-bin/user/get", Code: -1}
	notAuthorised := &wechat.Error{API: "/cgi-bin/user/info/batchget", Code: 48001}
	cases := []struct {
		err      error
		attempt  int
		min, max time.Duration
	}{
		{quota, 1, 11*time.Minute + 15*time.Second, 15 * time.Minute},
		{quota, 3, 45 * time.Minute, time.Hour},
		{quota, 12, queue.MaxDelay * 3 / 4, queue.MaxDelay}, // three quarters to all of SQS's longest
		{fmt.Errorf("chunk: %w", frequent), 1, 45 * time.Second, time.Minute},
		{frequent, 9, 11 * time.Minute, 15 * time.Minute},
		{busy, 1, 3750 * time.Millisecond, 5 * time.Second},
		{busy, 2, 7500 * time.Millisecond, 10 * time.Second},
		{errors.New("dynamodb: throttled"), 30, 225 * time.Second, 5 * time.Minute},
		{notAuthorised, 1, 3750 * time.Millisecond, 5 * time.Second},
	}
	for _, c := range cases {
		for range 20 {
			if d := Backoff(c.err, c.attempt); d < c.min || d > c.max {
				t.Errorf("Backoff(%v, %d) = %s, want %s to %s", c.err, c.attempt, d, c.min, c.max)
			}
		}
	}
}

func TestRunCounts(t *testing.T) {
	r := Run{Seen: 1000, Linked: 10, Waiting: 20, WithoutUnionID: 30, Unfollowed: 40, Failed: 50}
	if r.Processed() != 150 || r.Pending() != 850 {
		t.Errorf("processed %d, pending %d", r.Processed(), r.Pending())
	}
}

func TestUpdateExpression(t *testing.T) {
	u := newUpdate().set("status", ddb.S("done")).add("seen", 3).remove("active").
		when("%s = %s AND %s = %s", "status", ddb.S(Running), "chunks_done", "chunks")
	got := u.on("T", "SYNC#x")
	if want := "SET #status = :v0 ADD #seen :v1 REMOVE #active"; *got.UpdateExpression != want {
		t.Errorf("update %q, want %q", *got.UpdateExpression, want)
	}
	if want := "#status = :v2 AND #chunks_done = #chunks"; *got.ConditionExpression != want {
		t.Errorf("condition %q, want %q", *got.ConditionExpression, want)
	}
	if len(got.ExpressionAttributeNames) != 5 || len(got.ExpressionAttributeValues) != 3 {
		t.Errorf("names %v values %v", got.ExpressionAttributeNames, got.ExpressionAttributeValues)
	}
}
