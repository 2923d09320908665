package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Phone numbers: every person has the number bound to their WeChat account;
// a mini program learns it when the person taps a getPhoneNumber button,
// whose code the server exchanges at wxa/business/getuserphonenumber.

// phoneCodeLifetime is how long a getPhoneNumber code can be exchanged.
const phoneCodeLifetime = 5 * time.Minute

// phoneBook holds the numbers and the getPhoneNumber codes (s.mu held).
type phoneBook struct {
	holders map[string]string // number -> person ID
	codes   map[string]*phoneCode
	issued  int // codes issued, to pace pruning
}

// phoneCode is a getPhoneNumber code: once, for phoneCodeLifetime, for one
// mini program's access token.
type phoneCode struct {
	personID string
	appid    string
	issued   time.Time
	used     bool
}

// ErrPhone reports a number that is not E.164.
var ErrPhone = errors.New(`sandbox: phone must be E.164: "+", a country code and 7 to 14 more digits`)

// generate returns the first free number of the "+8613800000001" series
// from the nth.
func (b *phoneBook) generate(n int) string {
	for ; ; n++ {
		if num := fmt.Sprintf("+86138%08d", n); b.holders[num] == "" {
			return num
		}
	}
}

// assign gives number to p; whoever held it loses it, as when a carrier
// reassigns a number.
func (b *phoneBook) assign(p *person, number string) {
	if b.holders == nil {
		b.holders = map[string]string{}
	}
	if p.Phone != "" {
		delete(b.holders, p.Phone)
	}
	p.Phone = number
	if number != "" {
		b.holders[number] = p.ID
	}
}

// SetPhone binds phone (E.164) to person id's WeChat account; "" unbinds
// it. A number someone else holds moves to id: the other person has none
// afterwards.
func (s *Sandbox) SetPhone(id, phone string) error {
	if phone != "" && !isE164(phone) {
		return ErrPhone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.people[id]
	if p == nil {
		return ErrNoPerson
	}
	if old := s.phones.holders[phone]; phone != "" && old != "" && old != id {
		s.people[old].Phone = ""
	}
	s.phones.assign(p, phone)
	return nil
}

func isE164(n string) bool {
	d, ok := strings.CutPrefix(n, "+")
	return ok && len(d) >= 8 && len(d) <= 15 && d[0] != '0' && all(d, isDigit)
}

// splitE164 splits an E.164 number into its country calling code and the
// national number. Calling codes are prefix-free: the ITU's one- and
// two-digit codes are listed, every other one has three digits.
func splitE164(n string) (cc, national string) {
	d := strings.TrimPrefix(n, "+")
	switch {
	case d[0] == '1' || d[0] == '7':
		return d[:1], d[1:]
	case twoDigitCodes[d[:2]]:
		return d[:2], d[2:]
	}
	return d[:3], d[3:]
}

var twoDigitCodes = map[string]bool{}

func init() {
	for _, c := range strings.Fields("20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 " +
		"60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98") {
		twoDigitCodes[c] = true
	}
}

// PhoneCode plays person id tapping a getPhoneNumber button in mini program
// appid ("" the default) and consenting: the code the button hands the
// mini program. It works once, for 5 minutes, with that mini program's
// access token only.
func (s *Sandbox) PhoneCode(id, appid string) (string, error) {
	a, err := s.app(AppMiniProgram, appid)
	if err != nil {
		return "", err
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.people[id]
	switch {
	case p == nil:
		return "", ErrNoPerson
	case p.Phone == "":
		return "", errors.New("sandbox: person has no phone number")
	}
	b := &s.phones
	if b.codes == nil {
		b.codes = map[string]*phoneCode{}
	}
	b.issued++
	if b.issued%256 == 0 {
		for c, pc := range b.codes {
			if now.Sub(pc.issued) > 2*phoneCodeLifetime {
				delete(b.codes, c)
			}
		}
	}
	code := ""
	for code == "" || b.codes[code] != nil {
		code = strings.ToLower(randomAlnum(64))
	}
	b.codes[code] = &phoneCode{personID: id, appid: a.AppID, issued: now}
	return code, nil
}

// phoneInfo is getuserphonenumber's phone_info. phoneNumber carries the
// "+<code>" only for numbers outside mainland China.
type phoneInfo struct {
	PhoneNumber     string `json:"phoneNumber"`
	PurePhoneNumber string `json:"purePhoneNumber"`
	CountryCode     string `json:"countryCode"`
	Watermark       struct {
		Timestamp int64  `json:"timestamp"`
		AppID     string `json:"appid"`
	} `json:"watermark"`
}

// handlePhoneNumber is POST /wxa/business/getuserphonenumber?access_token
// with {"code"}.
func (s *Sandbox) handlePhoneNumber(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.fail(w, 43002)
		return
	}
	app, err := s.authorize(r)
	if err == nil && s.ofKind(AppMiniProgram, app.AppID) == nil {
		err = errcode(48001) // an official account has no getPhoneNumber
	}
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	var in struct {
		Code string `json:"code"`
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	switch {
	case len(b) == 0:
		s.fail(w, 44002)
		return
	case json.Unmarshal(b, &in) != nil:
		s.fail(w, 47001)
		return
	case in.Code == "":
		s.fail(w, 41008)
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	pc := s.phones.codes[in.Code]
	// A used, expired or other app's code is all one to the platform:
	// 40029.
	if pc == nil || pc.used || pc.appid != app.AppID || now.Sub(pc.issued) > phoneCodeLifetime {
		s.fail(w, 40029)
		return
	}
	pc.used = true
	p := s.people[pc.personID]
	if p.Phone == "" { // unbound since the tap
		s.fail(w, 40029)
		return
	}
	var info phoneInfo
	info.CountryCode, info.PurePhoneNumber = splitE164(p.Phone)
	info.PhoneNumber = info.PurePhoneNumber
	if info.CountryCode != "86" {
		info.PhoneNumber = p.Phone
	}
	info.Watermark.Timestamp, info.Watermark.AppID = now.Unix(), app.AppID
	s.answer(w, map[string]any{"errcode": 0, "errmsg": "ok", "phone_info": info}, nil)
}

// phoneRoutes adds getuserphonenumber.
func (s *Sandbox) phoneRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/wxa/business/getuserphonenumber", s.handlePhoneNumber)
}

// phoneControlRoutes adds the phone routes of the control API.
func (s *Sandbox) phoneControlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /sandbox/people/{id}/phone", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Phone *string `json:"phone"`
		}
		if err := decodeBody(r, &req); err != nil || req.Phone == nil {
			controlError(w, http.StatusBadRequest, `want {"phone": "+8613800000000"} ("" unbinds)`)
			return
		}
		switch err := s.SetPhone(r.PathValue("id"), *req.Phone); {
		case errors.Is(err, ErrPhone):
			controlError(w, http.StatusBadRequest, err.Error())
		case err != nil:
			controlError(w, http.StatusNotFound, err.Error())
		default:
			s.getPerson(w, r)
		}
	})
	mux.HandleFunc("POST /sandbox/people/{id}/phone-code", s.codeRoute(s.PhoneCode))
}

// codeRoute serves a control route that hands out a code for the person
// in the path and the app in the optional {"appid"} body.
func (s *Sandbox) codeRoute(issue func(id, appid string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		appid, err := appBody(r)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		code, err := issue(r.PathValue("id"), appid)
		if err != nil {
			controlError(w, appStatus(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"code": code})
	}
}
