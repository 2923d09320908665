package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/notify"
)

// The attacks on wxctl jobs: ids no sane caller uses, jobs that end before
// the watch starts, jobs that never end.

// TestAttackJobsShowOddIDs: show finds exactly the job named, whatever its
// characters (the key is SEND#<id>, nothing is parsed out of it), and an id
// the ledger does not have, or cannot have, is exit 1 with the id quoted,
// never a crash or another job.
func TestAttackJobsShowOddIDs(t *testing.T) {
	db, _, table := jobsEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	odd := []string{"order 8812 / shipped", "SEND#order-8812", "订单-8812", "tab\there", "-looks-like-a-flag", strings.Repeat("x", contract.MaxIDLength+1)}
	for _, id := range odd {
		putEntry(t, db, table, notify.Entry{JobID: id, Status: notify.Failed, Class: "invalid", Reason: "id: " + id, CreatedAt: now, UpdatedAt: now})
	}
	// The item an id of "SEND#order-8812" would collide with if the key
	// were read loosely.
	putEntry(t, db, table, notify.Entry{JobID: "order-8812", Status: notify.Delivered, Channel: notify.Template, CreatedAt: now, UpdatedAt: now})
	for _, id := range odd {
		code, out, errOut := wxctl(ctx, "jobs", "show", "-json", "--", id)
		o, err := contract.DecodeOutcome([]byte(out))
		if code != 0 || err != nil || o.JobID != id || o.Status != notify.Failed {
			t.Errorf("show %q: exit %d, %v, out %q, err %q", id, code, err, out, errOut)
		}
	}
	for _, id := range []string{"", "order-8812\n", "ORDER-8812", "order-8812 ", "SEND#", "order-88*", strings.Repeat("订", 700)} {
		code, out, errOut := wxctl(ctx, "jobs", "show", "--", id)
		if code != 1 || out != "" || !strings.Contains(errOut, "wxctl") {
			t.Errorf("show %.20q: exit %d, out %q, err %.200q", id, code, out, errOut)
		}
		if len(id) < 100 && !strings.Contains(errOut, strconv.Quote(id)) {
			t.Errorf("show %q: the error does not name the id: %q", id, errOut)
		}
	}
}

// TestAttackJobsWatchAfterTheEnd: a watch that starts after the job ended
// prints the entry once and exits at once with the status its end calls
// for. A SENT that nothing will change any more (a channel without
// delivery reports, or a send WeChat gave no msgid for) is an end; only a
// template or official-account subscribe message with its msgid waits for
// its report.
func TestAttackJobsWatchAfterTheEnd(t *testing.T) {
	db, _, table := jobsEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	reported := now.Add(time.Second)
	for _, tc := range []struct {
		entry notify.Entry
		code  int
	}{
		{notify.Entry{Status: notify.Delivered, Channel: notify.Template, MsgID: "1", Report: "success", ReportedAt: &reported}, 0},
		{notify.Entry{Status: notify.Blocked, Channel: notify.Template, MsgID: "2", Report: "failed:user block", ReportedAt: &reported}, exitNotSent},
		{notify.Entry{Status: notify.Failed, Class: "invalid", Reason: "id"}, exitNotSent},
		{notify.Entry{Status: notify.Undeliverable, Reason: "nobody"}, exitNotSent},
		{notify.Entry{Status: notify.Expired, Reason: "expired"}, exitNotSent},
		// UNKNOWN may have reached the person: not "ended without being
		// sent", which a script would answer by sending it again.
		{notify.Entry{Status: notify.Unknown, Channel: notify.Subscribe, Class: "interrupted", Reason: "subscribe: no answer"}, exitUnknown},
		{notify.Entry{Status: notify.Sent, Channel: notify.Subscribe}, 0},
		{notify.Entry{Status: notify.Sent, Channel: notify.CustomerService}, 0},
		{notify.Entry{Status: notify.Sent, Channel: notify.OASubscribe}, 0}, // bizsend gave no msgid: no report can match
		{notify.Entry{Status: notify.Sent, Channel: notify.Template, MsgID: "3"}, exitTimedOut},
		{notify.Entry{Status: notify.Sent, Channel: notify.OASubscribe, MsgID: "4"}, exitTimedOut},
	} {
		e := tc.entry
		e.JobID = "ended-" + strings.ToLower(string(e.Status)) + "-" + string(e.Channel) + e.MsgID
		e.Attempts, e.CreatedAt, e.UpdatedAt = 1, now, now
		putEntry(t, db, table, e)
		// An ended job is left at once, long before a timeout that only
		// the jobs still waiting for a report get to.
		timeout := "5s"
		if tc.code == exitTimedOut {
			timeout = "150ms"
		}
		start := time.Now()
		code, out, errOut := wxctl(ctx, "jobs", "watch", "-every", "20ms", "-timeout", timeout, e.JobID)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != tc.code || len(lines) != 1 || !strings.Contains(lines[0], string(e.Status)) {
			t.Errorf("%s: exit %d (want %d), out %q, err %q", e.JobID, code, tc.code, out, errOut)
		}
		if tc.code != exitTimedOut && time.Since(start) > 2*time.Second {
			t.Errorf("%s: the watch of an ended job took %s", e.JobID, time.Since(start))
		}
	}
}

// TestAttackJobsWatchNeverEnds: a job that keeps changing without ending
// (each retry's claim and release) does not hold the watch past its
// timeout: exit 4 on time, every change printed; a cancelled context is
// exit 4 at once.
func TestAttackJobsWatchNeverEnds(t *testing.T) {
	db, ledger, table := jobsEnv(t)
	ctx := context.Background()
	const id = "order-8812-churning"
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			if _, err := ledger.Claim(ctx, id, "u-8812", time.Now().Add(time.Minute)); err != nil {
				t.Error(err)
				return
			}
			// The lease runs out (a worker that stopped): the next claim
			// takes it over.
			if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &table, Key: ddb.Key(notify.LedgerPrefix + id),
				UpdateExpression: aws.String("SET lease_until = :past"), ExpressionAttributeValues: ddb.Item{":past": ddb.N(1)}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	start := time.Now()
	// Long enough for several claims even on a loaded machine.
	code, out, errOut := wxctl(ctx, "jobs", "watch", "-every", "10ms", "-timeout", "1500ms", id)
	close(stop)
	<-done
	took := time.Since(start)
	if code != exitTimedOut || !strings.Contains(errOut, "is still INPROGRESS after 1.5s") || took > 4*time.Second {
		t.Errorf("exit %d after %s, err %q", code, took, errOut)
	}
	if n := strings.Count(out, "INPROGRESS"); n < 2 {
		t.Errorf("%d changes printed, want each claim:\n%s", n, out)
	}

	cancelled, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if code, _, errOut := wxctl(cancelled, "jobs", "watch", "-timeout", "1m", id); code != exitTimedOut || !strings.Contains(errOut, "stopped watching") || time.Since(start) > time.Second {
		t.Errorf("cancelled: exit %d after %s, err %q", code, time.Since(start), errOut)
	}
}
