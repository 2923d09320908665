// Package idempotency makes "do this once" explicit: a caller claims a key
// with one conditional write, does the work, and marks it done; a retry of
// the same key finds it done (or still in flight) and does nothing. A claim
// is a lease (shared/ddb), so work whose worker died can be claimed again
// once the lease runs out, and every record expires by TTL.
//
// A key may also stand for a state that alternates, such as a follower's
// follow state within one second (follow, unfollow, follow again): the
// claim then names the outcome it asks for, the record keeps the outcome the
// key settled on, and a claim for that outcome is a duplicate while a claim
// for another one is not (it is flagged Again: it may be a late copy of an
// earlier delivery, so the caller settles it from the authority).
package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"wxbridge/shared/ddb"
)

// DB is the part of the DynamoDB API the store uses.
type DB = ddb.LeaseDeleteAPI

// State is what a claim found.
type State int

// Claim outcomes.
const (
	Claimed  State = iota // the caller owns the key now: do the work
	Done                  // the work was done (or durably handed on) already
	InFlight              // someone else holds an unexpired claim
)

func (s State) String() string {
	return [...]string{"claimed", "done", "in_flight"}[s]
}

// Item attributes of a record, besides the lease's.
const (
	attrStatus  = "status"  // "claimed" or "done"
	attrOutcome = "outcome" // the outcome asked for, then settled on
	attrHow     = "how"     // how the work was done ("handled", "queued")
	attrTTL     = "ttl"

	statusClaimed = "claimed"
	statusDone    = "done"
)

// Store keeps claims in a DynamoDB table, as items "IDEM#<scope>#<key>".
type Store struct {
	db    DB
	table string
	scope string
	// Retention is how long a record is kept (TTL) after it is written.
	Retention time.Duration
	Now       func() time.Time
}

// NewStore returns a store for one scope (for example "push").
func NewStore(db DB, table, scope string) *Store {
	return &Store{db: db, table: table, scope: scope, Retention: 24 * time.Hour, Now: time.Now}
}

// Claim is the answer to a claim: its State, and for a Claimed key the
// lease to Complete or Release.
type Claim struct {
	State State
	// Again reports a key claimed although it had settled (or been
	// claimed) on another outcome: this delivery may be a late copy of an
	// earlier one, out of order with what happened since.
	Again bool

	store   *Store
	lease   *ddb.Lease
	outcome string
	before  ddb.Item
	unknown bool // what the key held before this claim is not known
}

// Claim takes key for lease, asking for outcome ("" for a key whose work is
// simply done once). It costs one conditional write whatever the answer: a
// failed condition returns the record as it is, which tells a key settled
// on outcome (Done) from one in flight.
func (s *Store) Claim(ctx context.Context, key, outcome string, lease time.Duration) (*Claim, error) {
	now := s.Now()
	set := "#s = :claimed, #t = :ttl"
	names := map[string]string{"#s": attrStatus, "#t": attrTTL}
	values := ddb.Item{":claimed": ddb.S(statusClaimed), ":done": ddb.S(statusDone), ":ttl": ddb.TTL(now.Add(s.Retention))}
	// A done record is free again only for another outcome.
	while := "#s <> :done"
	if outcome != "" {
		set += ", #o = :outcome"
		names["#o"] = attrOutcome
		values[":outcome"] = ddb.S(outcome)
		while = "#s <> :done OR attribute_not_exists(#o) OR #o <> :outcome"
	}
	l, cur, err := ddb.Taken(ctx, s.db, ddb.Take{
		Table: s.table, Key: s.key(key), Until: now.Add(lease), Now: now,
		While: while, Set: set, Names: names, Values: values,
	})
	switch {
	case errors.Is(err, ddb.ErrHeld):
		if ddb.String(cur, attrStatus) == statusDone {
			return &Claim{State: Done}, nil
		}
		return &Claim{State: InFlight}, nil
	case err != nil:
		return nil, fmt.Errorf("idempotency: claim: %w", err)
	}
	return &Claim{
		State: Claimed,
		// A take whose answer was lost and retried cannot see what the key
		// held before: it may have settled on another outcome, so the caller
		// settles this one from the authority too.
		Again:   l.BeforeUnknown || (l.Before != nil && ddb.String(l.Before, attrOutcome) != outcome),
		unknown: l.BeforeUnknown,
		store:   s,
		lease:   l,
		outcome: outcome,
		before:  l.Before,
	}, nil
}

// ErrNotClaimed reports Complete or Release on a claim that is not Claimed.
var ErrNotClaimed = errors.New("idempotency: key not claimed by this caller")

// Complete marks the key done, with a note of how (for example "handled"
// or "queued"), so that later claims find it done. settled is the outcome
// the work ended in, when it differs from the one claimed (a late copy of
// an event settled by the authority); "" keeps the claimed one. Complete
// returns ddb.ErrLost when the lease ran out and another caller took the
// key over.
func (c *Claim) Complete(ctx context.Context, how, settled string) error {
	if c == nil || c.lease == nil {
		return ErrNotClaimed
	}
	s := c.store
	set := "#s = :done, #h = :how, #t = :ttl"
	names := map[string]string{"#s": attrStatus, "#h": attrHow, "#t": attrTTL}
	values := ddb.Item{":done": ddb.S(statusDone), ":how": ddb.S(how), ":ttl": ddb.TTL(s.Now().Add(s.Retention))}
	if settled == "" {
		settled = c.outcome
	}
	if settled != "" {
		set += ", #o = :outcome"
		names["#o"] = attrOutcome
		values[":outcome"] = ddb.S(settled)
	}
	if err := c.lease.Release(ctx, s.db, ddb.End{Set: set, Names: names, Values: values}); err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	return nil
}

// Release gives up a claim whose work neither happened nor was handed on,
// so that a retry can claim it at once. A key that had settled before this
// claim goes back to what it had settled on.
func (c *Claim) Release(ctx context.Context) error {
	if c == nil || c.lease == nil {
		return ErrNotClaimed
	}
	end := ddb.End{Delete: true}
	switch {
	case c.unknown:
		// What it held before is not known: keep the record, only let go of
		// the lease, so that the next claim is free.
		end = ddb.End{}
	case ddb.String(c.before, attrStatus) == statusDone:
		end = ddb.End{Set: "#s = :done", Names: map[string]string{"#s": attrStatus, "#o": attrOutcome}, Values: ddb.Item{":done": ddb.S(statusDone)}}
		if was := ddb.String(c.before, attrOutcome); was != "" {
			end.Set += ", #o = :outcome"
			end.Values[":outcome"] = ddb.S(was)
		} else {
			end.Remove = "#o"
		}
	}
	err := c.lease.Release(ctx, c.store.db, end)
	if err != nil && !errors.Is(err, ddb.ErrLost) {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	// Lost: someone else has the key now, which is what a release is for.
	return nil
}

func (s *Store) key(k string) ddb.Item { return ddb.Key("IDEM#" + s.scope + "#" + k) }
