package sandbox

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"wxbridge/shared/wechat/push"
)

// The official account's other channels: subscribe notifications (订阅通知,
// subscribe/bizsend), which need the person's consent from the account's
// popup, and customer-service messages (custom/send), which need a recent
// interaction. Platform rules played here (docs/sandbox.md, "Subscribe
// notifications and customer-service messages"):
//
//   - A popup acceptance adds one one-time consent for the template, or
//     makes it long-term; bizsend uses up a one-time consent and never a
//     long-term one, and answers 43101 without one. The popup pushes
//     subscribe_msg_popup_event; turning a template off in the person's
//     notification settings pushes subscribe_msg_change_event; each
//     accepted bizsend is later reported by subscribe_msg_sent_event.
//   - Each interaction opens an allowance of customer-service messages:
//     a message from the person 5 messages for 48 hours; a follow, a scan
//     or a menu click 3 messages for 1 minute (the platform's table for
//     sendCustomMessage). A new interaction of the same kind replaces the
//     allowance. custom/send answers 45015 when no allowance is open and
//     45047 when the open ones are used up.

// channelBook is what the platform keeps for these channels.
type channelBook struct {
	oaConsents map[string]map[string]*oaConsent // person ID -> template_id -> consent
	windows    map[memberKey]*csWindows         // person in an official account -> customer-service allowances
	noMsgID    bool                             // bizsend answers without a msgid
	nextMsgID  int64                            // the text messages people write (MsgId)
}

// memberKey names a person in one app.
type memberKey struct{ id, appid string }

// oaConsent is a person's consent for one subscribe-notification template.
type oaConsent struct {
	left     int  // one-time consents not used yet
	longTerm bool // a long-term consent: sends do not use it up
}

// csWindows are the customer-service allowances a person's interactions
// opened: one for their last message, one for their last event.
type csWindows struct {
	message, event csAllowance
}

// csAllowance is how many customer-service messages may still be sent,
// until when.
type csAllowance struct {
	left  int
	until time.Time
}

// Customer-service allowances by interaction, from the platform's table.
const (
	MessageAllowance = 5              // messages after the person writes...
	MessageWindow    = 48 * time.Hour // ...for this long
	EventAllowance   = 3              // messages after a follow, scan or menu click...
	EventWindow      = time.Minute    // ...for this long
)

// Channels of InboxMessage beyond template and subscribe.
const (
	ChannelOASubscribe     = "oa_subscribe"
	ChannelCustomerService = "customer_service"
)

// OAPopup is a person's answer to the official account's subscribe popup
// for one template.
type OAPopup struct {
	TemplateID string `json:"template_id"`
	LongTerm   bool   `json:"long_term"` // a long-term consent (accounts in public services only)
	Reject     bool   `json:"reject"`    // the person chose cancel
}

// SubscribeItem is one template's entry of a subscribe-notification event:
// its List element.
type SubscribeItem struct {
	TemplateID string `json:"template_id"`
	// Status is SubscribeStatusString: accept or reject (popup and change
	// events).
	Status     string `json:"status,omitempty"`
	PopupScene string `json:"popup_scene,omitempty"` // popup: 1 an H5 page, 2 an article
	// MsgID, ErrorCode and ErrorStatus are the sent event's report.
	MsgID       string `json:"msgid,omitempty"`
	ErrorCode   int    `json:"error_code,omitempty"`
	ErrorStatus string `json:"error_status,omitempty"`
}

// Events of these channels (the Event field of the push).
const (
	EventPopup  = "subscribe_msg_popup_event"
	EventChange = "subscribe_msg_change_event"
	EventSent   = "subscribe_msg_sent_event"
	EventClick  = "CLICK"
)

// Sent-event reports. The platform documents ErrorCode 0 with "success";
// for a person who refuses the account's messages the sandbox reports
// SentUserBlockCode with the template report's wording.
const (
	SentSuccess       = "success"
	SentUserBlockCode = 20004
)

// Errors of the channel control API.
var (
	ErrNotFollowing = errors.New("sandbox: person does not follow the official account")
	ErrNoTemplate   = errors.New("sandbox: want a template_id")
)

// channelRoutes adds bizsend and custom/send.
func (s *Sandbox) channelRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/cgi-bin/message/subscribe/bizsend", s.handleBizsend)
	mux.HandleFunc("/cgi-bin/message/custom/send", s.handleCustomSend)
}

// channelControlRoutes adds the person's side: the popup, notification
// settings, writing to the account, clicking its menu.
func (s *Sandbox) channelControlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /sandbox/people/{id}/oa-consent", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		var req struct {
			OAPopup
			Templates []OAPopup `json:"templates"`
		}
		if err := decodeBody(r, &req); err != nil {
			return Delivery{}, badRequest{err}
		}
		answers := req.Templates
		if req.TemplateID != "" {
			answers = append([]OAPopup{req.OAPopup}, answers...)
		}
		return s.OAConsent(r.Context(), id, answers...)
	}))
	mux.HandleFunc("POST /sandbox/people/{id}/oa-revoke", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		var req struct {
			TemplateID string `json:"template_id"`
		}
		if err := decodeBody(r, &req); err != nil {
			return Delivery{}, badRequest{err}
		}
		return s.OARevoke(r.Context(), id, req.TemplateID)
	}))
	mux.HandleFunc("POST /sandbox/people/{id}/message", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		var req struct {
			Content string `json:"content"`
		}
		if err := decodeBody(r, &req); err != nil || req.Content == "" {
			return Delivery{}, badRequest{errors.New(`want {"content": "..."}`)}
		}
		return s.Message(r.Context(), id, req.Content)
	}))
	mux.HandleFunc("POST /sandbox/people/{id}/menu-click", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		var req struct {
			Key string `json:"key"`
		}
		if err := decodeBody(r, &req); err != nil || req.Key == "" {
			return Delivery{}, badRequest{errors.New(`want {"key": "..."}`)}
		}
		return s.MenuClick(r.Context(), id, req.Key)
	}))
	mux.HandleFunc("GET /sandbox/people/{id}/channels", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.ChannelState(r.PathValue("id"))
		if err != nil {
			controlError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}

// OAConsent plays person id answering the default official account's
// subscribe popup (an H5 page's wx-open-subscribe), one answer per template, and
// pushes subscribe_msg_popup_event with them. An acceptance adds a one-time
// consent, or makes the consent long-term; a rejection changes nothing the
// person accepted before.
func (s *Sandbox) OAConsent(ctx context.Context, id string, answers ...OAPopup) (Delivery, error) {
	if len(answers) == 0 || slicesHasEmptyTemplate(answers) {
		return Delivery{}, ErrNoTemplate
	}
	now := s.clock.Now()
	oa := s.cfg.OfficialAccount.AppID
	s.mu.Lock()
	p, _, err := s.pushable(id, oa)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	m := s.event(p, oa, now, EventPopup)
	for _, a := range answers {
		item := SubscribeItem{TemplateID: a.TemplateID, Status: "accept", PopupScene: "1"}
		if a.Reject {
			item.Status = "reject"
		} else {
			c := s.oaConsent(p.ID, a.TemplateID)
			if a.LongTerm {
				c.longTerm = true
			} else {
				c.left++
			}
		}
		m.List = append(m.List, item)
	}
	s.mu.Unlock()
	return s.deliver(ctx, m)
}

func slicesHasEmptyTemplate(answers []OAPopup) bool {
	for _, a := range answers {
		if a.TemplateID == "" {
			return true
		}
	}
	return false
}

// OARevoke plays person id turning templateID off in the default official
// account's notification settings: every consent for it is gone, and
// subscribe_msg_change_event says "reject".
func (s *Sandbox) OARevoke(ctx context.Context, id, templateID string) (Delivery, error) {
	if templateID == "" {
		return Delivery{}, ErrNoTemplate
	}
	now := s.clock.Now()
	oa := s.cfg.OfficialAccount.AppID
	s.mu.Lock()
	p, _, err := s.pushable(id, oa)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	delete(s.channels.oaConsents[p.ID], templateID)
	m := s.event(p, oa, now, EventChange)
	m.List = []SubscribeItem{{TemplateID: templateID, Status: "reject"}}
	s.mu.Unlock()
	return s.deliver(ctx, m)
}

// OAConsents reports person id's consent for templateID: one-time consents
// left, and whether a long-term one is held.
func (s *Sandbox) OAConsents(id, templateID string) (left int, longTerm bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.channels.oaConsents[id][templateID]; c != nil {
		return c.left, c.longTerm
	}
	return 0, false
}

// interaction records that follower id did something official account
// appid hears of (brief: a click, not a message) and returns them, or
// ErrNotFollowing: only followers write or click. s.mu must be held.
func (s *Sandbox) interaction(id, appid string, brief bool, now time.Time) (*person, error) {
	p, m, err := s.pushable(id, appid)
	if err == nil && !m.following {
		err = ErrNotFollowing
	}
	if err != nil {
		return nil, err
	}
	s.interacted(p.ID, appid, brief, now)
	return p, nil
}

// Message plays person id writing content to the default official account: a text
// message is pushed (with its MsgId), and customer-service messages may be
// sent for MessageWindow. Only followers can write.
func (s *Sandbox) Message(ctx context.Context, id, content string) (Delivery, error) {
	now := s.clock.Now()
	oa := s.cfg.OfficialAccount.AppID
	s.mu.Lock()
	p, err := s.interaction(id, oa, false, now)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	e := s.event(p, oa, now, "")
	e.MsgType, e.Event.Event, e.Content = "text", "", content
	if s.channels.nextMsgID == 0 {
		s.channels.nextMsgID = 7_000_000_000_000_000_000 + int64(randomInt(1<<30))<<8
	}
	s.channels.nextMsgID++
	e.MsgID = strconv.FormatInt(s.channels.nextMsgID, 10)
	s.mu.Unlock()
	return s.deliver(ctx, e)
}

// MenuClick plays person id clicking a click-type item of the default
// official account's menu: a CLICK event with key, and a short
// customer-service allowance.
func (s *Sandbox) MenuClick(ctx context.Context, id, key string) (Delivery, error) {
	now := s.clock.Now()
	oa := s.cfg.OfficialAccount.AppID
	s.mu.Lock()
	p, err := s.interaction(id, oa, true, now)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	e := s.event(p, oa, now, EventClick)
	e.EventKey = key
	s.mu.Unlock()
	return s.deliver(ctx, e)
}

// ChannelState is what the platform holds about one person for these
// channels, as the control API shows it.
type ChannelState struct {
	OAConsents map[string]OAConsentState `json:"oa_consents"`
	// CustomerService is how many customer-service messages may be sent
	// now, and until when the longest allowance lasts (absent if none).
	CustomerService      int        `json:"customer_service_left"`
	CustomerServiceUntil *time.Time `json:"customer_service_until,omitempty"`
}

// OAConsentState is a person's consent for one template.
type OAConsentState struct {
	Left     int  `json:"left"`
	LongTerm bool `json:"long_term"`
}

// ChannelState reports person id's consents and customer-service allowance
// in the default official account at the sandbox clock's now.
func (s *Sandbox) ChannelState(id string) (ChannelState, error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.people[id] == nil {
		return ChannelState{}, ErrNoPerson
	}
	st := ChannelState{OAConsents: map[string]OAConsentState{}}
	for tpl, c := range s.channels.oaConsents[id] {
		st.OAConsents[tpl] = OAConsentState{c.left, c.longTerm}
	}
	if w := s.channels.windows[memberKey{id, s.cfg.OfficialAccount.AppID}]; w != nil {
		for _, a := range []csAllowance{w.message, w.event} {
			if now.Before(a.until) {
				st.CustomerService += a.left
				if st.CustomerServiceUntil == nil || a.until.After(*st.CustomerServiceUntil) {
					until := a.until
					st.CustomerServiceUntil = &until
				}
			}
		}
	}
	return st, nil
}

// SetBizsendMsgID chooses whether bizsend's answer carries the msgid that
// the later subscribe_msg_sent_event reports (the default), or only errcode
// and errmsg, as the platform's documentation shows it.
func (s *Sandbox) SetBizsendMsgID(on bool) {
	s.mu.Lock()
	s.channels.noMsgID = !on
	s.mu.Unlock()
}

// oaConsent returns person id's consent for templateID, creating it (s.mu
// held).
func (s *Sandbox) oaConsent(id, templateID string) *oaConsent {
	b := &s.channels
	if b.oaConsents == nil {
		b.oaConsents = map[string]map[string]*oaConsent{}
	}
	if b.oaConsents[id] == nil {
		b.oaConsents[id] = map[string]*oaConsent{}
	}
	c := b.oaConsents[id][templateID]
	if c == nil {
		c = &oaConsent{}
		b.oaConsents[id][templateID] = c
	}
	return c
}

// interacted opens the customer-service allowance of official account
// appid after an interaction by person id: a message, or an event (follow,
// scan, menu click) (s.mu held).
func (s *Sandbox) interacted(id, appid string, event bool, now time.Time) {
	b := &s.channels
	if b.windows == nil {
		b.windows = map[memberKey]*csWindows{}
	}
	k := memberKey{id, appid}
	w := b.windows[k]
	if w == nil {
		w = &csWindows{}
		b.windows[k] = w
	}
	if event {
		w.event = csAllowance{EventAllowance, now.Add(EventWindow)}
	} else {
		w.message = csAllowance{MessageAllowance, now.Add(MessageWindow)}
	}
}

// The platform's messages for these channels' errcodes.
const (
	msgWindowClosed  = "response out of time limit or subscription is canceled"
	msgResponseLimit = "out of response count limit"
	msgTooLong       = "content size out of limit"
)

// webPage is the page of a subscribe notification: a web address.
var webPage = regexp.MustCompile(`^https?://[^\s]+$`)

// handleBizsend is POST /cgi-bin/message/subscribe/bizsend.
func (s *Sandbox) handleBizsend(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ToUser      string `json:"touser"`
		TemplateID  string `json:"template_id"`
		Page        string `json:"page"`
		MiniProgram *struct {
			AppID    string `json:"appid"`
			PagePath string `json:"pagepath"`
		} `json:"miniprogram"`
		Data map[string]dataValue `json:"data"`
	}
	if !s.readSend(w, r, &in) {
		return
	}
	// A mini program calling bizsend is refused as unauthorized: its own
	// API is subscribe/send.
	a, err := s.oaApp(r)
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	if !templateIDPattern.MatchString(in.TemplateID) {
		s.failMsg(w, 40037, msgBadTemplate)
		return
	}
	if in.Page != "" && !webPage.MatchString(in.Page) {
		s.failMsg(w, 47003, "argument invalid! page")
		return
	}
	if in.MiniProgram != nil && in.MiniProgram.AppID == "" {
		s.failMsg(w, 47003, "argument invalid! miniprogram.appid")
		return
	}
	data, bad := subscribeData(in.Data)
	if bad != "" {
		s.failMsg(w, 47003, bad)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	// An openid of another app is no openid of this account's: 40003.
	p, _ := s.member(a.AppID, in.ToUser)
	if in.ToUser == "" || p == nil {
		s.mu.Unlock()
		s.fail(w, 40003)
		return
	}
	c := s.channels.oaConsents[p.ID][in.TemplateID]
	if c == nil || !c.longTerm && c.left <= 0 {
		s.mu.Unlock()
		s.failMsg(w, 43101, msgNoConsent)
		return
	}
	if !c.longTerm {
		c.left--
	}
	msgid := s.messages.newMsgID()
	report := SubscribeItem{TemplateID: in.TemplateID, MsgID: msgid, ErrorStatus: SentSuccess}
	if s.messages.refuse[p.ID] {
		report.ErrorCode, report.ErrorStatus = SentUserBlockCode, ReportUserBlock
	} else {
		s.deliverToInbox(p.ID, InboxMessage{Channel: ChannelOASubscribe, AppID: a.AppID, TemplateID: in.TemplateID, Data: data, MsgID: msgid, At: now})
	}
	sent := s.event(p, a.AppID, now, EventSent)
	sent.List = []SubscribeItem{report}
	s.messages.reports = append(s.messages.reports, sent)
	wait, noMsgID := s.messages.reportWait, s.channels.noMsgID
	s.mu.Unlock()
	if wait > 0 {
		time.AfterFunc(wait, func() { s.PushTemplateReports(context.Background()) })
	}
	out := map[string]any{"errcode": 0, "errmsg": "ok"}
	if !noMsgID {
		out["msgid"] = json.Number(msgid)
	}
	s.answer(w, out, nil)
}

// maxCustomText is the most bytes of a customer-service text (45002 past
// it).
const maxCustomText = 2048

// handleCustomSend is POST /cgi-bin/message/custom/send.
func (s *Sandbox) handleCustomSend(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ToUser  string `json:"touser"`
		MsgType string `json:"msgtype"`
		Text    *struct {
			Content string `json:"content"`
		} `json:"text"`
		MiniProgramPage *MiniProgramCard `json:"miniprogrampage"`
	}
	if !s.readSend(w, r, &in) {
		return
	}
	// The sandbox keeps customer-service windows for official accounts
	// only; the mini programs' customer-service messages are not played.
	a, err := s.oaApp(r)
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	msg := InboxMessage{Channel: ChannelCustomerService, AppID: a.AppID}
	switch in.MsgType {
	case "text":
		switch {
		case in.Text == nil || in.Text.Content == "":
			s.fail(w, 44004) // empty content
			return
		case len(in.Text.Content) > maxCustomText:
			s.failMsg(w, 45002, msgTooLong)
			return
		}
		msg.Text = in.Text.Content
	case "miniprogrampage":
		c := in.MiniProgramPage
		if c == nil || c.AppID == "" || c.PagePath == "" || c.ThumbMediaID == "" {
			s.fail(w, 47001)
			return
		}
		msg.Card = c
	default:
		// image, voice, news, ... need uploaded media the sandbox does
		// not keep.
		s.fail(w, 40008)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, m := s.member(a.AppID, in.ToUser)
	switch {
	case in.ToUser == "" || p == nil:
		s.fail(w, 40003)
		return
	case !m.following:
		s.failMsg(w, 43004, msgRequireSubscribe)
		return
	}
	var open []*csAllowance
	if cw := s.channels.windows[memberKey{p.ID, a.AppID}]; cw != nil {
		for _, a := range []*csAllowance{&cw.event, &cw.message} {
			if now.Before(a.until) {
				open = append(open, a)
			}
		}
	}
	if len(open) == 0 {
		s.failMsg(w, 45015, msgWindowClosed)
		return
	}
	var use *csAllowance
	for _, a := range open {
		if a.left > 0 && (use == nil || a.until.Before(use.until)) {
			use = a
		}
	}
	if use == nil { // the allowance that ends first is used first
		s.failMsg(w, 45047, msgResponseLimit)
		return
	}
	use.left--
	msg.At = now
	s.deliverToInbox(p.ID, msg)
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok"})
}

// MiniProgramCard is a customer-service mini-program card as it reached
// the person.
type MiniProgramCard struct {
	Title        string `json:"title"`
	AppID        string `json:"appid"`
	PagePath     string `json:"pagepath"`
	ThumbMediaID string `json:"thumb_media_id"`
}

// outgoing is a push: the official account it goes to, the event and the
// parts push.Event does not carry (a text message's Content, a
// subscribe-notification event's List).
type outgoing struct {
	appid string
	push.Event
	Content string
	List    []SubscribeItem
}

// xmlText escapes s for an XML element's text.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// listElements names the element that wraps each event's List.
var listElements = map[string]string{
	EventPopup:  "SubscribeMsgPopupEvent",
	EventChange: "SubscribeMsgChangeEvent",
	EventSent:   "SubscribeMsgSentEvent",
}

// xml renders the push as the platform's XML.
func (m outgoing) xml() []byte {
	msg := push.Marshal(m.Event)
	var b strings.Builder
	if m.Content != "" {
		b.WriteString("<Content>" + xmlText(m.Content) + "</Content>")
	}
	if wrap := listElements[m.Event.Event]; wrap != "" {
		b.WriteString("<" + wrap + ">")
		for _, it := range m.List {
			b.WriteString("<List><TemplateId>" + xmlText(it.TemplateID) + "</TemplateId>")
			switch m.Event.Event {
			case EventSent:
				b.WriteString("<MsgID>" + it.MsgID + "</MsgID><ErrorCode>" + strconv.Itoa(it.ErrorCode) +
					"</ErrorCode><ErrorStatus>" + xmlText(it.ErrorStatus) + "</ErrorStatus>")
			case EventPopup:
				b.WriteString("<SubscribeStatusString>" + it.Status + "</SubscribeStatusString><PopupScene>" + it.PopupScene + "</PopupScene>")
			default:
				b.WriteString("<SubscribeStatusString>" + it.Status + "</SubscribeStatusString>")
			}
			b.WriteString("</List>")
		}
		b.WriteString("</" + wrap + ">")
	}
	end := len(msg) - len("</xml>")
	return append(append(msg[:end:end], b.String()...), "</xml>"...)
}
