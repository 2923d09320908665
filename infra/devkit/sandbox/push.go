package sandbox

import (
	"context"
	"errors"
	"fmt"
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

// ErrNoPushTarget reports a follow or scan before SetPushTarget.
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

// pushState is the sandbox's server-push setup and its QR tickets.
type pushState struct {
	target  PushTarget
	cipher  *push.Cipher
	client  *http.Client
	tickets map[string]string // ticket -> scene_str
}

// SetPushTarget configures where and how pushes are delivered.
func (s *Sandbox) SetPushTarget(t PushTarget) error {
	mode, err := push.ParseMode(string(t.Mode))
	if err != nil {
		return err
	}
	t.Mode = mode
	var c *push.Cipher
	if mode != push.Plaintext {
		if c, err = push.NewCipher(t.EncodingAESKey, s.cfg.OfficialAccount.AppID); err != nil {
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
	s.push.target, s.push.cipher = t, c
	s.push.client = &http.Client{Timeout: t.Timeout}
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

// Follow makes person id follow the official account, through a parametric
// QR code when scene is set, and pushes the subscribe event.
func (s *Sandbox) Follow(ctx context.Context, id, scene string) (Delivery, error) {
	return s.followEvent(ctx, id, scene, "", true)
}

// Unfollow makes person id unfollow and pushes the unsubscribe event.
func (s *Sandbox) Unfollow(ctx context.Context, id string) (Delivery, error) {
	now := s.clock.Now()
	s.mu.Lock()
	p, err := s.pushable(id)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	if !p.Following {
		s.mu.Unlock()
		return Delivery{}, errors.New("sandbox: person does not follow")
	}
	p.Following, p.follow.unsubscribed = false, true
	delete(s.channels.windows, p.ID) // customer-service messages need a follower
	e := s.event(p, now, push.Unsubscribe)
	s.mu.Unlock()
	return s.deliver(ctx, outgoing{Event: e})
}

// Scan plays a person scanning a parametric QR code, by scene or by ticket:
// a follower causes a SCAN event, anyone else follows (subscribe with
// qrscene_).
func (s *Sandbox) Scan(ctx context.Context, id, scene, ticket string) (Delivery, error) {
	if ticket != "" {
		s.mu.Lock()
		sc, ok := s.push.tickets[ticket]
		s.mu.Unlock()
		if !ok {
			return Delivery{}, errors.New("sandbox: unknown ticket")
		}
		scene = sc
	}
	if scene == "" {
		return Delivery{}, errors.New("sandbox: scan needs a scene or a ticket")
	}
	return s.followEvent(ctx, id, scene, ticket, false)
}

func (s *Sandbox) followEvent(ctx context.Context, id, scene, ticket string, mustBeNew bool) (Delivery, error) {
	now := s.clock.Now()
	s.mu.Lock()
	p, err := s.pushable(id)
	if err != nil {
		s.mu.Unlock()
		return Delivery{}, err
	}
	if ticket == "" && scene != "" {
		ticket = s.ticketFor(scene)
	}
	var e push.Event
	switch {
	case p.Following && mustBeNew:
		s.mu.Unlock()
		return Delivery{}, errors.New("sandbox: person already follows")
	case p.Following:
		e = s.event(p, now, push.Scan)
		e.EventKey, e.Ticket = scene, ticket
	default:
		p.Following = true
		p.follow.subscribeTime, p.follow.scene, p.follow.qrScene = now.Unix(), "ADD_SCENE_SEARCH", ""
		e = s.event(p, now, push.Subscribe)
		if scene != "" {
			p.follow.scene, p.follow.qrScene = "ADD_SCENE_QR_CODE", scene
			e.EventKey, e.Ticket = "qrscene_"+scene, ticket
		}
	}
	s.interacted(p.ID, true, now) // channels.go
	s.mu.Unlock()
	return s.deliver(ctx, outgoing{Event: e})
}

// pushable returns person id, if a change of their follow state can be
// pushed (s.mu held). It refuses before anything changes: a follow nobody
// is told about would leave the sandbox and wxbridge disagreeing.
func (s *Sandbox) pushable(id string) (*person, error) {
	p, ok := s.people[id]
	switch {
	case !ok:
		return nil, ErrNoPerson
	case s.push.target.URL == "":
		return nil, ErrNoPushTarget
	}
	return p, nil
}

// ticketFor issues a ticket for scene (s.mu held).
func (s *Sandbox) ticketFor(scene string) string {
	if s.push.tickets == nil {
		s.push.tickets = map[string]string{}
	}
	t := "gQ" + randomB64(38)
	s.push.tickets[t] = scene
	return t
}

// event is an event from person p to the official account (s.mu held).
func (s *Sandbox) event(p *person, now time.Time, name string) push.Event {
	return push.Event{
		ToUserName:   ghID(s.cfg.OfficialAccount.AppID),
		FromUserName: p.OAOpenID,
		CreateTime:   now.Unix(),
		MsgType:      "event",
		Event:        name,
	}
}

// ghID is the official account's original id ("gh_" + 12 hex), which the
// platform puts in ToUserName.
func ghID(appid string) string {
	return "gh_" + fmt.Sprintf("%x", appid)[:12]
}

// deliver pushes e the way WeChat does: POST, wait up to the timeout for
// "success" (or an empty body), and send the same event again up to
// Retries times otherwise.
func (s *Sandbox) deliver(ctx context.Context, m outgoing) (Delivery, error) {
	s.mu.Lock()
	t, c, hc := s.push.target, s.push.cipher, s.push.client
	s.mu.Unlock()
	d := Delivery{Event: m.Event, Content: m.Content, List: m.List}
	if t.URL == "" {
		return d, ErrNoPushTarget
	}
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
		var t PushTarget
		if err := decodeBody(r, &t); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.SetPushTarget(t); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"url": t.URL, "mode": t.Mode})
	})
	var body struct {
		Scene  string `json:"scene"`
		Ticket string `json:"ticket"`
	}
	mux.HandleFunc("POST /sandbox/people/{id}/follow", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		b := body
		if err := decodeBody(r, &b); err != nil {
			return Delivery{}, badRequest{err}
		}
		return s.Follow(r.Context(), id, b.Scene)
	}))
	mux.HandleFunc("POST /sandbox/people/{id}/unfollow", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		return s.Unfollow(r.Context(), id)
	}))
	mux.HandleFunc("POST /sandbox/people/{id}/scan", deliveryRoute(func(r *http.Request, id string) (Delivery, error) {
		b := body
		if err := decodeBody(r, &b); err != nil {
			return Delivery{}, badRequest{err}
		}
		return s.Scan(r.Context(), id, b.Scene, b.Ticket)
	}))
}

// deliveryRoute serves a control route that plays something a person does
// and answers with the push it delivered: 400 for a bad request, 404 for
// an unknown person, 409 when the push could not be delivered.
func deliveryRoute(do func(r *http.Request, id string) (Delivery, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := do(r, r.PathValue("id"))
		var br badRequest
		switch {
		case errors.As(err, &br), errors.Is(err, ErrNoTemplate):
			controlError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, ErrNoPerson):
			controlError(w, http.StatusNotFound, err.Error())
		case err != nil:
			controlError(w, http.StatusConflict, err.Error())
		default:
			writeJSON(w, http.StatusOK, d)
		}
	}
}
