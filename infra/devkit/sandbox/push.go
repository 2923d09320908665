package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"wxbridge/shared/wechat/push"
)

// PushTarget is what the OA console holds for server push: our URL, the
// Token, the EncodingAESKey and the encryption mode.
type PushTarget struct {
	URL            string    `json:"url"`
	Token          string    `json:"token"`
	EncodingAESKey string    `json:"encoding_aes_key,omitempty"`
	Mode           push.Mode `json:"mode"`
	// Timeout is how long WeChat waits for an answer: 5 s on the platform.
	Timeout time.Duration `json:"-"`
	// Retries is how often an unanswered push is sent again: 3 on the
	// platform (same CreateTime each time).
	Retries int `json:"retries"`
}

// ErrNoPushTarget reports a follow or scan before SetPushTarget (or
// SetPushTargetApp for the official account concerned).
var ErrNoPushTarget = errors.New("sandbox: no push URL configured")

// badRequest marks a control-API body that could not be read.
type badRequest struct{ error }

// followState is what the platform keeps about a person's follow.
type followState struct {
	subscribeTime int64
	scene         string // subscribe_scene, e.g. ADD_SCENE_QR_CODE
	qrScene       string // qr_scene_str when followed through a code
	unsubscribed  bool   // has followed and unfollowed since
}

// pushState is the sandbox's server-push setup, one per official account,
// and the QR tickets.
type pushState struct {
	targets map[string]*pushTarget // by the official account's appid
	tickets map[string]qrTicket
}

// pushTarget is an official account's push setup.
type pushTarget struct {
	PushTarget
	cipher *push.Cipher
	client *http.Client
}

// qrTicket is a parametric QR code of an official account.
type qrTicket struct {
	appid string
	scene string // scene_str
}

// SetPushTarget configures where and how the default official account's
// pushes are delivered.
func (s *Sandbox) SetPushTarget(t PushTarget) error {
	return s.SetPushTargetApp("", t)
}

// SetPushTargetApp configures where and how official account appid ("" the
// default) delivers its pushes: each account has its own URL, token and
// EncodingAESKey, and encrypts with its own appid.
func (s *Sandbox) SetPushTargetApp(appid string, t PushTarget) error {
	a, err := s.app(AppOfficialAccount, appid)
	if err != nil {
		return err
	}
	mode, err := push.ParseMode(string(t.Mode))
	if err != nil {
		return err
	}
	t.Mode = mode
	var c *push.Cipher
	if mode != push.Plaintext {
		if c, err = push.NewCipher(t.EncodingAESKey, a.AppID); err != nil {
			return err
		}
	}
	if t.URL == "" || t.Token == "" {
		return errors.New("sandbox: push target needs url and token")
	}
	if t.Timeout <= 0 {
		t.Timeout = 5 * time.Second
	}
	if t.Retries <= 0 {
		t.Retries = 3
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.push.targets == nil {
		s.push.targets = map[string]*pushTarget{}
	}
	s.push.targets[a.AppID] = &pushTarget{PushTarget: t, cipher: c, client: &http.Client{Timeout: t.Timeout}}
	return nil
}

// Delivery reports how a push went, attempt by attempt.
type Delivery struct {
	Event push.Event `json:"event"`
	// Content is a text message's; List a subscribe-notification event's
	// entries, one per template.
	Content   string          `json:"content,omitempty"`
	List      []SubscribeItem `json:"list,omitempty"`
	Delivered bool            `json:"delivered"`
	Attempts  []Attempt       `json:"attempts"`
}

// Attempt is one POST of a push.
type Attempt struct {
	Status   int           `json:"status,omitempty"`
	Body     string        `json:"body,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Follow makes person id follow the default official account, through a
// parametric QR code when scene is set, and pushes the subscribe event.
func (s *Sandbox) Follow(ctx context.Context, id, scene string) (Delivery, error) {
	return s.FollowApp(ctx, id, "", scene)
}

// FollowApp makes person id follow official account appid ("" the
// default), through a parametric QR code when scene is set, and pushes the
// subscribe event to that account's push target.
func (s *Sandbox) FollowApp(ctx context.Context, id, appid, scene string) (Delivery, error) {
	return s.followEvent(ctx, id, appid, scene, "", true)
}

// Unfollow makes person id unfollow the default official account and
// pushes the unsubscribe event.
func (s *Sandbox) Unfollow(ctx context.Context, id string) (Delivery, error) {
	return s.UnfollowApp(ctx, id, "")
}

// UnfollowApp makes person id unfollow official account appid ("" the
// default) and pushes the unsubscribe event.
func (s *Sandbox) UnfollowApp(ctx context.Context, id, appid string) (Delivery, error) {
	a, err := s.app(AppOfficialAccount, appid)
	if err != nil {
		return Delivery{}, err
	}
	now := s.clock.Now()
	s.mu.Lock()
	p, m, err := s.pushable(id, a.AppID)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	if !m.following {
		s.mu.Unlock()
		return Delivery{}, errors.New("sandbox: person does not follow")
	}
	m.following, m.follow.unsubscribed = false, true
	delete(s.channels.windows, memberKey{p.ID, a.AppID}) // customer-service messages need a follower
	e := s.event(p, a.AppID, now, push.Unsubscribe)
	s.mu.Unlock()
	return s.deliver(ctx, e)
}

// Scan plays a person scanning a parametric QR code of the default
// official account.
func (s *Sandbox) Scan(ctx context.Context, id, scene, ticket string) (Delivery, error) {
	return s.ScanApp(ctx, id, "", scene, ticket)
}

// ScanApp plays a person scanning a parametric QR code of official account
// appid ("" the default), by scene or by ticket: a follower causes a SCAN
// event, anyone else follows (subscribe with qrscene_).
func (s *Sandbox) ScanApp(ctx context.Context, id, appid, scene, ticket string) (Delivery, error) {
	a, err := s.app(AppOfficialAccount, appid)
	if err != nil {
		return Delivery{}, err
	}
	if ticket != "" {
		s.mu.Lock()
		t, ok := s.push.tickets[ticket]
		s.mu.Unlock()
		if !ok || t.appid != a.AppID {
			return Delivery{}, errors.New("sandbox: unknown ticket")
		}
		scene = t.scene
	}
	if scene == "" {
		return Delivery{}, errors.New("sandbox: scan needs a scene or a ticket")
	}
	return s.followEvent(ctx, id, a.AppID, scene, ticket, false)
}

func (s *Sandbox) followEvent(ctx context.Context, id, appid, scene, ticket string, mustBeNew bool) (Delivery, error) {
	a, err := s.app(AppOfficialAccount, appid)
	if err != nil {
		return Delivery{}, err
	}
	now := s.clock.Now()
	s.mu.Lock()
	p, m, err := s.pushable(id, a.AppID)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	if ticket == "" && scene != "" {
		ticket = s.ticketFor(a.AppID, scene)
	}
	var e outgoing
	switch {
	case m.following && mustBeNew:
		s.mu.Unlock()
		return Delivery{}, errors.New("sandbox: person already follows")
	case m.following:
		e = s.event(p, a.AppID, now, push.Scan)
		e.EventKey, e.Ticket = scene, ticket
	default:
		m.following = true
		m.follow.subscribeTime, m.follow.scene, m.follow.qrScene = now.Unix(), "ADD_SCENE_SEARCH", ""
		e = s.event(p, a.AppID, now, push.Subscribe)
		if scene != "" {
			m.follow.scene, m.follow.qrScene = "ADD_SCENE_QR_CODE", scene
			e.EventKey, e.Ticket = "qrscene_"+scene, ticket
		}
	}
	s.interacted(p.ID, a.AppID, true, now) // channels.go
	s.mu.Unlock()
	return s.deliver(ctx, e)
}

// pushable returns person id and their membership of official account
// appid, if a change of their follow state can be pushed (s.mu held). It
// refuses before anything changes: a follow nobody is told about would
// leave the sandbox and wxbridge disagreeing.
func (s *Sandbox) pushable(id, appid string) (*person, *membership, error) {
	p, ok := s.people[id]
	switch {
	case !ok:
		return nil, nil, ErrNoPerson
	case s.push.targets[appid] == nil:
		return nil, nil, ErrNoPushTarget
	}
	return p, p.in(appid), nil
}

// ticketFor issues a ticket of official account appid for scene (s.mu
// held).
func (s *Sandbox) ticketFor(appid, scene string) string {
	if s.push.tickets == nil {
		s.push.tickets = map[string]qrTicket{}
	}
	t := "gQ" + randomB64(38)
	s.push.tickets[t] = qrTicket{appid, scene}
	return t
}

// event is a push from person p to official account appid (s.mu held).
func (s *Sandbox) event(p *person, appid string, now time.Time, name string) outgoing {
	return outgoing{appid: appid, Event: push.Event{
		ToUserName:   OriginalID(appid),
		FromUserName: p.in(appid).openid,
		CreateTime:   now.Unix(),
		MsgType:      "event",
		Event:        name,
	}}
}

// OriginalID is the original id ("gh_" + 12 hex) of official account
// appid, which the platform puts in ToUserName: derived from the appid, so
// that every account has its own and keeps it.
func OriginalID(appid string) string {
	sum := sha256.Sum256([]byte(appid))
	return "gh_" + hex.EncodeToString(sum[:6])
}

// deliver pushes m to its official account's push target the way WeChat
// does: POST, wait up to the timeout for "success" (or an empty body), and
// send the same event again up to Retries times otherwise.
func (s *Sandbox) deliver(ctx context.Context, m outgoing) (Delivery, error) {
	s.mu.Lock()
	pt := s.push.targets[m.appid]
	s.mu.Unlock()
	d := Delivery{Event: m.Event, Content: m.Content, List: m.List}
	if pt == nil {
		return d, ErrNoPushTarget
	}
	t, c, hc := pt.PushTarget, pt.cipher, pt.client
	for attempt := 0; attempt <= t.Retries; attempt++ {
		a := s.post(ctx, hc, t, c, m)
		d.Attempts = append(d.Attempts, a)
		if a.Error == "" && a.Status == http.StatusOK && (a.Body == "" || a.Body == "success") {
			d.Delivered = true
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	return d, nil
}

func (s *Sandbox) post(ctx context.Context, hc *http.Client, t PushTarget, c *push.Cipher, m outgoing) Attempt {
	start := time.Now()
	ts := strconv.FormatInt(s.clock.Now().Unix(), 10)
	nonce := strconv.Itoa(randomInt(1 << 30))
	q, body := seal(t, c, m, ts, nonce)
	u := t.URL + "?" + query(q, m.FromUserName)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(string(body)))
	if err != nil {
		return Attempt{Error: err.Error()}
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := hc.Do(req)
	if err != nil {
		return Attempt{Error: err.Error(), Duration: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return Attempt{Status: resp.StatusCode, Body: string(b), Duration: time.Since(start)}
}

// seal signs the push and, unless the mode is plaintext, encrypts it: in
// safe mode the body has only ToUserName and Encrypt, in compatible mode
// the plaintext fields come first. (push.Seal does the same for the events
// push.Event carries; the sandbox renders the XML of the others itself.)
func seal(t PushTarget, c *push.Cipher, m outgoing, ts, nonce string) (push.Query, []byte) {
	msg := m.xml()
	q := push.Query{Timestamp: ts, Nonce: nonce, Signature: push.Signature(t.Token, ts, nonce)}
	if t.Mode == push.Plaintext || t.Mode == "" || c == nil {
		return q, msg
	}
	enc := c.Encrypt(msg)
	q.EncryptType = "aes"
	q.MsgSignature = push.Signature(t.Token, ts, nonce, enc)
	body := []byte("<xml><ToUserName><![CDATA[" + m.ToUserName + "]]></ToUserName>")
	if t.Mode == push.Compatible {
		body = msg[:len(msg)-len("</xml>")]
	}
	return q, append(body, "<Encrypt><![CDATA["+enc+"]]></Encrypt></xml>"...)
}

// query renders the push query string as the platform does.
func query(q push.Query, openid string) string {
	v := "signature=" + q.Signature + "&timestamp=" + q.Timestamp + "&nonce=" + q.Nonce + "&openid=" + openid
	if q.EncryptType != "" {
		v += "&encrypt_type=" + q.EncryptType + "&msg_signature=" + q.MsgSignature
	}
	return v
}

// pushControlRoutes adds the follow, unfollow, scan and push-setup routes
// of the control API.
func (s *Sandbox) pushControlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /sandbox/push", func(w http.ResponseWriter, r *http.Request) {
		var t struct {
			PushTarget
			AppID string `json:"appid"`
		}
		if err := decodeBody(r, &t); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.SetPushTargetApp(t.AppID, t.PushTarget); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		out := map[string]any{"url": t.URL, "mode": t.Mode}
		if t.AppID != "" {
			out["appid"] = t.AppID
		}
		writeJSON(w, http.StatusOK, out)
	})
	var body struct {
		AppID  string `json:"appid"`
		Scene  string `json:"scene"`
		Ticket string `json:"ticket"`
	}
	mux.HandleFunc("POST /sandbox/people/{id}/follow", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		b := body
		if err := decodeBody(r, &b); err != nil {
			return Delivery{}, badRequest{err}
		}
		return s.FollowApp(r.Context(), id, b.AppID, b.Scene)
	}))
	mux.HandleFunc("POST /sandbox/people/{id}/unfollow", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		b := body
		if err := decodeBody(r, &b); err != nil {
			return Delivery{}, badRequest{err}
		}
		return s.UnfollowApp(r.Context(), id, b.AppID)
	}))
	mux.HandleFunc("POST /sandbox/people/{id}/scan", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		b := body
		if err := decodeBody(r, &b); err != nil {
			return Delivery{}, badRequest{err}
		}
		return s.ScanApp(r.Context(), id, b.AppID, b.Scene, b.Ticket)
	}))
}

// deliveryRoute serves a control route that plays something a person does
// and answers with the push it delivered: 400 for a bad request or an app
// of the wrong kind, 404 for an unknown person or app, 409 when the push
// could not be delivered.
func deliveryRoute(do func(r *http.Request, id string) (Delivery, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := do(r, r.PathValue("id"))
		var br badRequest
		switch {
		case errors.As(err, &br), errors.Is(err, ErrNoTemplate), errors.Is(err, ErrAppKind):
			controlError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, ErrNoPerson), errors.Is(err, ErrNoApp):
			controlError(w, http.StatusNotFound, err.Error())
		case err != nil:
			controlError(w, http.StatusConflict, err.Error())
		default:
			writeJSON(w, http.StatusOK, d)
		}
	}
}
