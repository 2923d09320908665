package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/notify"
)

// jobsEnv gives a test its own table on moto, named by $WXB_TABLE, and
// the ledger in it.
func jobsEnv(t *testing.T) (*dynamodb.Client, *notify.Ledger, string) {
	t.Helper()
	table, _ := followersEnv(t)
	t.Setenv("WXB_TABLE", table)
	cfg, err := awsenv.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	return db, notify.NewLedger(db, table), table
}

// putEntry writes e as the ledger stores it: how a test gets an entry the
// ledger's exported writes cannot make (a failure with its reasons).
func putEntry(t *testing.T, db *dynamodb.Client, table string, e notify.Entry) {
	t.Helper()
	item, err := attributevalue.MarshalMap(e)
	if err != nil {
		t.Fatal(err)
	}
	item["pk"] = ddb.S(notify.LedgerPrefix + e.JobID)
	if _, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &table, Item: item}); err != nil {
		t.Fatal(err)
	}
}

// wxctl runs one invocation and returns its exit status and output.
func wxctl(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(ctx, args, stdio{strings.NewReader(""), &out, &errOut})
	return code, out.String(), errOut.String()
}

// failedJob is a job both channels of which WeChat refused.
func failedJob(id string, at time.Time) notify.Entry {
	return notify.Entry{
		JobID: id, Status: notify.Failed, UID: "u-8812", Channel: notify.Template, ErrCode: 43004, RID: "65f1a2b3-0c4d", Class: "user",
		Reason: "template: the person does not follow the official account", Attempts: 2,
		To: &contract.Recipient{ExternalID: "8812"},
		Tried: []contract.Try{
			{Channel: notify.Subscribe, Outcome: contract.TryFailed, ErrCode: 43101, RID: "65f1a2b3-0c4c", Class: "user", Reason: "subscribe: the person has not consented"},
			{Channel: notify.Template, Outcome: contract.TryFailed, ErrCode: 43004, RID: "65f1a2b3-0c4d", Class: "user", Reason: "template: the person does not follow the official account"},
		},
		CreatedAt: at, UpdatedAt: at.Add(1500 * time.Millisecond),
	}
}

func TestJobsShow(t *testing.T) {
	db, ledger, table := jobsEnv(t)
	ctx := context.Background()
	created := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	putEntry(t, db, table, failedJob("order-8812-failed", created))
	if _, err := ledger.Claim(ctx, "order-8812-claimed", "u-8812", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	t.Run("a failure shows each channel's reason", func(t *testing.T) {
		code, out, errOut := wxctl(ctx, "jobs", "show", "order-8812-failed")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"job       order-8812-failed", "status    FAILED (final)", "errcode   43004", "class     user", "attempts  2",
			"tried     subscribe  failed   errcode 43101  class user  rid 65f1a2b3-0c4c  reason: subscribe: the person has not consented",
			"          template   failed   errcode 43004", "to        external_id=8812", "uid       u-8812", "created   2026-03-01"} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("json is the outcome event's detail", func(t *testing.T) {
		code, out, errOut := wxctl(ctx, "jobs", "show", "-json", "order-8812-failed")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		o, err := contract.DecodeOutcome([]byte(out))
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		want := failedJob("order-8812-failed", created)
		if o.EventID != contract.OutcomeEventID(want.JobID, created, notify.Failed) || o.Status != notify.Failed || !o.Final ||
			o.Attempts != 2 || len(o.Tried) != 2 || o.Tried[0] != want.Tried[0] || o.To == nil || o.To.ExternalID != "8812" ||
			!o.CreatedAt.Equal(created) || !o.At.Equal(want.UpdatedAt) {
			t.Errorf("detail = %+v", o)
		}
	})
	t.Run("flags after the id; an INPROGRESS job has no event id", func(t *testing.T) {
		code, out, errOut := wxctl(ctx, "jobs", "show", "order-8812-claimed", "-json")
		var o contract.Outcome
		if code != 0 || json.Unmarshal([]byte(out), &o) != nil {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
		if o.Status != notify.InProgress || o.EventID != "" || o.Final || o.Attempts != 1 || o.Version != contract.OutcomeVersion {
			t.Errorf("detail = %+v", o)
		}
		if code, out, _ := wxctl(ctx, "jobs", "show", "order-8812-claimed"); code != 0 || !strings.Contains(out, "held until") {
			t.Errorf("show: %d %s", code, out)
		}
	})
	t.Run("an unknown id fails", func(t *testing.T) {
		code, out, errOut := wxctl(ctx, "jobs", "show", "order-nope")
		if code != 1 || out != "" || !strings.Contains(errOut, `job "order-nope" is not in the send ledger of `+table) {
			t.Errorf("exit %d, out %q, err %q", code, out, errOut)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"jobs"}, {"jobs", "list"}, {"jobs", "show"}, {"jobs", "show", "a", "b"}, {"jobs", "show", "-table", "", "a"}, {"jobs", "watch", "-every", "0s", "a"}} {
			if code, _, _ := wxctl(ctx, args...); code != 2 {
				t.Errorf("%q: exit %d, want 2", args, code)
			}
		}
	})
}

// syncBuffer is a bytes.Buffer that a running watch writes while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until out holds want, or fails the test.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the watch's output:\n%s", want, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJobsWatch(t *testing.T) {
	db, ledger, table := jobsEnv(t)
	ctx := context.Background()

	t.Run("follows a job from the queue to its delivery", func(t *testing.T) {
		const id = "order-8812-delivered"
		var out, errOut syncBuffer
		code := make(chan int, 1)
		go func() {
			code <- run(ctx, []string{"jobs", "watch", "-every", "20ms", "-timeout", "30s", id}, stdio{strings.NewReader(""), &out, &errOut})
		}()
		waitFor(t, &errOut, "not in the send ledger yet")
		c, err := ledger.Claim(ctx, id, "u-8812", time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, &out, "INPROGRESS")
		if err := ledger.SettleSent(ctx, id, c, notify.Template, "wxoa-jobs", "2000000001"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, &out, "SENT  template  attempt 1  msgid 2000000001")
		select {
		case got := <-code:
			t.Fatalf("watch ended at SENT (exit %d): %s", got, out.String())
		default:
		}
		if ok, err := ledger.Report(ctx, "wxoa-jobs", "2000000001", "success"); !ok || err != nil {
			t.Fatalf("report: %v %v", ok, err)
		}
		select {
		case got := <-code:
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if got != 0 || len(lines) != 3 || !strings.Contains(lines[0], "INPROGRESS") || !strings.Contains(lines[1], "SENT") ||
				!strings.Contains(lines[2], "DELIVERED  template  attempt 1  msgid 2000000001  report success") {
				t.Errorf("exit %d, output:\n%s", got, out.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch did not end at DELIVERED:\n%s", out.String())
		}
	})

	t.Run("a failure ends it with status 3 and the reasons", func(t *testing.T) {
		putEntry(t, db, table, failedJob("order-8812-failed", time.Now()))
		code, out, errOut := wxctl(ctx, "jobs", "watch", "order-8812-failed")
		if code != exitNotSent || !strings.Contains(out, "FAILED  template  attempt 2") || !strings.Contains(out, "tried subscribe  failed   errcode 43101") ||
			!strings.Contains(errOut, "job order-8812-failed ended FAILED without being sent") {
			t.Errorf("exit %d, out %q, err %q", code, out, errOut)
		}
	})

	t.Run("a subscribe message ends at SENT, final; json prints each change", func(t *testing.T) {
		now := time.Now()
		putEntry(t, db, table, notify.Entry{JobID: "order-8812-sub", Status: notify.Sent, Channel: notify.Subscribe, Attempts: 1, CreatedAt: now, UpdatedAt: now})
		code, out, errOut := wxctl(ctx, "jobs", "watch", "-json", "order-8812-sub")
		o, err := contract.DecodeOutcome([]byte(out))
		if code != 0 || err != nil || o.Status != notify.Sent || !o.Final || o.EventID != contract.OutcomeEventID("order-8812-sub", now, notify.Sent) {
			t.Errorf("exit %d, %v, out %q, err %q", code, err, out, errOut)
		}
	})

	t.Run("times out", func(t *testing.T) {
		if _, err := ledger.Claim(ctx, "order-8812-stuck", "u-8812", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ id, err string }{
			{"order-8812-stuck", "job order-8812-stuck is still INPROGRESS after 150ms"},
			{"order-8812-never", "job order-8812-never did not reach the send ledger within 150ms"},
		} {
			start := time.Now()
			code, _, errOut := wxctl(ctx, "jobs", "watch", "-every", "50ms", "-timeout", "150ms", tc.id)
			if code != exitTimedOut || !strings.Contains(errOut, tc.err) || time.Since(start) > 5*time.Second {
				t.Errorf("%s: exit %d after %s, err %q", tc.id, code, time.Since(start), errOut)
			}
		}
	})
}
