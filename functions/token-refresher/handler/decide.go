package handler

import (
	"encoding/json"
	"time"

	"wxbridge/shared/tokens"
)

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

type action int

const (
	actNone   action = iota // nothing to do
	actWait                 // wait, then decide again
	actNormal               // call stable_token in normal mode
	actForce                // call stable_token with force_refresh
)

// decision is what to do about a stored token.
type decision struct {
	act     action
	wait    time.Duration // for actWait
	outcome string        // for actNone
	reason  string
}

// decide is the refresher's rule. refused is the fingerprint of a token a
// function reported refused, or "" on a scheduled run.
func decide(st tokens.Stored, refused string, now time.Time) decision {
	left := st.ExpiresAt.Sub(now)
	if refused != "" {
		switch {
		case st.AccessToken == "" || tokens.Fingerprint(st.AccessToken) != refused:
			// Someone replaced it already: forcing now would kill the
			// replacement.
			return decision{act: actNone, outcome: OutcomeAlreadyReplaced, reason: "the refused token is no longer stored"}
		case left <= callAt:
			// Expired or in the rollover: a normal call yields a new token
			// without spending the force budget.
			return decision{act: actNormal, reason: "refused token is expiring"}
		}
		return decision{act: actForce, reason: "refused token is still current"}
	}
	switch {
	case st.AccessToken == "":
		return decision{act: actNormal, reason: "no token stored"}
	case left <= callAt:
		return decision{act: actNormal, reason: "token is expiring"}
	case left <= callAt+waitWindow:
		return decision{act: actWait, wait: left - callAt, reason: "token enters the rollover shortly"}
	}
	return decision{act: actNone, outcome: OutcomeFresh, reason: "token is fresh"}
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
