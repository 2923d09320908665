// Package backfill is the follower backfill: it links the official
// account's followers who were there before wxbridge (and so never sent a
// follow event) to the people the identity store keeps.
//
// A run lists the followers page by page (cgi-bin/user/get, 10,000 openids
// a page) and looks them up 100 at a time (cgi-bin/user/info/batchget),
// as jobs on the sync queue: a page job fetches its page, saves it, queues
// one chunk job per 100 openids and the next page job; a chunk job makes
// one batchget call and links its followers. Progress is counted on the
// run item, exactly once per page and per chunk, so counts stay exact
// when SQS delivers a job twice or a job is retried after a crash.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/queue"
	"wxbridge/shared/wechat"
)

// Run statuses.
const (
	Running = "running"
	Done    = "done"
	Failed  = "failed" // a page could not be listed; see LastError
)

// Run is one backfill and its progress: the run item's fields.
type Run struct {
	AppID  string `dynamodbav:"appid" json:"appid"`
	ID     string `dynamodbav:"run_id" json:"run_id"`
	Status string `dynamodbav:"status" json:"status"`
	// Total is the follower count user/get reported last.
	Total int `dynamodbav:"total" json:"total"`
	// Pages is the user/get pages fetched; ListingDone is set once the last
	// one is.
	Pages       int  `dynamodbav:"pages" json:"pages"`
	ListingDone bool `dynamodbav:"listing_done" json:"listing_done"`
	// Seen is the followers listed; Chunks the chunk jobs queued for them
	// and ChunksDone those finished.
	Seen       int `dynamodbav:"seen" json:"seen"`
	Chunks     int `dynamodbav:"chunks" json:"chunks"`
	ChunksDone int `dynamodbav:"chunks_done" json:"chunks_done"`
	// What became of each follower seen whose chunk is done: exactly one of
	// these counts them.
	Linked         int `dynamodbav:"linked" json:"linked"`                   // on one person with a mini-program identity
	Waiting        int `dynamodbav:"waiting" json:"waiting"`                 // unionid known, waiting for their mini-program login
	WithoutUnionID int `dynamodbav:"without_unionid" json:"without_unionid"` // user/info gave no unionid: linked later by OAuth or open data only
	Unfollowed     int `dynamodbav:"unfollowed" json:"unfollowed"`           // listed, but no longer following at batchget
	Failed         int `dynamodbav:"failed" json:"failed"`                   // not linked: see the chunk's errors
	// Retries counts jobs put back for later (quota, busy platform, store
	// trouble); LastError is the latest reason.
	Retries    int       `dynamodbav:"retries" json:"retries"`
	LastError  string    `dynamodbav:"last_error,omitempty" json:"last_error,omitempty"`
	StartedAt  time.Time `dynamodbav:"started_at" json:"started_at"`
	UpdatedAt  time.Time `dynamodbav:"updated_at" json:"updated_at"`
	FinishedAt time.Time `dynamodbav:"finished_at,omitempty" json:"finished_at,omitzero"`
}

// Processed is the followers whose chunk is done.
func (r Run) Processed() int {
	return r.Linked + r.Waiting + r.WithoutUnionID + r.Unfollowed + r.Failed
}

// Pending is the followers listed whose chunk is not done yet.
func (r Run) Pending() int { return r.Seen - r.Processed() }

// Active reports whether the run is still going.
func (r Run) Active() bool { return r.Status == Running }

// Job is one message on the sync queue.
type Job struct {
	Kind  string `json:"kind"` // "page" or "chunk"
	AppID string `json:"appid"`
	Run   string `json:"run"`
	Page  int    `json:"page"`
	// Next is where a page job's page starts (user/get's next_openid).
	Next string `json:"next_openid,omitempty"`
	// Chunk and OpenIDs are a chunk job's: its index in the page and its
	// followers.
	Chunk   int      `json:"chunk,omitempty"`
	OpenIDs []string `json:"openids,omitempty"`
}

// Job kinds.
const (
	PageJob  = "page"
	ChunkJob = "chunk"
)

// ChunkSize is the followers one chunk job looks up: user/info/batchget's
// limit.
const ChunkSize = wechat.MaxBatchUsers

// WeChat is the platform calls a backfill makes.
type WeChat interface {
	FollowerPage(ctx context.Context, appid, next string) (wechat.FollowerPage, error)
	Followers(ctx context.Context, appid string, openids []string) ([]wechat.Follower, error)
}

// People links followers; identity.Store.LinkMany is one.
type People interface {
	LinkMany(ctx context.Context, ss []identity.Sighting) ([]identity.Result, []error)
}

// Sender queues jobs.
type Sender interface {
	Send(ctx context.Context, jobs []Job) error
}

// Syncer runs backfills for one official account.
type Syncer struct {
	AppID   string
	WeChat  WeChat
	People  People
	Store   *Store
	Queue   Sender
	Log     *slog.Logger
	Metrics *observe.Metrics
	// ChunkSize is the followers a chunk job looks up (one batchget call);
	// default, and at most, ChunkSize. Smaller chunks cost more calls and
	// jobs for the same followers: tests use them to exercise many chunks
	// with few followers.
	ChunkSize int
	// MaxAttempts is how often a job that keeps failing in a way that may
	// pass (wechat.Retryable, store trouble) is tried before its followers
	// are counted as failed (a chunk) or the run fails (a page); default
	// DefaultMaxAttempts. Keep it below the queue's maxReceiveCount, so that
	// only jobs that crash the worker reach the dead-letter queue.
	MaxAttempts int
}

// DefaultMaxAttempts covers a day of 45009 backoff (see Backoff).
const DefaultMaxAttempts = 12

// ErrNoRun reports a run id the account never had.
var ErrNoRun = errors.New("followers: no such run")

// ErrNoActiveRun reports Resume with nothing to resume.
var ErrNoActiveRun = errors.New("followers: no active run")

// Start starts a backfill, or returns the active one (started false): one
// run at a time per account.
func (s *Syncer) Start(ctx context.Context) (run Run, started bool, err error) {
	if r, err := s.Store.Active(ctx, s.AppID); err != nil || r != nil {
		if r != nil {
			return *r, false, nil
		}
		return Run{}, false, err
	}
	r, created, err := s.Store.Create(ctx, s.AppID)
	if err != nil || !created {
		return r, false, err
	}
	if err := s.Queue.Send(ctx, []Job{{Kind: PageJob, AppID: s.AppID, Run: r.ID}}); err != nil {
		return r, true, fmt.Errorf("followers: run %s started but its first job was not queued (wxctl followers resume queues it): %w", r.ID, err)
	}
	s.logger().InfoContext(ctx, "backfill", "outcome", "started", "run", r.ID)
	s.Metrics.Count("FollowerSyncRuns", "outcome", "started")
	return r, true, nil
}

// Status returns run id, or with id "" the active run, else the latest.
func (s *Syncer) Status(ctx context.Context, id string) (Run, error) {
	return s.Store.Run(ctx, s.AppID, id)
}

// Process does one job. attempt counts deliveries, from 1. It returns nil
// when the job is done (or was done before), a *queue.Retry when it should
// come back later, and another error for a job that cannot ever be done.
func (s *Syncer) Process(ctx context.Context, j Job, attempt int) error {
	if j.AppID != s.AppID || j.Run == "" || j.Page < 0 {
		return fmt.Errorf("followers: job for another account or without run")
	}
	run, err := s.Store.Run(ctx, s.AppID, j.Run)
	switch {
	case errors.Is(err, ErrNoRun):
		return fmt.Errorf("followers: job of unknown run %s", j.Run)
	case err != nil:
		return s.later(ctx, j, attempt, err)
	case !run.Active():
		s.logger().InfoContext(ctx, "job", "outcome", "run_over", "run", j.Run, "kind", j.Kind)
		return nil
	}
	switch j.Kind {
	case PageJob:
		return s.page(ctx, j, attempt)
	case ChunkJob:
		if len(j.OpenIDs) == 0 || len(j.OpenIDs) > ChunkSize {
			return fmt.Errorf("followers: chunk job with %d openids", len(j.OpenIDs))
		}
		return s.chunk(ctx, j, attempt)
	}
	return fmt.Errorf("followers: unknown job kind %q", j.Kind)
}

// logger is s.Log, or a logger that drops everything (the CLI logs
// nothing). Lines are logged with their context, which carries the request
// id and the message's attributes (observe.Logger).
func (s *Syncer) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Syncer) maxAttempts() int {
	if s.MaxAttempts > 0 {
		return s.MaxAttempts
	}
	return DefaultMaxAttempts
}

// later records why job j failed this time and asks for it to come back.
func (s *Syncer) later(ctx context.Context, j Job, attempt int, cause error) error {
	if err := s.Store.Retried(ctx, j, attempt, cause); err != nil {
		s.logger().WarnContext(ctx, "record retry", "outcome", "not_recorded", "run", j.Run, "error", err)
	}
	class := wechat.ClassOf(cause)
	s.Metrics.Count("FollowerSyncRetries", "kind", j.Kind, "class", class.String())
	s.alarm(class)
	return queue.RetryAfter(Backoff(cause, attempt), cause)
}

// alarm counts a failure someone has to act on (FollowerSyncAlarm, by
// class): the account's configuration (IP whitelist, API permission), its
// quota, or an answer nobody knows. The backfill waits for them within
// MaxAttempts, but they do not pass by themselves.
func (s *Syncer) alarm(c wechat.Class) {
	switch c {
	case wechat.ClassConfig, wechat.ClassQuota, wechat.ClassUnknown:
		s.Metrics.Count("FollowerSyncAlarm", "reason", c.String())
	}
}

// page lists one page: it saves the page's openids before queueing
// anything, so a page job run twice (a redelivery, or a crash after some
// chunk jobs left) queues the same chunks both times, then counts the page
// once.
func (s *Syncer) page(ctx context.Context, j Job, attempt int) error {
	p, err := s.Store.Page(ctx, s.AppID, j.Run, j.Page)
	if err != nil {
		return s.later(ctx, j, attempt, err)
	}
	if p != nil && p.Done {
		return nil
	}
	if p == nil {
		fp, err := s.WeChat.FollowerPage(ctx, s.AppID, j.Next)
		if err != nil {
			if wechat.Retryable(err) && attempt < s.maxAttempts() {
				return s.later(ctx, j, attempt, err)
			}
			if ferr := s.Store.Fail(ctx, s.AppID, j.Run, err); ferr != nil {
				// The run must not be left running without its listing.
				return s.later(ctx, j, attempt, ferr)
			}
			s.logger().ErrorContext(ctx, "page", "outcome", "run_failed", "run", j.Run, "page", j.Page, "error", err)
			s.Metrics.Count("FollowerSyncRuns", "outcome", "failed")
			s.alarm(wechat.ClassOf(err))
			return nil
		}
		if p, err = s.Store.SavePage(ctx, s.AppID, j.Run, j.Page, fp, chunkSize(s.ChunkSize)); err != nil {
			return s.later(ctx, j, attempt, err)
		}
	}
	chunks := p.Chunks()
	jobs := make([]Job, 0, len(chunks)+1)
	for k, ids := range chunks {
		jobs = append(jobs, Job{Kind: ChunkJob, AppID: s.AppID, Run: j.Run, Page: j.Page, Chunk: k, OpenIDs: ids})
	}
	if !p.Last {
		jobs = append(jobs, Job{Kind: PageJob, AppID: s.AppID, Run: j.Run, Page: j.Page + 1, Next: p.Next})
	}
	if err := s.Queue.Send(ctx, jobs); err != nil {
		return s.later(ctx, j, attempt, err)
	}
	counted, err := s.Store.PageDone(ctx, s.AppID, j.Run, j.Page, p, len(jobs)-boolInt(!p.Last))
	if err != nil {
		return s.later(ctx, j, attempt, err)
	}
	if counted {
		s.logger().InfoContext(ctx, "page", "outcome", "listed", "run", j.Run, "page", j.Page, "followers", len(p.OpenIDs), "last", p.Last)
	}
	if p.Last {
		s.finish(ctx, j.Run)
	}
	return nil
}

// chunk looks up and links one chunk's followers, and counts them once.
func (s *Syncer) chunk(ctx context.Context, j Job, attempt int) error {
	done, err := s.Store.ChunkDone(ctx, s.AppID, j.Run, j.Page, j.Chunk)
	if err != nil {
		return s.later(ctx, j, attempt, err)
	}
	if done {
		return nil
	}
	last := attempt >= s.maxAttempts()
	var t Tally
	// The follow states batchget answers held when it was asked: the
	// identity store lets that settle a change in the same second only if
	// no later answer or push has been recorded since.
	asked := time.Now()
	users, err := s.WeChat.Followers(ctx, s.AppID, j.OpenIDs)
	switch {
	case err != nil && wechat.Retryable(err) && !last:
		return s.later(ctx, j, attempt, err)
	case err != nil:
		// The whole chunk is lost to a permanent answer (or to one that
		// kept coming): its followers are counted as failed, with why.
		t.Failed = len(j.OpenIDs)
		t.note(fmt.Sprintf("batchget: %v", err))
		s.alarm(wechat.ClassOf(err))
	default:
		if err := s.link(ctx, j, users, asked, &t, last); err != nil {
			return s.later(ctx, j, attempt, err)
		}
	}
	counted, err := s.Store.CommitChunk(ctx, s.AppID, j.Run, j.Page, j.Chunk, t)
	if err != nil {
		return s.later(ctx, j, attempt, err)
	}
	if counted {
		s.Metrics.Count("FollowerSyncChunks", "outcome", t.outcome())
		if t.Failed > 0 {
			s.logger().WarnContext(ctx, "chunk", "outcome", "failures", "run", j.Run, "page", j.Page, "chunk", j.Chunk, "failed", t.Failed, "errors", t.Errors)
		}
	}
	s.finish(ctx, j.Run)
	return nil
}

// link links users and tallies what each became. A failure that may pass
// (store trouble, a lost race) fails the whole chunk for a retry unless
// this is its last attempt: linking again what was linked changes nothing.
func (s *Syncer) link(ctx context.Context, j Job, users []wechat.Follower, asked time.Time, t *Tally, last bool) error {
	var ss []identity.Sighting
	for _, u := range users {
		if !u.Follows() {
			// Unfollowed since the listing: user/info says nothing else, and
			// the unsubscribe push has told (or will tell) the rest.
			t.Unfollowed++
			continue
		}
		ss = append(ss, identity.Sighting{
			OA: &identity.OASighting{AppID: s.AppID, OpenID: u.OpenID, Follow: &identity.Follow{
				Subscribed: true, At: time.Unix(u.SubscribeTime, 0).UTC(), Scene: u.SubscribeScene, Seen: asked,
			}},
			UnionID: u.UnionID,
			Source:  identity.SourceBackfill,
		})
	}
	if len(ss) == 0 {
		return nil
	}
	results, errs := s.People.LinkMany(ctx, ss)
	for _, err := range errs {
		if err != nil && !identity.Refused(err) && !last {
			return err
		}
	}
	for i, res := range results {
		if err := errs[i]; err != nil {
			t.Failed++
			t.note(fmt.Sprintf("%s: %v", ss[i].OA.OpenID, err))
			continue
		}
		switch {
		case len(res.Person.MP) > 0:
			t.Linked++
		case ss[i].UnionID != "" || res.Person.UnionID != "":
			t.Waiting++
		default:
			t.WithoutUnionID++
		}
		if res.Outcome != identity.Unchanged {
			s.Metrics.Count("Links", "source", "backfill", "outcome", string(res.Outcome))
		}
	}
	return nil
}

// finish ends the run once the listing is over and every chunk is done.
func (s *Syncer) finish(ctx context.Context, id string) {
	ended, err := s.Store.Finish(ctx, s.AppID, id)
	if err != nil {
		// The next job to finish tries again; the counts are already right.
		s.logger().WarnContext(ctx, "finish run", "outcome", "not_finished", "run", id, "error", err)
		return
	}
	if ended {
		s.logger().InfoContext(ctx, "backfill", "outcome", "done", "run", id)
		s.Metrics.Count("FollowerSyncRuns", "outcome", "done")
	}
}

// Resume queues again every job of the active run that is not done: the
// next page to list, and the chunks of listed pages not linked yet. Jobs
// still on the queue meanwhile do no harm: each is done once. It is for
// runs whose jobs were lost (a purged queue, jobs moved to the dead-letter
// queue).
func (s *Syncer) Resume(ctx context.Context) (Run, int, error) {
	r, err := s.Store.Active(ctx, s.AppID)
	if err != nil {
		return Run{}, 0, err
	}
	if r == nil {
		return Run{}, 0, ErrNoActiveRun
	}
	jobs, err := s.Store.Unfinished(ctx, s.AppID, r.ID)
	if err != nil {
		return *r, 0, err
	}
	if err := s.Queue.Send(ctx, jobs); err != nil {
		return *r, 0, err
	}
	s.logger().InfoContext(ctx, "backfill", "outcome", "resumed", "run", r.ID, "jobs", len(jobs))
	return *r, len(jobs), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
