// Package push receives the official account's server push: it checks the
// signature and the timestamp window, decrypts safe- and compatible-mode
// messages, and parses the XML into typed events. It also signs and
// encrypts, which the sandbox uses to play WeChat.
//
// Platform rules (WECHAT.md, "Official account: server push"): the plain
// signature is sha1 of token, timestamp and nonce sorted and joined; in AES
// mode msg_signature adds the Encrypt value. The AES key is the 43-character
// EncodingAESKey plus "=", base64-decoded (32 bytes); AES-256-CBC with the
// key's first 16 bytes as IV and PKCS#7 padding to 32-byte blocks; the
// plaintext is 16 random bytes, a 4-byte big-endian length, the message, and
// the appid it was sent to.
package push

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the largest push body accepted.
const MaxBody = 64 << 10

// DefaultWindow is how far a push timestamp may be from our clock.
const DefaultWindow = 5 * time.Minute

// Why a push was refused. Each maps to a 4xx answer; none changes anything.
var (
	ErrSignature = errors.New("push: signature does not match")
	ErrStale     = errors.New("push: timestamp outside the accepted window")
	ErrTooLarge  = errors.New("push: body too large")
	ErrMalformed = errors.New("push: malformed message")
	ErrDecrypt   = errors.New("push: cannot decrypt")
	ErrAppID     = errors.New("push: message was encrypted for another appid")
	ErrPlaintext = errors.New("push: plaintext push refused: AES mode is configured")
)

// Signature is sha1 over parts sorted and concatenated, in hex.
func Signature(parts ...string) string {
	p := append([]string(nil), parts...)
	sort.Strings(p)
	sum := sha1.Sum([]byte(strings.Join(p, "")))
	return hex.EncodeToString(sum[:])
}

// verify compares a received signature with the expected one in constant
// time.
func verify(got string, parts ...string) bool {
	want := Signature(parts...)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(got)), []byte(want)) == 1
}

// Cipher encrypts and decrypts pushes for one appid.
type Cipher struct {
	block cipher.Block
	iv    []byte
	appid string
}

// NewCipher returns the cipher for encodingAESKey (43 characters, from the
// OA console) and appid.
func NewCipher(encodingAESKey, appid string) (*Cipher, error) {
	if len(encodingAESKey) != 43 {
		return nil, errors.New("push: EncodingAESKey must be 43 characters")
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, errors.New("push: EncodingAESKey is not valid base64")
	}
	block, _ := aes.NewCipher(key) // 32 bytes: AES-256
	return &Cipher{block: block, iv: key[:16], appid: appid}, nil
}

const padBlock = 32 // the platform pads to 32 bytes, not AES's 16

// Decrypt opens an Encrypt value and returns the message inside, refusing
// one sent to another appid.
func (c *Cipher) Decrypt(encrypted string) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(encrypted)
	if err != nil || len(ct) < aes.BlockSize || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: not whole AES blocks of base64", ErrDecrypt)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n < 1 || n > padBlock || n > len(pt) || !bytes.Equal(pt[len(pt)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, fmt.Errorf("%w: bad padding", ErrDecrypt)
	}
	pt = pt[:len(pt)-n]
	if len(pt) < 20 {
		return nil, fmt.Errorf("%w: too short", ErrDecrypt)
	}
	size := binary.BigEndian.Uint32(pt[16:20])
	if uint64(size) > uint64(len(pt)-20) {
		return nil, fmt.Errorf("%w: length field exceeds the message", ErrDecrypt)
	}
	msg, appid := pt[20:20+size], pt[20+size:]
	if subtle.ConstantTimeCompare(appid, []byte(c.appid)) != 1 {
		return nil, ErrAppID
	}
	return msg, nil
}

// Encrypt seals msg for the cipher's appid, as the platform does.
func (c *Cipher) Encrypt(msg []byte) string {
	pt := make([]byte, 20, 20+len(msg)+len(c.appid)+padBlock)
	rand.Read(pt[:16])
	binary.BigEndian.PutUint32(pt[16:20], uint32(len(msg)))
	pt = append(pt, msg...)
	pt = append(pt, c.appid...)
	n := padBlock - len(pt)%padBlock
	pt = append(pt, bytes.Repeat([]byte{byte(n)}, n)...)
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(pt, pt)
	return base64.StdEncoding.EncodeToString(pt)
}

// Event is one pushed message or event, with the fields wxbridge uses.
type Event struct {
	ToUserName   string `xml:"ToUserName" json:"to"`
	FromUserName string `xml:"FromUserName" json:"from"` // the user's OA openid
	CreateTime   int64  `xml:"CreateTime" json:"create_time"`
	MsgType      string `xml:"MsgType" json:"msg_type"`
	Event        string `xml:"Event" json:"event,omitempty"`
	EventKey     string `xml:"EventKey" json:"event_key,omitempty"`
	Ticket       string `xml:"Ticket" json:"ticket,omitempty"`
	// MsgID identifies a user message (MsgId) or, for
	// TEMPLATESENDJOBFINISH, the template message (MsgID, capital D).
	MsgID  string `xml:"-" json:"msg_id,omitempty"`
	Status string `xml:"Status" json:"status,omitempty"`
	// Templates lists, for a subscribe-notification event (SubscribePopup,
	// SubscribeChange, SubscribeSent), each template it is about.
	Templates []TemplateEvent `xml:"-" json:"templates,omitempty"`
}

// TemplateEvent is one template's entry (List) in a subscribe-notification
// event.
type TemplateEvent struct {
	TemplateID string `xml:"TemplateId" json:"template_id"`
	// Status is SubscribeStatusString, in popup and change events:
	// "accept" or "reject" (a change event only ever rejects).
	Status     string `xml:"SubscribeStatusString" json:"status,omitempty"`
	PopupScene string `xml:"PopupScene" json:"popup_scene,omitempty"`
	// MsgID, ErrorCode and ErrorStatus are a sent event's delivery report
	// of the notification bizsend sent: ErrorStatus "success",
	// "failed:user block" (the person refuses it), "failed:system failed".
	MsgID       string `xml:"MsgID" json:"msg_id,omitempty"`
	ErrorCode   string `xml:"ErrorCode" json:"error_code,omitempty"`
	ErrorStatus string `xml:"ErrorStatus" json:"error_status,omitempty"`
}

// Event types wxbridge acts on (the Event field when MsgType is "event").
const (
	Subscribe      = "subscribe"
	Unsubscribe    = "unsubscribe"
	Scan           = "SCAN"
	TemplateFinish = "TEMPLATESENDJOBFINISH"
	// The official account's subscribe notifications (订阅通知): the
	// person answered the popup, withdrew a template in their settings,
	// and the delivery report of a bizsend.
	SubscribePopup  = "subscribe_msg_popup_event"
	SubscribeChange = "subscribe_msg_change_event"
	SubscribeSent   = "subscribe_msg_sent_event"
)

// Kind names what the push is: the event name for events ("subscribe"), the
// message type for messages ("text").
func (e Event) Kind() string {
	if e.MsgType == "event" {
		return e.Event
	}
	return e.MsgType
}

// At is when the platform created the event.
func (e Event) At() time.Time { return time.Unix(e.CreateTime, 0) }

// DedupKey identifies the event across WeChat's retries: messages by MsgId,
// events by sender, time, event and key.
//
// A subscribe and an unsubscribe of one follower in one second share a key
// (CreateTime has whole seconds, and a follow, an unfollow and a follow
// again can fall in one): the key stands for the follower's follow state at
// that second, and FollowState names the state each event asks for. A
// deduplicator keeps the state the key settled on, so that WeChat's retry
// of the first follow is a duplicate while the follow after the unfollow is
// not.
//
// A key longer than maxDedupKey (an event listing many templates) is
// replaced by its SHA-256: keys become DynamoDB partition keys, which
// hold at most 2048 bytes.
func (e Event) DedupKey() string {
	key := e.dedupKey()
	if len(key) <= maxDedupKey {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256#" + hex.EncodeToString(sum[:])
}

// maxDedupKey is the longest dedup key kept as it is.
const maxDedupKey = 512

func (e Event) dedupKey() string {
	if e.MsgType != "event" && e.MsgID != "" {
		return "msg#" + e.MsgID
	}
	if e.FollowState() != "" {
		return "evt#" + e.FromUserName + "#" + strconv.FormatInt(e.CreateTime, 10) + "#follow"
	}
	key := "evt#" + e.FromUserName + "#" + strconv.FormatInt(e.CreateTime, 10) + "#" + e.Event + "#" + e.EventKey
	if e.MsgID != "" {
		// TEMPLATESENDJOBFINISH: two messages to one person can be reported
		// in the same second; only the MsgID tells them apart.
		key += "#" + e.MsgID
	}
	for _, t := range e.Templates {
		// Subscribe-notification events: likewise two reports (or answers)
		// of one second differ only in their list.
		key += "#" + t.TemplateID + ":" + t.Status + t.MsgID
	}
	return key
}

// FollowState is the follow state a subscribe or unsubscribe event asks for
// (Subscribe or Unsubscribe), and "" for every other push.
func (e Event) FollowState() string {
	if k := e.Kind(); e.MsgType == "event" && (k == Subscribe || k == Unsubscribe) {
		return k
	}
	return ""
}

// envelope is the XML as received: plaintext fields, Encrypt, or both.
type envelope struct {
	Event
	MsgId   string `xml:"MsgId"`
	MsgIDEv string `xml:"MsgID"`
	Encrypt string `xml:"Encrypt"`
	// The list of a subscribe-notification event, under the element its
	// event names. The platform's own example of the change event wraps it
	// in SubscribeMsgPopupEvent, so any of the three is read.
	Popup  []TemplateEvent `xml:"SubscribeMsgPopupEvent>List"`
	Change []TemplateEvent `xml:"SubscribeMsgChangeEvent>List"`
	Sent   []TemplateEvent `xml:"SubscribeMsgSentEvent>List"`
}

func parse(b []byte) (envelope, error) {
	var env envelope
	if err := xml.Unmarshal(b, &env); err != nil {
		return envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	env.MsgID = env.MsgId
	if env.MsgID == "" {
		env.MsgID = env.MsgIDEv
	}
	env.Templates = slices.Concat(env.Popup, env.Change, env.Sent)
	return env, nil
}

// Query is a push request's query string, as the platform sends it.
type Query struct {
	Signature    string
	Timestamp    string
	Nonce        string
	EncryptType  string // "aes" in safe and compatible mode
	MsgSignature string
	EchoStr      string
}

// Receiver checks and opens pushes for one official account.
type Receiver struct {
	Token  string
	Cipher *Cipher // nil: plaintext mode; set: only encrypted pushes accepted
	Window time.Duration
	Now    func() time.Time
}

// Echo answers the console's URL check: the echostr, only if the timestamp
// is within the window and the signature matches. The window matters: every
// push carries a signature, timestamp and nonce in its query, so without it
// any old push URL would make us echo whatever echostr it is sent with.
func (r *Receiver) Echo(q Query) (string, error) {
	if err := r.fresh(q.Timestamp); err != nil {
		return "", err
	}
	if q.EchoStr == "" || !verify(q.Signature, r.Token, q.Timestamp, q.Nonce) {
		return "", ErrSignature
	}
	return q.EchoStr, nil
}

// Open verifies a pushed body and returns its event. The checks run
// cheapest first, and the body is decrypted only once its signature holds.
func (r *Receiver) Open(q Query, body []byte) (Event, error) {
	if len(body) > MaxBody {
		return Event{}, ErrTooLarge
	}
	if err := r.fresh(q.Timestamp); err != nil {
		return Event{}, err
	}
	if q.EncryptType == "" || q.EncryptType == "raw" {
		if r.Cipher != nil {
			return Event{}, ErrPlaintext
		}
		if !verify(q.Signature, r.Token, q.Timestamp, q.Nonce) {
			return Event{}, ErrSignature
		}
		env, err := parse(body)
		if err != nil {
			return Event{}, err
		}
		return env.Event, validate(env.Event)
	}
	if q.EncryptType != "aes" || r.Cipher == nil {
		return Event{}, fmt.Errorf("%w: encrypt_type %q without a configured EncodingAESKey", ErrDecrypt, q.EncryptType)
	}
	env, err := parse(body)
	if err != nil {
		return Event{}, err
	}
	if env.Encrypt == "" {
		return Event{}, fmt.Errorf("%w: no Encrypt element", ErrMalformed)
	}
	if !verify(q.MsgSignature, r.Token, q.Timestamp, q.Nonce, env.Encrypt) {
		return Event{}, ErrSignature
	}
	msg, err := r.Cipher.Decrypt(env.Encrypt)
	if err != nil {
		return Event{}, err
	}
	inner, err := parse(msg)
	if err != nil {
		return Event{}, err
	}
	return inner.Event, validate(inner.Event)
}

func (r *Receiver) fresh(ts string) error {
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrStale
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	window := r.Window
	if window <= 0 {
		window = DefaultWindow
	}
	if d := now().Sub(time.Unix(secs, 0)); d > window || d < -window {
		return ErrStale
	}
	return nil
}

func validate(e Event) error {
	if e.FromUserName == "" || e.ToUserName == "" || e.MsgType == "" || e.CreateTime <= 0 {
		return fmt.Errorf("%w: missing ToUserName, FromUserName, MsgType or CreateTime", ErrMalformed)
	}
	if e.MsgType == "event" && e.Event == "" {
		return fmt.Errorf("%w: event without Event", ErrMalformed)
	}
	return nil
}

// NewReceiver returns the receiver for an official account's console
// settings. With an EncodingAESKey (safe or compatible mode) only encrypted
// pushes are accepted: a plaintext signature does not cover the body.
func NewReceiver(token, encodingAESKey, appid string, window time.Duration) (*Receiver, error) {
	if token == "" {
		return nil, errors.New("push: no Token configured")
	}
	r := &Receiver{Token: token, Window: window}
	if encodingAESKey != "" {
		c, err := NewCipher(encodingAESKey, appid)
		if err != nil {
			return nil, err
		}
		r.Cipher = c
	}
	return r, nil
}
