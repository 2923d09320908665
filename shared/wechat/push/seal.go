package push

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
)

// Mode is the message encryption mode chosen in the OA console.
type Mode string

// The console's three modes.
const (
	Plaintext  Mode = "plaintext"
	Compatible Mode = "compatible" // plaintext fields and Encrypt
	Safe       Mode = "safe"       // only Encrypt
)

// ParseMode reads a mode name; "" means Plaintext.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "", Plaintext:
		return Plaintext, nil
	case Compatible, Safe:
		return m, nil
	}
	return "", fmt.Errorf("push: unknown mode %q (plaintext, compatible or safe)", s)
}

// Marshal renders e as the platform's XML.
func Marshal(e Event) []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	field := func(name, v string) {
		if v == "" {
			return
		}
		b.WriteString("<" + name + ">")
		xml.EscapeText(&b, []byte(v))
		b.WriteString("</" + name + ">")
	}
	field("ToUserName", e.ToUserName)
	field("FromUserName", e.FromUserName)
	field("CreateTime", strconv.FormatInt(e.CreateTime, 10))
	field("MsgType", e.MsgType)
	field("Event", e.Event)
	field("EventKey", e.EventKey)
	field("Ticket", e.Ticket)
	if e.MsgType == "event" {
		field("MsgID", e.MsgID)
	} else {
		field("MsgId", e.MsgID)
	}
	field("Status", e.Status)
	if len(e.Templates) > 0 {
		// Each event's list sits under its own element.
		wrap := map[string]string{SubscribeChange: "SubscribeMsgChangeEvent", SubscribeSent: "SubscribeMsgSentEvent"}[e.Event]
		if wrap == "" {
			wrap = "SubscribeMsgPopupEvent"
		}
		b.WriteString("<" + wrap + ">")
		for _, t := range e.Templates {
			b.WriteString("<List>")
			field("TemplateId", t.TemplateID)
			field("SubscribeStatusString", t.Status)
			field("PopupScene", t.PopupScene)
			field("MsgID", t.MsgID)
			field("ErrorCode", t.ErrorCode)
			field("ErrorStatus", t.ErrorStatus)
			b.WriteString("</List>")
		}
		b.WriteString("</" + wrap + ">")
	}
	b.WriteString("</xml>")
	return b.Bytes()
}

// Seal builds the query and body WeChat sends for e in mode, signed with
// token (and encrypted with c unless the mode is Plaintext).
func Seal(mode Mode, token string, c *Cipher, e Event, timestamp, nonce string) (Query, []byte, error) {
	msg := Marshal(e)
	q := Query{Timestamp: timestamp, Nonce: nonce, Signature: Signature(token, timestamp, nonce)}
	if mode == Plaintext || mode == "" {
		return q, msg, nil
	}
	if c == nil {
		return Query{}, nil, fmt.Errorf("push: %s mode needs an EncodingAESKey", mode)
	}
	enc := c.Encrypt(msg)
	q.EncryptType = "aes"
	q.MsgSignature = Signature(token, timestamp, nonce, enc)
	var body []byte
	if mode == Safe {
		body = Marshal(Event{ToUserName: e.ToUserName})
	} else {
		body = msg
	}
	// The Encrypt element goes last, before </xml>.
	body = append(body[:len(body)-len("</xml>"):len(body)-len("</xml>")], []byte("<Encrypt><![CDATA["+enc+"]]></Encrypt></xml>")...)
	return q, body, nil
}
