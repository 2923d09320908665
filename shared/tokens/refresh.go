package tokens

import "time"

// The platform's stable_token timing, which the refresher's schedule is
// built around (getStableAccessToken, "access_token 的存储与更新"): in normal
// mode the platform issues the next token only in the last five minutes of
// the current one ("平台会提前5分钟更新access_token"), and the current one
// keeps working to its own expiry meanwhile. A normal call made earlier
// answers the same token again, a wasted call.
const (
	// rollover is that last stretch of a token's life.
	rollover = 5 * time.Minute
	// callAt is the remaining lifetime at which the refresher calls. The
	// stored expiry is computed from when the request was sent, so it is
	// never later than the platform's; 3 s covers the platform's rounding
	// of expires_in down to whole seconds and the request's latency, so
	// that a call at callAt always falls inside the platform's rollover.
	callAt = rollover - 3*time.Second
	// waitWindow: a run that finds the token less than this beyond callAt
	// waits for callAt instead of leaving it to the next run, which could
	// come too close to the expiry. With a 5-minute schedule and a 120-minute
	// token, runs fall at the same point of every token's life; without the
	// wait they could settle just outside the rollover, costing two calls per
	// token, or just before the expiry.
	//
	// Each waited call moves the next token's runs 3 s later in its life,
	// so every twentieth token or so is refreshed by a run that finds it
	// with a minute or less left, which still leaves callers time.
	waitWindow = time.Minute
)

// Action is what the refresher does about a stored token.
type Action int

const (
	// Keep: the stored token has long enough to live; no call.
	Keep Action = iota
	// Replaced: the refused token is no longer the stored one; forcing now
	// would kill its replacement, so no call.
	Replaced
	// Wait: the rollover is close; wait Decision.Wait, then decide again.
	Wait
	// Refresh: call stable_token in normal mode.
	Refresh
	// Force: call stable_token with force_refresh, if the force budget
	// allows.
	Force
)

// Decision is what the refresher does about a stored token, and why.
type Decision struct {
	Action Action
	Wait   time.Duration // for Wait
	Reason string
}

// Decide is the refresher's rule for the stored token st at now. refused is
// the Fingerprint of a token a function reported refused, or "" for a run
// that only keeps the token fresh (the schedule, or a function that found no
// token yet).
func Decide(st Stored, refused string, now time.Time) Decision {
	left := st.ExpiresAt.Sub(now)
	if refused != "" {
		switch {
		case st.AccessToken == "" || Fingerprint(st.AccessToken) != refused:
			return Decision{Action: Replaced, Reason: "the refused token is no longer stored"}
		case left <= callAt:
			// Expired or in the rollover: a normal call yields a new token
			// without spending the force budget.
			return Decision{Action: Refresh, Reason: "refused token is expiring"}
		}
		return Decision{Action: Force, Reason: "refused token is still current"}
	}
	switch {
	case st.AccessToken == "":
		return Decision{Action: Refresh, Reason: "no token stored"}
	case left <= callAt:
		return Decision{Action: Refresh, Reason: "token is expiring"}
	case left <= callAt+waitWindow:
		return Decision{Action: Wait, Wait: left - callAt, Reason: "token enters the rollover shortly"}
	}
	return Decision{Action: Keep, Reason: "token is fresh"}
}

// Waited is the decision of a run that has already waited once: a second
// Wait becomes Refresh. The wait ended inside the rollover; a clock that
// disagrees costs at most one call answered with the same token.
func (d Decision) Waited() Decision {
	if d.Action == Wait {
		return Decision{Action: Refresh, Reason: "token enters the rollover"}
	}
	return d
}
