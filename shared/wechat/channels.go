package wechat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
)

// OASubscribeMessage is an official-account subscribe notification (订阅通知,
// cgi-bin/message/subscribe/bizsend). It needs the person's consent for the
// template, given in the account's popup: a one-time consent is used up by
// one send, a long-term one is not (43101 without one). The data keys are
// typed like the mini program's subscribe messages.
type OASubscribeMessage struct {
	ToUser      string       // the recipient's OA openid
	TemplateID  string       // the account's subscribe-notification template
	Page        string       // optional web page (http or https URL) the notification opens
	MiniProgram *MiniProgram // optional mini-program page it opens instead
	Data        map[string]string
}

// String leaves the data out: message data may be personal.
func (m OASubscribeMessage) String() string {
	return fmt.Sprintf("OASubscribeMessage{TemplateID:%s keys:%d}", m.TemplateID, len(m.Data))
}

// SendOASubscribe sends a subscribe notification from the official account
// appid. The documented answer is only errcode and errmsg; when the
// platform adds a msgid (which the later subscribe_msg_sent_event carries as
// MsgID), it is returned, else msgid is "".
func (c *Client) SendOASubscribe(ctx context.Context, appid string, m OASubscribeMessage) (msgid string, err error) {
	const api = "/cgi-bin/message/subscribe/bizsend"
	if m.ToUser == "" || m.TemplateID == "" {
		return "", fmt.Errorf("wechat %s: empty touser or template_id", api)
	}
	body := struct {
		ToUser      string           `json:"touser"`
		TemplateID  string           `json:"template_id"`
		Page        string           `json:"page,omitempty"`
		MiniProgram *MiniProgram     `json:"miniprogram,omitempty"`
		Data        map[string]value `json:"data"`
	}{m.ToUser, m.TemplateID, m.Page, m.MiniProgram, values(m.Data)}
	var out struct {
		// A 64-bit number: kept as text so that no JSON decoder rounds it.
		MsgID json.Number `json:"msgid"`
	}
	err = c.withToken(ctx, appid, nil, func(q url.Values) error { return c.postJSON(ctx, api, q, body, &out) })
	if err != nil {
		return "", err
	}
	return out.MsgID.String(), nil
}

// CustomMessage is a customer-service message (cgi-bin/message/custom/send):
// exactly one of Text and MiniProgramPage. The platform takes it only
// within 48 hours of the person's last interaction with the account (45015
// after) and only a few per interaction (45047).
type CustomMessage struct {
	ToUser          string // the recipient's OA openid
	Text            string
	MiniProgramPage *MiniProgramPage
}

// MiniProgramPage is a mini-program card in a customer-service message.
type MiniProgramPage struct {
	Title        string `json:"title"`
	AppID        string `json:"appid"`
	PagePath     string `json:"pagepath"`
	ThumbMediaID string `json:"thumb_media_id"` // the card's picture, an uploaded media id
}

// String leaves the text out: message content may be personal.
func (m CustomMessage) String() string {
	if m.MiniProgramPage != nil {
		return fmt.Sprintf("CustomMessage{miniprogrampage:%s}", m.MiniProgramPage.AppID)
	}
	return fmt.Sprintf("CustomMessage{text:%d bytes}", len(m.Text))
}

// SendCustom sends a customer-service message from the official account
// appid. The platform answers no msgid and pushes no delivery report.
func (c *Client) SendCustom(ctx context.Context, appid string, m CustomMessage) error {
	const api = "/cgi-bin/message/custom/send"
	if m.ToUser == "" {
		return fmt.Errorf("wechat %s: empty touser", api)
	}
	type text struct {
		Content string `json:"content"`
	}
	body := struct {
		ToUser          string           `json:"touser"`
		MsgType         string           `json:"msgtype"`
		Text            *text            `json:"text,omitempty"`
		MiniProgramPage *MiniProgramPage `json:"miniprogrampage,omitempty"`
	}{ToUser: m.ToUser}
	switch {
	case (m.Text == "") == (m.MiniProgramPage == nil):
		return fmt.Errorf("wechat %s: want exactly one of text and miniprogrampage", api)
	case m.MiniProgramPage != nil:
		body.MsgType, body.MiniProgramPage = "miniprogrampage", m.MiniProgramPage
	default:
		body.MsgType, body.Text = "text", &text{m.Text}
	}
	var out struct{}
	return c.withToken(ctx, appid, nil, func(q url.Values) error { return c.postJSON(ctx, api, q, body, &out) })
}
