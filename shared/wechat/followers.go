package wechat

import (
	"context"
	"net/url"
)

// MaxFollowerPage is the most openids one user/get page holds.
const MaxFollowerPage = 10000

// FollowerPage is one page of the official account's follower list
// (cgi-bin/user/get).
type FollowerPage struct {
	Total      int      // followers the account has now
	OpenIDs    []string // this page's followers, at most MaxFollowerPage
	NextOpenID string   // where the next page starts; "" after the last
}

// Last reports whether no page follows this one. The documentation says the
// last page has an empty next_openid; in practice a page that ends the list
// still names its last openid, and one more call answers count 0, no data
// and an empty next_openid. Either ends the list.
func (p FollowerPage) Last() bool { return p.NextOpenID == "" || len(p.OpenIDs) == 0 }

// FollowerPage returns the page of the account's followers that starts
// after next ("" for the first page). GET /cgi-bin/user/get.
func (c *Client) FollowerPage(ctx context.Context, appid, next string) (FollowerPage, error) {
	const api = "/cgi-bin/user/get"
	var out struct {
		Total int `json:"total"`
		Count int `json:"count"`
		Data  *struct {
			OpenID []string `json:"openid"`
		} `json:"data"`
		NextOpenID string `json:"next_openid"`
	}
	q := url.Values{}
	if next != "" {
		q.Set("next_openid", next)
	}
	err := c.withToken(ctx, appid, q, func(q url.Values) error { return c.get(ctx, api, q, &out) })
	if err != nil {
		return FollowerPage{}, err
	}
	p := FollowerPage{Total: out.Total, NextOpenID: out.NextOpenID}
	if out.Data != nil {
		p.OpenIDs = out.Data.OpenID
	}
	if len(p.OpenIDs) != out.Count || len(p.OpenIDs) > MaxFollowerPage {
		return FollowerPage{}, &transportError{api: api, what: "answer's count does not match its openids"}
	}
	for _, id := range p.OpenIDs {
		if id == "" {
			return FollowerPage{}, &transportError{api: api, what: "answer with an empty openid"}
		}
	}
	return p, nil
}
