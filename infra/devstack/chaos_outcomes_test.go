package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/contract"
	"wxbridge/shared/notify"
)

// The devstack's outcomeQueue (outcome_queue_url) gets every outcome
// event. Nothing in the devstack consumes it: it is the business's queue,
// so the story reads it itself instead of counting it as work left over.

// checkOutcomes reads the outcome events the story's jobs produced and
// holds them to the ledger: each final entry has its event, with the id
// the ledger change gives it; no event says what the ledger never did (a
// status other than the final one, or SENT before a delivery report); no
// change has two ids. Events come through the table's stream and the
// publisher a moment after the ledger write, so it waits for them, at most
// wait.
func (r *chaosRun) checkOutcomes(ctx context.Context, entries map[string]notify.Entry, wait time.Duration) *invariant {
	inv := &invariant{name: "one outcome event per ledger change"}
	url := r.s.res.queues[outcomeQueue]
	if url == "" {
		inv.violate("the devstack has no %s", outcomeQueue)
		return inv
	}
	type change struct {
		job    string
		status contract.Status
	}
	ids := map[change]map[string]bool{}
	events, stray := 0, map[string]int{}
	missing := func() int {
		n := 0
		for id, e := range entries {
			if len(ids[change{id, e.Status}]) == 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(wait)
	for empty := 0; ; {
		out, err := r.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 600})
		if err != nil {
			r.fail("read %s: %v", outcomeQueue, err)
			return inv
		}
		for _, m := range out.Messages {
			ev, err := contract.DecodeEvent([]byte(aws.ToString(m.Body)))
			if err != nil {
				inv.violate("an outcome event that does not decode: %v", err)
				continue
			}
			events++
			o := ev.Detail
			if _, ours := r.jobByID(o.JobID); !ours {
				stray[o.JobID]++
				continue
			}
			c := change{o.JobID, o.Status}
			if ids[c] == nil {
				ids[c] = map[string]bool{}
			}
			ids[c][o.EventID] = true
			if want := contract.OutcomeEventID(o.JobID, o.CreatedAt, o.Status); o.EventID != want {
				inv.violate("%s %s: event id %s is not the ledger change's (%s)", o.JobID, o.Status, o.EventID, want)
			}
			if ev.DetailType != contract.DetailType(o.Status) {
				inv.violate("%s %s: detail-type %q", o.JobID, o.Status, ev.DetailType)
			}
		}
		if len(out.Messages) > 0 {
			empty = 0
			continue
		}
		if missing() == 0 {
			if empty++; empty >= 2 {
				break
			}
			continue
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, j := range r.jobs {
		e, final := entries[j.ID]
		if !final {
			for c := range ids {
				if c.job == j.ID {
					inv.violate("%s has an outcome event (%s) but no final ledger entry%s", j.ID, c.status, r.jobTrace(j))
				}
			}
			continue
		}
		inv.checked++
		if n := len(ids[change{j.ID, e.Status}]); n != 1 {
			inv.violate("%s is %s in the ledger and has %d distinct event id(s) for it%s", j.ID, e.Status, n, r.jobTrace(j))
		}
		for c, set := range ids {
			switch {
			case c.job != j.ID || c.status == e.Status:
			case c.status == contract.Sent && e.Report != "":
				// SENT, then the delivery report changed it.
				if len(set) != 1 {
					inv.violate("%s SENT has %d distinct event ids", j.ID, len(set))
				}
			default:
				inv.violate("%s has an event for %s, which its ledger entry (%s) never passed through%s", j.ID, c.status, describeEntry(e), r.jobTrace(j))
			}
		}
	}
	for id, n := range stray {
		inv.violate("%d outcome event(s) for %s, a job the story never enqueued", n, id)
	}
	inv.extra = fmt.Sprintf("outcome events read: %d", events)
	return inv
}

// jobByID finds the story's job with id.
func (r *chaosRun) jobByID(id string) (*chaosJob, bool) {
	for _, j := range r.jobs {
		if j.ID == id {
			return j, true
		}
	}
	return nil, false
}
