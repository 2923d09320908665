package notify

import "sync"

// Unrecorded keeps, in the worker's memory, what a job's attempt learnt but
// could not write to the ledger (DynamoDB failed every try): the outcome of
// a send, or the release of a job WeChat's answer says was not sent. The
// job's message stays on the queue; its next delivery to this worker writes
// what is kept here instead of sending again. A delivery that lands on
// another worker finds the job claimed and, once the lease has run out,
// takes it over as a job whose last attempt may have sent (never sending
// on another channel). Safe for concurrent use; the zero value is not: use
// NewUnrecorded.
type Unrecorded struct {
	mu   sync.Mutex
	jobs map[string]unrecorded
}

// unrecorded is one pending ledger write: Settle(claim, r), or with
// release set, the release of the claim (uncertain: keeping trying).
type unrecorded struct {
	uid       string
	claim     Claim
	r         result
	release   bool
	uncertain bool
}

// status is the ledger status w records (INPROGRESS for a release).
func (w unrecorded) status() Status {
	if w.release {
		return InProgress
	}
	return w.r.Status
}

// NewUnrecorded returns an empty Unrecorded.
func NewUnrecorded() *Unrecorded { return &Unrecorded{jobs: map[string]unrecorded{}} }

// keep remembers w for job id (nil-safe: without an Unrecorded, nothing is
// kept and the next delivery takes the job over).
func (u *Unrecorded) keep(jobID string, w unrecorded) {
	if u == nil {
		return
	}
	u.mu.Lock()
	u.jobs[jobID] = w
	u.mu.Unlock()
}

// take removes and returns what is kept for job id: of two deliveries of
// the same job at once, one gets it.
func (u *Unrecorded) take(jobID string) (unrecorded, bool) {
	if u == nil {
		return unrecorded{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	w, ok := u.jobs[jobID]
	delete(u.jobs, jobID)
	return w, ok
}

// Len is how many jobs have an outcome waiting to be written.
func (u *Unrecorded) Len() int {
	if u == nil {
		return 0
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.jobs)
}
