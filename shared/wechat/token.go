package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// TokenSource hands out an app's access token to every call that takes one.
// The client never fetches tokens itself: in wxbridge only the
// token-refresher calls the token endpoints (shared/tokens implements this
// interface over the refresher's Secrets Manager secrets).
type TokenSource interface {
	// Token returns the current access token of appid.
	Token(ctx context.Context, appid string) (string, error)
	// Refused is told that the platform refused token with a token-class
	// error (40001, 40014, 42001). It returns a different, fresher token to
	// retry with, or an error when it has none yet (it may have asked the
	// refresher for a forced refresh meanwhile).
	Refused(ctx context.Context, appid, token string) (string, error)
}

// ErrNoTokenSource reports a token-taking call on a client built without
// Options.Tokens.
var ErrNoTokenSource = errors.New("wechat: client has no token source")

// withToken runs call with appid's access token in q["access_token"]. On a
// token-class answer it asks the source for a fresher token and retries
// once, so callers never see a token that went stale under them. Without a
// token nothing is sent: that failure is marked ErrNotSent.
func (c *Client) withToken(ctx context.Context, appid string, q url.Values, call func(q url.Values) error) error {
	if c.tokens == nil {
		return notSent(ErrNoTokenSource)
	}
	if q == nil {
		q = url.Values{}
	}
	tok, err := c.tokens.Token(ctx, appid)
	if err != nil {
		return notSent(fmt.Errorf("wechat: access token for %s: %w", appid, err))
	}
	q.Set("access_token", tok)
	err = call(q)
	if ClassOf(err) != ClassToken {
		return err
	}
	fresh, ferr := c.tokens.Refused(ctx, appid, tok)
	if ferr != nil || fresh == "" || fresh == tok {
		// Keep the platform's answer: callers classify it (token class:
		// retry later, once the refresher has caught up).
		return err
	}
	q.Set("access_token", fresh)
	return call(q)
}

// CallbackIPs returns the addresses WeChat pushes from
// (GET /cgi-bin/getcallbackip). Being the cheapest API that takes an access
// token, it also tells whether a token works.
func (c *Client) CallbackIPs(ctx context.Context, appid string) ([]string, error) {
	const api = "/cgi-bin/getcallbackip"
	var out struct {
		IPList []string `json:"ip_list"`
	}
	err := c.withToken(ctx, appid, nil, func(q url.Values) error { return c.get(ctx, api, q, &out) })
	return out.IPList, err
}
