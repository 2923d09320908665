package wechat

import (
	"context"
	"fmt"
	"net/url"
)

// Follower is what the platform says about one official-account user
// (cgi-bin/user/info). For someone who does not follow, Subscribe is 0 and
// only OpenID is set: no unionid, no scene.
type Follower struct {
	Subscribe      int    `json:"subscribe"`
	OpenID         string `json:"openid"`
	Language       string `json:"language"`
	SubscribeTime  int64  `json:"subscribe_time"`
	UnionID        string `json:"unionid"`
	SubscribeScene string `json:"subscribe_scene"`
	QRSceneStr     string `json:"qr_scene_str"`
}

// Follows reports whether the user follows the account.
func (u Follower) Follows() bool { return u.Subscribe == 1 }

// Follower returns the official account's view of openid.
func (c *Client) Follower(ctx context.Context, appid, openid string) (Follower, error) {
	const api = "/cgi-bin/user/info"
	if openid == "" {
		return Follower{}, fmt.Errorf("wechat %s: empty openid", api)
	}
	var out Follower
	q := url.Values{"openid": {openid}, "lang": {"zh_CN"}}
	err := c.withToken(ctx, appid, q, func(q url.Values) error { return c.get(ctx, api, q, &out) })
	if err == nil && out.OpenID == "" {
		err = &transportError{api: api, what: "answer without openid"}
	}
	return out, err
}

// MaxBatchUsers is the most openids one user/info/batchget call takes.
const MaxBatchUsers = 100

// Followers returns the official account's view of up to 100 openids in one
// call (cgi-bin/user/info/batchget), in the order asked.
func (c *Client) Followers(ctx context.Context, appid string, openids []string) ([]Follower, error) {
	const api = "/cgi-bin/user/info/batchget"
	if len(openids) == 0 || len(openids) > MaxBatchUsers {
		return nil, fmt.Errorf("wechat %s: %d openids, want 1 to %d", api, len(openids), MaxBatchUsers)
	}
	type user struct {
		OpenID string `json:"openid"`
		Lang   string `json:"lang"`
	}
	body := struct {
		UserList []user `json:"user_list"`
	}{make([]user, len(openids))}
	for i, id := range openids {
		body.UserList[i] = user{id, "zh_CN"}
	}
	var out struct {
		UserInfoList []Follower `json:"user_info_list"`
	}
	err := c.withToken(ctx, appid, nil, func(q url.Values) error { return c.postJSON(ctx, api, q, body, &out) })
	if err == nil && len(out.UserInfoList) != len(openids) {
		err = &transportError{api: api, what: fmt.Sprintf("answer has %d users for %d openids", len(out.UserInfoList), len(openids))}
	}
	return out.UserInfoList, err
}

// QRCode is a parametric QR code (cgi-bin/qrcode/create).
type QRCode struct {
	Ticket        string `json:"ticket"`
	ExpireSeconds int    `json:"expire_seconds"`
	URL           string `json:"url"`
}

// CreateQRCode makes a temporary QR code whose scans carry scene (1-64
// characters) in the subscribe or SCAN event; expires 0 means 30 days, the
// platform's longest.
func (c *Client) CreateQRCode(ctx context.Context, appid, scene string, expiresSeconds int) (QRCode, error) {
	const api = "/cgi-bin/qrcode/create"
	if scene == "" || len(scene) > 64 {
		return QRCode{}, fmt.Errorf("wechat %s: scene must be 1 to 64 characters", api)
	}
	if expiresSeconds <= 0 {
		expiresSeconds = 30 * 24 * 3600
	}
	body := map[string]any{
		"expire_seconds": expiresSeconds,
		"action_name":    "QR_STR_SCENE",
		"action_info":    map[string]any{"scene": map[string]string{"scene_str": scene}},
	}
	var out QRCode
	err := c.withToken(ctx, appid, nil, func(q url.Values) error { return c.postJSON(ctx, api, q, body, &out) })
	if err == nil && out.Ticket == "" {
		err = &transportError{api: api, what: "answer without ticket"}
	}
	return out, err
}
