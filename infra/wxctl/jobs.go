package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/contract"
	"wxbridge/shared/notify"
)

func init() {
	register("jobs", command{summary: "show or watch one notification job's outcome in the send ledger", run: runJobs})
}

const jobsUsage = `usage: wxctl jobs show  [-table NAME] [-json] ID
       wxctl jobs watch [-table NAME] [-json] [-timeout 5m] [-every 1s] [-sent] ID

show prints where job ID stands in the send ledger: status, channel,
msgid, attempts, each channel tried with WeChat's answer, and the times.
-json prints it in the shape of an outcome event's detail
(schemas/outcome-event.schema.json; an INPROGRESS job has no event_id).

watch prints each change of the job until it is final (DELIVERED, FAILED,
BLOCKED, UNDELIVERABLE, EXPIRED or UNKNOWN), or SENT on the subscribe or
customer_service channel, of which WeChat reports no delivery. -sent stops
at SENT on any channel. A job not yet in the ledger (still on the queue) is
waited for.
Exit status: 0 delivered or sent, 3 ended without being sent, 4 timed out,
5 UNKNOWN (it may have been sent: do not send it again), 1 on errors (an
unknown id for show), 2 on usage errors.

The table defaults to $WXB_TABLE (the stack's TableName output).
`

// Exit statuses of jobs watch, beyond 0 (delivered or sent).
const (
	exitNotSent  = 3
	exitTimedOut = 4
	// exitUnknown: the person may or may not have the message; a script
	// that resent on exitNotSent must not resend it.
	exitUnknown = 5
)

func runJobs(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "watch") {
		fmt.Fprint(std.err, jobsUsage)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("jobs "+sub, flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() { fmt.Fprint(std.err, jobsUsage); fs.PrintDefaults() }
	table := fs.String("table", os.Getenv("WXB_TABLE"), "the wxbridge table")
	asJSON := fs.Bool("json", false, "print the outcome-event detail as JSON (watch: one line per change)")
	timeout := fs.Duration("timeout", 5*time.Minute, "watch: give up after this long")
	every := fs.Duration("every", time.Second, "watch: how often to read the ledger")
	untilSent := fs.Bool("sent", false, "watch: stop at SENT, without waiting for the delivery report")
	ids, err := parseInterleaved(fs, args[1:])
	if err != nil || len(ids) != 1 || *every <= 0 {
		if err == nil {
			fs.Usage()
		}
		return errUsage
	}
	if *table == "" {
		fmt.Fprintln(std.err, "wxctl jobs: no table: pass -table or set WXB_TABLE")
		return errUsage
	}
	cfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	ledger := notify.NewLedger(dynamodb.NewFromConfig(cfg), *table)
	p := printer{w: std.out, json: *asJSON}
	if sub == "show" {
		e, ok, err := ledger.Get(ctx, ids[0])
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("job %q is not in the send ledger of %s: not picked up by a send worker yet (wxctl jobs watch waits), "+
				"never enqueued, or its entry expired (%s after its last write)", ids[0], *table, retention())
		}
		return p.show(e)
	}
	return watch(ctx, ledger, ids[0], watchOptions{timeout: *timeout, every: *every, untilSent: *untilSent}, p, std.err)
}

// parseInterleaved parses flags placed before and after the positional
// arguments (wxctl jobs show ID -json), which flag.Parse alone stops at.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// retention is how long the ledger keeps an entry after its last write.
func retention() time.Duration { return notify.NewLedger(nil, "").Retention }

type watchOptions struct {
	timeout, every time.Duration
	untilSent      bool
}

// watch prints job id's entry each time it changes, until it settles, the
// timeout passes or ctx ends.
func watch(ctx context.Context, ledger *notify.Ledger, id string, o watchOptions, p printer, errOut io.Writer) error {
	deadline := time.Now().Add(o.timeout)
	var last notify.Entry
	seen, waiting := false, false
	for {
		e, ok, err := ledger.Get(ctx, id)
		if err != nil && ctx.Err() == nil {
			return err
		}
		switch {
		case err != nil:
		case !ok && !seen && !waiting:
			fmt.Fprintf(errOut, "wxctl: job %q is not in the send ledger yet; waiting for a send worker to take it\n", id)
			waiting = true
		case ok && (!seen || changed(last, e)):
			if err := p.change(e); err != nil {
				return err
			}
			last, seen = e, true
		}
		if seen {
			if code, done := ended(last, o.untilSent); done {
				if code == 0 {
					return nil
				}
				if code == exitUnknown {
					return exitError{code: code, msg: fmt.Sprintf("job %s ended UNKNOWN: it may or may not have been sent (%s)", id, last.Reason)}
				}
				return exitError{code: code, msg: fmt.Sprintf("job %s ended %s without being sent", id, last.Status)}
			}
		}
		wait := min(o.every, time.Until(deadline))
		if wait <= 0 {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return exitError{code: exitTimedOut, msg: fmt.Sprintf("job %s: stopped watching (%v)", id, context.Cause(ctx))}
		}
	}
	switch {
	case !seen:
		return exitError{code: exitTimedOut, msg: fmt.Sprintf("job %s did not reach the send ledger within %s: is it on the send queue, and are the send workers running?", id, o.timeout)}
	case last.Status == notify.Sent:
		return exitError{code: exitTimedOut, msg: fmt.Sprintf("job %s is SENT; WeChat reported no delivery within %s (-sent stops at SENT)", id, o.timeout)}
	}
	return exitError{code: exitTimedOut, msg: fmt.Sprintf("job %s is still %s after %s", id, last.Status, o.timeout)}
}

// changed reports whether b says something a differs on. Every ledger
// write sets updated_at, except a fallback's note of the channel it tries
// (trying).
func changed(a, b notify.Entry) bool {
	return !a.UpdatedAt.Equal(b.UpdatedAt) || a.Status != b.Status || a.Attempts != b.Attempts || a.Trying != b.Trying
}

// ended reports whether e is where watching stops, and with what exit
// status: 0 for delivered or sent, exitUnknown for UNKNOWN, exitNotSent
// for the other final states.
func ended(e notify.Entry, untilSent bool) (int, bool) {
	switch {
	case e.Status == notify.Delivered:
		return 0, true
	// No delivery report follows a mini-program subscribe message or a
	// customer-service message, nor one the ledger could not match (sent
	// without a msgid): SENT is their end.
	case e.Status == notify.Sent:
		return 0, untilSent || !awaitsReport(e)
	case e.Status == notify.Unknown:
		return exitUnknown, true
	case e.Status.Final():
		return exitNotSent, true
	}
	return 0, false
}

// awaitsReport reports whether a SENT entry may still change: WeChat
// reports the delivery of template messages and official-account
// subscribe notifications, and the ledger matches a report by its msgid.
func awaitsReport(e notify.Entry) bool {
	return contract.AwaitsReport(e.Channel, e.MsgID)
}

// printer writes entries as text or as outcome-event details.
type printer struct {
	w    io.Writer
	json bool
}

func (p printer) show(e notify.Entry) error {
	if p.json {
		return p.outcome(e)
	}
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	status := string(e.Status)
	if e.Status.Final() {
		status += " (final)"
	} else if e.Status == notify.Sent && awaitsReport(e) {
		status += " (waiting for WeChat's delivery report)"
	}
	row("job", e.JobID)
	row("status", status)
	row("channel", string(e.Channel))
	row("msgid", e.MsgID)
	row("errcode", nonzero(e.ErrCode))
	row("rid", e.RID)
	row("class", e.Class)
	row("reason", e.Reason)
	row("report", e.Report)
	row("attempts", fmt.Sprint(e.Attempts))
	for i, t := range e.Tried {
		k := ""
		if i == 0 {
			k = "tried"
		}
		row(k, tryText(t))
	}
	if e.Status == notify.InProgress {
		if e.Trying != "" {
			row("uncertain", fmt.Sprintf("an attempt on %s may have sent it (since %s); no other channel will be tried", e.Trying, stamp(time.UnixMilli(e.TriedAt))))
		}
		if e.LeaseUntil > 0 {
			row("held until", stamp(time.UnixMilli(e.LeaseUntil)))
		}
	}
	row("to", recipientText(e.To))
	row("uid", e.UID)
	row("created", stamp(e.CreatedAt))
	row("updated", stamp(e.UpdatedAt))
	if e.ReportedAt != nil {
		row("reported", stamp(*e.ReportedAt))
	}
	return tw.Flush()
}

// change prints one line for a change the watch saw.
func (p printer) change(e notify.Entry) error {
	if p.json {
		return p.outcome(e)
	}
	parts := []string{stamp(e.UpdatedAt), string(e.Status)}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+v)
		}
	}
	add("", string(e.Channel))
	add("attempt ", nonzero(e.Attempts))
	add("msgid ", e.MsgID)
	add("errcode ", nonzero(e.ErrCode))
	add("class ", e.Class)
	add("rid ", e.RID)
	add("report ", e.Report)
	add("reason: ", e.Reason)
	if e.Status.Final() && e.Status != notify.Delivered {
		for _, t := range e.Tried {
			add("tried ", tryText(t))
		}
	}
	_, err := fmt.Fprintln(p.w, strings.Join(parts, "  "))
	return err
}

// outcome prints e as an outcome event's detail: exactly the event the
// ledger's change to e's status gave, or for INPROGRESS, which no event
// carries, the same shape without an event id.
func (p printer) outcome(e notify.Entry) error {
	o, ok := notify.Outcome(notify.Entry{}, e)
	if !ok {
		o = contract.Outcome{
			Version: contract.OutcomeVersion, JobID: e.JobID, Status: e.Status, Channel: e.Channel, MsgID: e.MsgID,
			ErrCode: e.ErrCode, RID: e.RID, Class: e.Class, Reason: e.Reason, Tried: e.Tried, Attempts: e.Attempts,
			Report: e.Report, To: e.To, UID: e.UID, CreatedAt: e.CreatedAt, At: e.UpdatedAt, ReportedAt: e.ReportedAt,
		}
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(p.w, string(b))
	return err
}

func tryText(t contract.Try) string {
	// Padded to the longest channel (subscribe) and outcome (skipped), so
	// that the lines of show's list align.
	parts := []string{fmt.Sprintf("%-9s  %-7s", t.Channel, t.Outcome)}
	if t.ErrCode != 0 {
		parts = append(parts, fmt.Sprintf("errcode %d", t.ErrCode))
	}
	if t.Class != "" {
		parts = append(parts, "class "+t.Class)
	}
	if t.RID != "" {
		parts = append(parts, "rid "+t.RID)
	}
	if t.Reason != "" {
		parts = append(parts, "reason: "+t.Reason)
	}
	return strings.TrimSpace(strings.Join(parts, "  "))
}

func recipientText(r *contract.Recipient) string {
	if r == nil {
		return ""
	}
	var parts []string
	for _, f := range []struct{ k, v string }{{"uid", r.UID}, {"external_id", r.ExternalID}, {"unionid", r.UnionID}, {"oa_openid", r.OAOpenID}, {"mp_openid", r.MPOpenID}} {
		if f.v != "" {
			parts = append(parts, f.k+"="+f.v)
		}
	}
	return strings.Join(parts, " ")
}

func nonzero(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05.000 MST")
}
