package wechat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
)

// TemplateMessage is an official-account template message
// (cgi-bin/message/template/send). Only followers receive it (43004).
type TemplateMessage struct {
	ToUser      string // the recipient's OA openid
	TemplateID  string
	URL         string       // optional page the message opens
	MiniProgram *MiniProgram // optional mini-program page the message opens (wins over URL)
	// ClientMsgID makes a resend harmless: the platform sends one message
	// per openid and client_msg_id within 10 minutes.
	ClientMsgID string
	Data        map[string]string // key -> value; sent as {"key": {"value": ...}}
}

// MiniProgram is a mini-program page a template message opens.
type MiniProgram struct {
	AppID    string `json:"appid"`
	PagePath string `json:"pagepath,omitempty"`
}

// SubscribeMessage is a mini-program subscribe message
// (cgi-bin/message/subscribe/send). Each send uses up one of the user's
// one-time consents for the template (43101 without one).
type SubscribeMessage struct {
	ToUser           string // the recipient's mini-program openid
	TemplateID       string
	Page             string // optional page of the mini program, e.g. "index?foo=bar"
	MiniProgramState string // optional: developer, trial or formal (the default)
	Lang             string // optional: zh_CN (default), en_US, zh_HK, zh_TW
	Data             map[string]string
}

// String leaves the data out: message data may be personal.
func (m TemplateMessage) String() string {
	return fmt.Sprintf("TemplateMessage{TemplateID:%s keys:%d}", m.TemplateID, len(m.Data))
}

// String leaves the data out: message data may be personal.
func (m SubscribeMessage) String() string {
	return fmt.Sprintf("SubscribeMessage{TemplateID:%s keys:%d}", m.TemplateID, len(m.Data))
}

type value struct {
	Value string `json:"value"`
}

func values(data map[string]string) map[string]value {
	out := make(map[string]value, len(data))
	for k, v := range data {
		out[k] = value{v}
	}
	return out
}

// SendTemplate sends a template message from the official account appid and
// returns the platform's msgid, which the later TEMPLATESENDJOBFINISH push
// carries as MsgID.
func (c *Client) SendTemplate(ctx context.Context, appid string, m TemplateMessage) (msgid string, err error) {
	const api = "/cgi-bin/message/template/send"
	if m.ToUser == "" || m.TemplateID == "" {
		return "", fmt.Errorf("wechat %s: empty touser or template_id", api)
	}
	body := struct {
		ToUser      string           `json:"touser"`
		TemplateID  string           `json:"template_id"`
		URL         string           `json:"url,omitempty"`
		MiniProgram *MiniProgram     `json:"miniprogram,omitempty"`
		ClientMsgID string           `json:"client_msg_id,omitempty"`
		Data        map[string]value `json:"data"`
	}{m.ToUser, m.TemplateID, m.URL, m.MiniProgram, m.ClientMsgID, values(m.Data)}
	var out struct {
		// A 64-bit number: kept as text so that no JSON decoder rounds it.
		MsgID json.Number `json:"msgid"`
	}
	err = c.withToken(ctx, appid, nil, func(q url.Values) error { return c.postJSON(ctx, api, q, body, &out) })
	if err == nil && out.MsgID == "" {
		err = &transportError{api: api, what: "answer without msgid"}
	}
	return out.MsgID.String(), err
}

// SendSubscribe sends a subscribe message from the mini program appid.
func (c *Client) SendSubscribe(ctx context.Context, appid string, m SubscribeMessage) error {
	const api = "/cgi-bin/message/subscribe/send"
	if m.ToUser == "" || m.TemplateID == "" {
		return fmt.Errorf("wechat %s: empty touser or template_id", api)
	}
	body := struct {
		ToUser           string           `json:"touser"`
		TemplateID       string           `json:"template_id"`
		Page             string           `json:"page,omitempty"`
		MiniProgramState string           `json:"miniprogram_state,omitempty"`
		Lang             string           `json:"lang,omitempty"`
		Data             map[string]value `json:"data"`
	}{m.ToUser, m.TemplateID, m.Page, m.MiniProgramState, m.Lang, values(m.Data)}
	var out struct{}
	return c.withToken(ctx, appid, nil, func(q url.Values) error { return c.postJSON(ctx, api, q, body, &out) })
}
