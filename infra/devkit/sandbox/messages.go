package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"wxbridge/shared/wechat/push"
)

// messageBook is what the platform keeps about messages: each person's
// subscribe consents and inbox, the template quota, client_msg_id dedup and
// the delivery reports still to push.
type messageBook struct {
	consents   map[string]map[string]int // person ID -> template_id -> one-time consents left
	inbox      map[string][]InboxMessage // person ID -> messages, oldest first
	refuse     map[string]bool           // person ID -> refuses template messages (reports "failed:user block")
	sentByID   map[string]clientMsg      // openid + "\x00" + client_msg_id -> the send it made
	quota      int                       // template messages per platform day; 0 means DefaultTemplateQuota
	quotaDay   string
	quotaUsed  map[string]int // template messages today, by official account
	nextMsgID  int64
	reports    []outgoing // TEMPLATESENDJOBFINISH and subscribe_msg_sent_event pushes not made yet
	reportWait time.Duration
}

type clientMsg struct {
	msgid string
	at    time.Time
}

// DefaultTemplateQuota is the platform's default daily template-message
// quota per official account.
const DefaultTemplateQuota = 100000

// clientMsgWindow is how long the platform deduplicates template messages
// by openid and client_msg_id.
const clientMsgWindow = 10 * time.Minute

// Channels of InboxMessage (and see channels.go).
const (
	ChannelTemplate  = "template"
	ChannelSubscribe = "subscribe"
)

// InboxMessage is one message that reached a person's phone.
type InboxMessage struct {
	Channel    string            `json:"channel"` // template, subscribe, oa_subscribe or customer_service
	AppID      string            `json:"appid"`   // the app that sent it
	TemplateID string            `json:"template_id,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	MsgID      string            `json:"msgid,omitempty"` // oa_subscribe: the msgid its sent event reports
	// Text or Card is a customer-service message.
	Text string           `json:"text,omitempty"`
	Card *MiniProgramCard `json:"miniprogrampage,omitempty"`
	At   time.Time        `json:"at"`
}

// Report statuses of TEMPLATESENDJOBFINISH.
const (
	ReportSuccess   = "success"
	ReportUserBlock = "failed:user block"
)

// messageRoutes adds the message-sending APIs.
func (s *Sandbox) messageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/cgi-bin/message/template/send", s.handleTemplateSend)
	mux.HandleFunc("/cgi-bin/message/subscribe/send", s.handleSubscribeSend)
	s.channelRoutes(mux) // channels.go
}

// messageControlRoutes adds consents, inboxes and delivery reports to the
// control API.
func (s *Sandbox) messageControlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /sandbox/people/{id}/consent", s.postConsent)
	mux.HandleFunc("GET /sandbox/people/{id}/inbox", s.getInbox)
	mux.HandleFunc("POST /sandbox/people/{id}/refuse-templates", s.postRefuseTemplates)
	mux.HandleFunc("POST /sandbox/template-reports", s.postTemplateReports)
	mux.HandleFunc("POST /sandbox/template-quota", s.postTemplateQuota)
	s.channelControlRoutes(mux) // channels.go
}

// GrantConsent plays the person accepting wx.requestSubscribeMessage for
// templateID: one more one-time consent, used up by one subscribe message.
// It returns the consents now held for that template.
func (s *Sandbox) GrantConsent(id, templateID string) (int, error) {
	if templateID == "" {
		return 0, errors.New("sandbox: consent needs a template_id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.people[id] == nil {
		return 0, ErrNoPerson
	}
	m := &s.messages
	if m.consents == nil {
		m.consents = map[string]map[string]int{}
	}
	if m.consents[id] == nil {
		m.consents[id] = map[string]int{}
	}
	m.consents[id][templateID]++
	return m.consents[id][templateID], nil
}

// Consents reports how many one-time consents person id holds for
// templateID.
func (s *Sandbox) Consents(id, templateID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages.consents[id][templateID]
}

// Inbox lists the messages that reached person id, oldest first.
func (s *Sandbox) Inbox(id string) ([]InboxMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.people[id] == nil {
		return nil, ErrNoPerson
	}
	out := make([]InboxMessage, 0, len(s.messages.inbox[id]))
	return append(out, s.messages.inbox[id]...), nil
}

// RefuseTemplates makes person id refuse (or accept again) the official
// accounts' template messages: the platform still accepts a send and
// answers a msgid, but nothing reaches the person and the delivery report
// says "failed:user block".
func (s *Sandbox) RefuseTemplates(id string, refuse bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.people[id] == nil {
		return ErrNoPerson
	}
	if s.messages.refuse == nil {
		s.messages.refuse = map[string]bool{}
	}
	s.messages.refuse[id] = refuse
	return nil
}

// SetTemplateQuota sets each official account's daily template-message
// quota (DefaultTemplateQuota when n is 0); past it, template/send answers
// 45009 until midnight Beijing time.
func (s *Sandbox) SetTemplateQuota(n int) {
	s.mu.Lock()
	s.messages.quota = max(n, 0)
	s.mu.Unlock()
}

// SetTemplateReportDelay makes each delivery report (a template message's
// TEMPLATESENDJOBFINISH, a subscribe notification's
// subscribe_msg_sent_event) go out by itself d (real time) after the send,
// as on the platform.
// With 0 (the default) reports wait for PushTemplateReports, which tests
// call when they want them.
func (s *Sandbox) SetTemplateReportDelay(d time.Duration) {
	s.mu.Lock()
	s.messages.reportWait = max(d, 0)
	s.mu.Unlock()
}

// PendingTemplateReports reports how many delivery reports wait to be
// pushed.
func (s *Sandbox) PendingTemplateReports() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages.reports)
}

// PushTemplateReports pushes every waiting delivery report
// (TEMPLATESENDJOBFINISH, subscribe_msg_sent_event) to its official
// account's push target, oldest first, with the platform's retries. The
// reports of an account without a push target stay waiting, and the call
// then answers ErrNoPushTarget with the deliveries it made.
func (s *Sandbox) PushTemplateReports(ctx context.Context) ([]Delivery, error) {
	s.mu.Lock()
	var reports, waiting []outgoing
	for _, e := range s.messages.reports {
		if s.push.targets[e.appid] == nil {
			waiting = append(waiting, e)
		} else {
			reports = append(reports, e)
		}
	}
	s.messages.reports = waiting
	s.mu.Unlock()
	out := make([]Delivery, 0, len(reports))
	for _, e := range reports {
		d, err := s.deliver(ctx, e)
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
	if len(waiting) > 0 {
		return out, ErrNoPushTarget
	}
	return out, nil
}

// failMsg writes an error answer with a message of its own (the platform
// names the offending field in some errmsgs), ending in a rid.
func (s *Sandbox) failMsg(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, http.StatusOK, struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}{code, msg + " rid: " + s.rid()})
}

// The platform's messages for the send APIs' errcodes, as developers quote
// them.
const (
	msgRequireSubscribe = "require subscribe"
	msgNoConsent        = "user refuse to accept the msg"
	msgBadTemplate      = "invalid template_id"
	msgBadPage          = "invalid page"
)

type dataValue struct {
	Value *string `json:"value"`
}

// readSend reads a send API's JSON body into v, answering the platform's
// errcode for a wrong method (43002), an empty body (44002) or a body that
// is not JSON (47001).
func (s *Sandbox) readSend(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Method != http.MethodPost {
		s.fail(w, 43002)
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(b) == 0 {
		s.fail(w, 44002)
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		s.fail(w, 47001)
		return false
	}
	return true
}

// templateIDPattern is the shape of a template id the account has added:
// 43 characters of base64url. Any other id answers 40037.
var templateIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// plainData checks that every key carries a value and returns the values.
func plainData(data map[string]dataValue) (map[string]string, string) {
	out := make(map[string]string, len(data))
	for k, v := range data {
		if v.Value == nil {
			return nil, "argument invalid! data." + k + ".value is empty"
		}
		out[k] = *v.Value
	}
	return out, ""
}

// templateLine is the most characters a template message shows per line
// since 2023; longer values are cut, not refused.
const templateLine = 20

// handleTemplateSend is POST /cgi-bin/message/template/send.
func (s *Sandbox) handleTemplateSend(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ToUser      string               `json:"touser"`
		TemplateID  string               `json:"template_id"`
		URL         string               `json:"url"`
		ClientMsgID string               `json:"client_msg_id"`
		Data        map[string]dataValue `json:"data"`
	}
	if !s.readSend(w, r, &in) {
		return
	}
	a, err := s.oaApp(r)
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	if !templateIDPattern.MatchString(in.TemplateID) {
		s.failMsg(w, 40037, msgBadTemplate)
		return
	}
	data, bad := plainData(in.Data)
	if bad != "" {
		s.failMsg(w, 47003, bad)
		return
	}
	for k, v := range data {
		if rs := []rune(v); len(rs) > templateLine {
			data[k] = string(rs[:templateLine])
		}
	}
	now := s.clock.Now()
	s.mu.Lock()
	msgid, code, msg := s.sendTemplate(a.AppID, in.ToUser, in.TemplateID, in.ClientMsgID, data, now)
	wait := s.messages.reportWait
	s.mu.Unlock()
	switch {
	case code != 0 && msg != "":
		s.failMsg(w, code, msg)
		return
	case code != 0:
		s.fail(w, code)
		return
	}
	if wait > 0 {
		time.AfterFunc(wait, func() { s.PushTemplateReports(context.Background()) })
	}
	s.answer(w, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": json.Number(msgid)}, nil)
}

// sendTemplate applies official account appid's template send (s.mu held)
// and returns its msgid, or the errcode (and message, when the platform's
// is not the usual one).
func (s *Sandbox) sendTemplate(appid, openid, templateID, clientMsgID string, data map[string]string, now time.Time) (string, int, string) {
	m := &s.messages
	// An openid of another app is no openid of this account's: 40003.
	p, in := s.member(appid, openid)
	switch {
	case openid == "" || p == nil:
		return "", 40003, ""
	case !in.following:
		return "", 43004, msgRequireSubscribe
	}
	dedup := openid + "\x00" + clientMsgID
	if prev, ok := m.sentByID[dedup]; clientMsgID != "" && ok && now.Sub(prev.at) < clientMsgWindow {
		return prev.msgid, 0, ""
	}
	if day := platformDay(now); m.quotaDay != day || m.quotaUsed == nil {
		m.quotaDay, m.quotaUsed = day, map[string]int{}
	}
	quota := m.quota
	if quota == 0 {
		quota = DefaultTemplateQuota
	}
	if m.quotaUsed[appid] >= quota {
		return "", 45009, ""
	}
	m.quotaUsed[appid]++
	msgid := m.newMsgID()
	if clientMsgID != "" {
		if m.sentByID == nil {
			m.sentByID = map[string]clientMsg{}
		}
		m.sentByID[dedup] = clientMsg{msgid, now}
	}
	status := ReportSuccess
	if m.refuse[p.ID] {
		status = ReportUserBlock
	} else {
		s.deliverToInbox(p.ID, InboxMessage{Channel: ChannelTemplate, AppID: appid, TemplateID: templateID, Data: data, At: now})
	}
	e := s.event(p, appid, now, push.TemplateFinish)
	e.MsgID, e.Status = msgid, status
	m.reports = append(m.reports, e)
	return msgid, 0, ""
}

// newMsgID makes the msgid of a template message or subscribe notification:
// a 64-bit number, increasing (s.mu held).
func (m *messageBook) newMsgID() string {
	if m.nextMsgID == 0 {
		m.nextMsgID = 2_000_000_000_000_000_000 + int64(randomInt(1<<30))<<8
	}
	m.nextMsgID++
	return strconv.FormatInt(m.nextMsgID, 10)
}

func (s *Sandbox) deliverToInbox(id string, msg InboxMessage) {
	if s.messages.inbox == nil {
		s.messages.inbox = map[string][]InboxMessage{}
	}
	s.messages.inbox[id] = append(s.messages.inbox[id], msg)
}

// handleSubscribeSend is POST /cgi-bin/message/subscribe/send.
func (s *Sandbox) handleSubscribeSend(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ToUser           string               `json:"touser"`
		TemplateID       string               `json:"template_id"`
		Page             string               `json:"page"`
		MiniProgramState string               `json:"miniprogram_state"`
		Data             map[string]dataValue `json:"data"`
	}
	if !s.readSend(w, r, &in) {
		return
	}
	app, err := s.authorize(r)
	if err == nil && s.ofKind(AppMiniProgram, app.AppID) == nil {
		err = errcode(48001) // an OA's subscribe messages are subscribe/bizsend
	}
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	if !templateIDPattern.MatchString(in.TemplateID) {
		s.failMsg(w, 40037, msgBadTemplate)
		return
	}
	// page must be a page of this mini program, not a web address.
	if strings.Contains(in.Page, "://") || strings.ContainsAny(in.Page, " \t\n") {
		s.failMsg(w, 41030, msgBadPage)
		return
	}
	switch in.MiniProgramState {
	case "", "developer", "trial", "formal":
	default:
		s.failMsg(w, 47003, "argument invalid! miniprogram_state")
		return
	}
	data, bad := subscribeData(in.Data)
	if bad != "" {
		s.failMsg(w, 47003, bad)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	// An openid of another app is no openid of this mini program's: 40003.
	p, _ := s.member(app.AppID, in.ToUser)
	if in.ToUser == "" || p == nil {
		s.fail(w, 40003)
		return
	}
	if s.messages.consents[p.ID][in.TemplateID] <= 0 {
		s.failMsg(w, 43101, msgNoConsent)
		return
	}
	s.messages.consents[p.ID][in.TemplateID]--
	s.deliverToInbox(p.ID, InboxMessage{Channel: ChannelSubscribe, AppID: app.AppID, TemplateID: in.TemplateID, Data: data, At: now})
	s.answer(w, map[string]any{"errcode": 0, "errmsg": "ok"}, nil)
}

// checkSubscribeData applies the platform's limits by key type (the key's
// letters; the number after them is free) and returns the 47003 errmsg
// naming the first offending field, or "". It is written apart from
// wxbridge's own validation on purpose: the sandbox is the referee.
func checkSubscribeData(data map[string]string) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	// The platform reports one field; report the same one every time.
	slices.Sort(keys)
	for _, k := range keys {
		v := data[k]
		field := "argument invalid! data." + k + ".value"
		if v == "" {
			return field + " is empty"
		}
		if !subscribeValueOK(strings.TrimRight(k, "0123456789"), v) {
			return field + " exceeds limit or has a wrong format"
		}
	}
	return ""
}

func isHan(r rune) bool   { return r >= 0x3400 && r <= 0x4DBF || r >= 0x4E00 && r <= 0x9FFF }
func isDigit(r rune) bool { return r >= '0' && r <= '9' }
func isLetter(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}
func isASCIISymbol(r rune) bool {
	return r > ' ' && r < 0x7F && !isDigit(r) && !isLetter(r)
}

func all(v string, ok func(rune) bool) bool {
	for _, r := range v {
		if !ok(r) {
			return false
		}
	}
	return true
}

// subscribeValueOK is the limit of one key type.
func subscribeValueOK(kind, v string) bool {
	rs := []rune(v)
	n := len(rs)
	switch kind {
	case "thing":
		return n <= 20
	case "number":
		t := strings.TrimPrefix(v, "-")
		whole, frac, dot := strings.Cut(t, ".")
		return n <= 32 && whole != "" && all(whole, isDigit) && (!dot || frac != "" && all(frac, isDigit))
	case "letter":
		return n <= 32 && all(v, isLetter)
	case "symbol":
		return n <= 5 && all(v, func(r rune) bool { return !isDigit(r) && !isLetter(r) && !isHan(r) && r != ' ' })
	case "character_string":
		return n <= 32 && all(v, func(r rune) bool { return r > ' ' && r < 0x7F })
	case "time", "date":
		for _, part := range strings.Split(v, "~") {
			if !dateTimeOK(kind, strings.TrimSpace(part)) {
				return false
			}
		}
		return true
	case "amount":
		t := strings.TrimSuffix(v, "元")
		if t != "" {
			if r := []rune(t)[0]; !isDigit(r) {
				t = string([]rune(t)[1:]) // one currency symbol
				if isLetter(r) || isHan(r) {
					return false
				}
			}
		}
		whole, frac, dot := strings.Cut(t, ".")
		return whole != "" && len(whole) <= 10 && all(whole, isDigit) && (!dot || frac != "" && all(frac, isDigit))
	case "phone_number":
		return n <= 17 && all(v, func(r rune) bool { return isDigit(r) || r == ' ' || isASCIISymbol(r) })
	case "car_number":
		if n > 8 {
			return false
		}
		for i, r := range rs {
			if !(isDigit(r) || isLetter(r) || (i == 0 || i == n-1) && isHan(r)) {
				return false
			}
		}
		return true
	case "name":
		for _, r := range rs {
			if isHan(r) {
				return n <= 10
			}
		}
		return n <= 20
	case "phrase":
		return n <= 5 && all(v, isHan)
	}
	return true // enum and types the sandbox does not know: the template's business
}

// dateTimeOK checks one side of a time or date range: the characters of a
// written date and time, a clock time (time) or a year (date).
func dateTimeOK(kind, v string) bool {
	if v == "" || !all(v, func(r rune) bool { return isDigit(r) || strings.ContainsRune("年月日:-/. ", r) }) {
		return false
	}
	if kind == "time" {
		return clockTime.MatchString(v)
	}
	return calendarDate.MatchString(v)
}

var (
	clockTime    = regexp.MustCompile(`(^|[^0-9])[0-9]{1,2}:[0-9]{2}`)
	calendarDate = regexp.MustCompile(`^[0-9]{4}\s*[-/.年]\s*[0-9]{1,2}`)
)

func (s *Sandbox) postConsent(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TemplateID string `json:"template_id"`
	}
	if err := decodeBody(r, &req); err != nil || req.TemplateID == "" {
		controlError(w, http.StatusBadRequest, `want {"template_id": "..."}`)
		return
	}
	n, err := s.GrantConsent(r.PathValue("id"), req.TemplateID)
	if err != nil {
		controlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"template_id": req.TemplateID, "consents": n})
}

func (s *Sandbox) getInbox(w http.ResponseWriter, r *http.Request) {
	msgs, err := s.Inbox(r.PathValue("id"))
	if err != nil {
		controlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, msgs)
}

func (s *Sandbox) postRefuseTemplates(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Refuse *bool `json:"refuse"`
	}
	if err := decodeBody(r, &req); err != nil || req.Refuse == nil {
		controlError(w, http.StatusBadRequest, `want {"refuse": true|false}`)
		return
	}
	if err := s.RefuseTemplates(r.PathValue("id"), *req.Refuse); err != nil {
		controlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"refuse": *req.Refuse})
}

func (s *Sandbox) postTemplateReports(w http.ResponseWriter, r *http.Request) {
	ds, err := s.PushTemplateReports(r.Context())
	if err != nil {
		controlError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string][]Delivery{"deliveries": ds})
}

func (s *Sandbox) postTemplateQuota(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Daily *int `json:"daily"`
	}
	if err := decodeBody(r, &req); err != nil || req.Daily == nil || *req.Daily < 0 {
		controlError(w, http.StatusBadRequest, `want {"daily": N} (0 restores the default)`)
		return
	}
	s.SetTemplateQuota(*req.Daily)
	writeJSON(w, http.StatusOK, map[string]int{"daily": *req.Daily})
}

// subscribeData reads a subscribe message's data (mini program's or
// official account's bizsend: the same typed keys), or the errmsg of a 47003
// that refuses it.
func subscribeData(in map[string]dataValue) (map[string]string, string) {
	data, bad := plainData(in)
	if bad == "" && len(data) == 0 {
		bad = "argument invalid! data is empty"
	}
	if bad == "" {
		bad = checkSubscribeData(data)
	}
	return data, bad
}
