package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/backfill"
	"wxbridge/shared/config"
)

func init() {
	register("followers", command{summary: "start, resume and watch the follower backfill", run: runFollowers})
}

const followersUsage = `usage: wxctl followers start  [flags]   start a backfill, or show the one running
       wxctl followers status [flags] [-run ID] [-watch] [-json]
       wxctl followers resume [flags]   queue the running backfill's unfinished jobs again
       wxctl followers list   [flags] [-json]   every official account's latest backfill

Links an official account's existing followers to wxbridge's people
(README, "Backfilling followers"). Each official account has its own
backfills: -appid names the account (default: the configuration's default
official account); two accounts' backfills run side by side. -json prints
the run item's fields (and processed and pending) for scripts; -watch
refreshes until the run ends. Flags default to $WXB_TABLE, $WXB_SYNC_QUEUE
(the stack's TableName and SyncQueueUrl outputs), $WXB_OA_APPID and the
configuration secret $WXB_APP_SECRET, which lists the official accounts.
`

// followerFlags are the flags every followers subcommand takes.
type followerFlags struct {
	table, queue, appid, appSecret string
}

func (f *followerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.table, "table", os.Getenv("WXB_TABLE"), "the wxbridge table")
	fs.StringVar(&f.queue, "queue", os.Getenv("WXB_SYNC_QUEUE"), "the sync queue URL")
	fs.StringVar(&f.appid, "appid", os.Getenv("WXB_OA_APPID"), "the official account's appid")
	fs.StringVar(&f.appSecret, "app-secret", os.Getenv("WXB_APP_SECRET"), "the configuration secret, to read the appid from")
}

// newAccounts builds the backfill's control side from flags: the official
// accounts of the configuration secret (the default first), or without
// one the account -appid names. Tests replace it.
var newAccounts = func(ctx context.Context, f followerFlags) (backfill.Accounts, error) {
	if f.table == "" || f.queue == "" {
		return backfill.Accounts{}, errors.New("followers: need -table and -queue (or WXB_TABLE and WXB_SYNC_QUEUE)")
	}
	cfg, err := loadAWS(ctx)
	if err != nil {
		return backfill.Accounts{}, err
	}
	var appids []string
	what := "no app of the configuration has this appid"
	if f.appSecret != "" {
		c, err := config.Load(ctx, secretsmanager.NewFromConfig(cfg), f.appSecret)
		if err != nil {
			return backfill.Accounts{}, err
		}
		for _, oa := range c.OfficialAccountList() {
			appids = append(appids, oa.AppID)
		}
		if k, ok := c.KindOf(f.appid); ok {
			what = "it is a " + k.Name() + " of the configuration"
		}
	}
	switch {
	case f.appid != "" && len(appids) > 0 && !slices.Contains(appids, f.appid):
		return backfill.Accounts{}, fmt.Errorf("followers: %s is not an official account of the configuration (%s): %s", f.appid, strings.Join(appids, ", "), what)
	case f.appid != "" && len(appids) == 0:
		appids = []string{f.appid}
	case len(appids) == 0:
		return backfill.Accounts{}, errors.New("followers: need the official account's appid: -appid, WXB_OA_APPID or -app-secret")
	}
	db := dynamodb.NewFromConfig(cfg)
	return backfill.NewAccounts(backfill.Syncer{
		Store: backfill.NewStore(db, f.table),
		Queue: backfill.Queue{Client: sqs.NewFromConfig(cfg), URL: f.queue},
	}, appids...), nil
}

func runFollowers(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 {
		fmt.Fprint(std.err, followersUsage)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("followers "+sub, flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() { fmt.Fprint(std.err, followersUsage); fs.PrintDefaults() }
	var f followerFlags
	f.register(fs)
	runID := fs.String("run", "", "status: the run to show (default: the running one, else the latest)")
	watch := fs.Bool("watch", false, "status: refresh until the run ends")
	every := fs.Duration("every", 2*time.Second, "status -watch: refresh interval")
	asJSON := fs.Bool("json", false, "print the run as JSON")
	if !slices.Contains([]string{"start", "status", "resume", "list"}, sub) {
		fs.Usage()
		return errUsage
	}
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	accounts, err := newAccounts(ctx, f)
	if err != nil {
		return err
	}
	if sub == "list" {
		return listRuns(ctx, std.out, accounts, *asJSON)
	}
	s, err := accounts.Syncer(f.appid)
	if err != nil {
		return err
	}
	show := func(r backfill.Run) error {
		if *asJSON {
			return printRunJSON(std.out, r)
		}
		fmt.Fprintln(std.out, progress(r))
		return nil
	}
	switch sub {
	case "start":
		r, started, err := s.Start(ctx)
		if err != nil {
			return err
		}
		if !*asJSON {
			if started {
				fmt.Fprintf(std.out, "started run %s\n", r.ID)
			} else {
				fmt.Fprintf(std.out, "run %s is already running\n", r.ID)
			}
		}
		return show(r)
	case "resume":
		r, jobs, err := s.Resume(ctx)
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(std.out, "queued %d jobs of run %s again\n", jobs, r.ID)
		}
		return show(r)
	}
	for {
		r, err := s.Status(ctx, *runID)
		if errors.Is(err, backfill.ErrNoRun) {
			return errors.New("no backfill has run yet: wxctl followers start")
		}
		if err != nil {
			return err
		}
		if err := show(r); err != nil || !*watch || !r.Active() {
			return err
		}
		select {
		case <-time.After(*every):
		case <-ctx.Done():
			return nil
		}
	}
}

// listRuns prints each official account's latest backfill, the default
// account first: one line each, or with asJSON one JSON object each
// ({"appid", "default", "run"}, run null before the first backfill).
func listRuns(ctx context.Context, w io.Writer, accounts backfill.Accounts, asJSON bool) error {
	others := slices.Sorted(maps.Keys(accounts.Syncers))
	others = slices.DeleteFunc(others, func(a string) bool { return a == accounts.Default })
	for _, appid := range append([]string{accounts.Default}, others...) {
		var run *runJSON
		r, err := accounts.Syncers[appid].Status(ctx, "")
		switch {
		case errors.Is(err, backfill.ErrNoRun):
		case err != nil:
			return fmt.Errorf("followers: %s: %w", appid, err)
		default:
			run = &runJSON{r, r.Processed(), r.Pending()}
		}
		if asJSON {
			b, err := json.Marshal(struct {
				AppID   string   `json:"appid"`
				Default bool     `json:"default"`
				Run     *runJSON `json:"run"`
			}{appid, appid == accounts.Default, run})
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(b))
			continue
		}
		name := appid
		if appid == accounts.Default {
			name += " (default)"
		}
		if run == nil {
			fmt.Fprintf(w, "%-29s no backfill has run yet\n", name)
			continue
		}
		fmt.Fprintf(w, "%-29s run %s  %s\n", name, r.ID, progress(r))
	}
	return nil
}

// runJSON is the run item's fields and the two derived ones.
type runJSON struct {
	backfill.Run
	Processed int `json:"processed"`
	Pending   int `json:"pending"`
}

func printRunJSON(w io.Writer, r backfill.Run) error {
	b, err := json.Marshal(runJSON{r, r.Processed(), r.Pending()})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// barWidth is the progress bar's length in characters.
const barWidth = 30

// progress renders a run on one line: a bar of the followers processed out
// of the account's total, then the counts.
func progress(r backfill.Run) string {
	of := max(r.Total, r.Seen)
	done := r.Processed()
	frac := 0.0
	if of > 0 {
		frac = min(float64(done)/float64(of), 1)
	}
	if r.Status == backfill.Done {
		frac = 1
	}
	filled := int(frac * barWidth)
	var b strings.Builder
	fmt.Fprintf(&b, "[%s%s] %3.0f%%  %s  %d/%d followers", strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled), frac*100, r.Status, done, of)
	fmt.Fprintf(&b, "  linked %d  waiting %d  without unionid %d  unfollowed %d  failed %d  pending %d  pages %d",
		r.Linked, r.Waiting, r.WithoutUnionID, r.Unfollowed, r.Failed, r.Pending(), r.Pages)
	if r.Retries > 0 {
		fmt.Fprintf(&b, "  retries %d", r.Retries)
	}
	if r.LastError != "" && r.Status != backfill.Done {
		fmt.Fprintf(&b, "\n  last error: %s", r.LastError)
	}
	return b.String()
}
