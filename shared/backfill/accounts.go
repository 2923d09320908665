package backfill

import (
	"context"
	"errors"
	"fmt"
)

// Accounts are the backfills of every configured official account: each
// has its own runs, checkpoints (the items under SYNC#<appid>) and access
// token, and a job goes to the Syncer of the account it names. Two
// accounts' backfills run side by side on one sync queue without sharing
// anything but the queue.
type Accounts struct {
	// Syncers are the accounts' syncers, by appid.
	Syncers map[string]*Syncer
	// Default is the appid of a job or request that names none: the
	// default official account.
	Default string
}

// NewAccounts makes a Syncer for each of appids, copies of base with the
// appid set; the first is the default.
func NewAccounts(base Syncer, appids ...string) Accounts {
	a := Accounts{Syncers: make(map[string]*Syncer, len(appids))}
	for i, appid := range appids {
		s := base
		s.AppID = appid
		a.Syncers[appid] = &s
		if i == 0 {
			a.Default = appid
		}
	}
	return a
}

// ErrUnknownAccount reports an appid that is not a configured official
// account.
var ErrUnknownAccount = errors.New("followers: not a configured official account")

// Syncer is the syncer of official account appid ("" the default one).
func (a Accounts) Syncer(appid string) (*Syncer, error) {
	if appid == "" {
		appid = a.Default
	}
	s, ok := a.Syncers[appid]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownAccount, appid)
	}
	return s, nil
}

// Process does one job with the syncer of the account it names (the
// default when it names none). A job for an account not configured can
// never be done: it is an error, not a retry.
func (a Accounts) Process(ctx context.Context, j Job, attempt int) error {
	s, err := a.Syncer(j.AppID)
	if err != nil {
		return err
	}
	if j.AppID == "" {
		j.AppID = s.AppID
	}
	return s.Process(ctx, j, attempt)
}
