package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	"wxbridge/shared/wechat"
)

// Person is a simulated WeChat user as the platform knows them: one openid
// per app and a unionid across the apps bound to the open platform.
type Person struct {
	ID       string `json:"id"`
	UnionID  string `json:"unionid"`
	MPOpenID string `json:"mp_openid"` // in the default mini program
	OAOpenID string `json:"oa_openid"` // in the default official account
	// OpenIDs are the person's openids in every configured app, by appid.
	OpenIDs  map[string]string `json:"openids"`
	Nickname string            `json:"nickname"`
	// Phone is the number bound to the person's WeChat account, E.164
	// ("+8613800000001"); "" if none.
	Phone string `json:"phone"`
	// Following is whether the person follows the default official account.
	Following bool `json:"following"`
}

// PersonSpec fixes parts of a new person; zero fields are generated.
type PersonSpec struct {
	UnionID  string `json:"unionid"`
	Nickname string `json:"nickname"`
}

// Errors of the people API.
var (
	ErrNoPerson     = errors.New("sandbox: no such person")
	ErrNoSession    = errors.New("sandbox: person has not completed jscode2session")
	ErrUnionIDTaken = errors.New("sandbox: unionid already belongs to another person")
)

// person is a Person plus what the platform keeps about them. The exported
// Person's OpenIDs and Following are filled in by view.
type person struct {
	Person
	apps       []membership   // in the order of Sandbox.appOrder
	index      map[string]int // Sandbox.appIndex, shared
	profile    profile
	loginMin   int64 // minute (Unix/60) of the counted jscode2session calls
	loginCalls int
}

// view is the Person as the API shows it (s.mu held).
func (s *Sandbox) view(p *person) Person {
	out := p.Person
	out.OpenIDs = make(map[string]string, len(p.apps))
	for i, appid := range s.appOrder {
		out.OpenIDs[appid] = p.apps[i].openid
	}
	out.Following = s.following(p, s.defaults[AppOfficialAccount])
	return out
}

// following reports whether p follows official account appid (s.mu held).
func (s *Sandbox) following(p *person, appid string) bool {
	m := p.in(appid)
	return m != nil && m.following
}

// profile is the user-info part of open data.
type profile struct {
	Gender    int
	Language  string
	City      string
	Province  string
	Country   string
	AvatarURL string
}

// jsCode is a wx.login code: it works once, for codeLifetime, in the mini
// program it was issued for.
type jsCode struct {
	personID string
	appid    string
	issued   time.Time
	used     bool
}

// codeLifetime is how long a wx.login code can be exchanged.
const codeLifetime = 5 * time.Minute

// CreatePerson adds a person, generating what spec leaves empty. It panics
// if spec.UnionID already belongs to someone: the platform gives each person
// exactly one unionid. The control API answers 409 instead.
func (s *Sandbox) CreatePerson(spec PersonSpec) Person {
	p, err := s.createPerson(spec)
	if err != nil {
		panic(err)
	}
	return p
}

func (s *Sandbox) createPerson(spec PersonSpec) (Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec.UnionID != "" {
		if _, taken := s.unionIDs[spec.UnionID]; taken {
			return Person{}, ErrUnionIDTaken
		}
	}
	n := len(s.order) + 1
	p := &person{
		Person: Person{ID: fmt.Sprintf("p%d", n), UnionID: spec.UnionID, Nickname: spec.Nickname},
		apps:   make([]membership, len(s.appOrder)),
		index:  s.appIndex,
	}
	for i, appid := range s.appOrder {
		m := &p.apps[i]
		m.openid = openID(appid)
		for s.openids[m.openid] != nil {
			m.openid = openID(appid)
		}
		s.openids[m.openid] = p
	}
	p.MPOpenID = p.in(s.cfg.MiniProgram.AppID).openid
	p.OAOpenID = p.in(s.cfg.OfficialAccount.AppID).openid
	for p.UnionID == "" || s.unionIDs[p.UnionID] != "" {
		p.UnionID = "oU" + randomB64(26)
	}
	if p.Nickname == "" {
		p.Nickname = fmt.Sprintf("%s%d", nicknames[n%len(nicknames)], n)
	}
	p.profile = randomProfile()
	s.people[p.ID] = p
	s.order = append(s.order, p.ID)
	s.unionIDs[p.UnionID] = p.ID
	s.phones.assign(p, s.phones.generate(n))
	return s.view(p), nil
}

// Person returns the person with id.
func (s *Sandbox) Person(id string) (Person, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.people[id]
	if !ok {
		return Person{}, false
	}
	return s.view(p), true
}

// People returns everyone, in creation order.
func (s *Sandbox) People() []Person {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Person, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.view(s.people[id]))
	}
	return out
}

// WXLogin plays wx.login in the default mini program for person id: it
// issues a fresh code for jscode2session.
func (s *Sandbox) WXLogin(id string) (code string, err error) {
	return s.WXLoginApp(id, "")
}

// WXLoginApp plays wx.login in mini program appid ("" the default) for
// person id: the code works at jscode2session for that mini program only.
func (s *Sandbox) WXLoginApp(id, appid string) (code string, err error) {
	a, err := s.app(AppMiniProgram, appid)
	if err != nil {
		return "", err
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.people[id]; !ok {
		return "", ErrNoPerson
	}
	s.issued++
	if s.issued%256 == 0 {
		s.pruneCodes(now)
	}
	for code == "" || s.codes[code] != nil {
		code = randomAlnum(32)
	}
	s.codes[code] = &jsCode{personID: id, appid: a.AppID, issued: now}
	return code, nil
}

// pruneCodes forgets codes long past their lifetime, which would answer
// 40029 anyway; a used one then answers 40029 rather than 40163.
func (s *Sandbox) pruneCodes(now time.Time) {
	for c, jc := range s.codes {
		if now.Sub(jc.issued) > 2*codeLifetime {
			delete(s.codes, c)
		}
	}
}

// OpenData plays wx.getUserInfo in the default mini program for person id.
func (s *Sandbox) OpenData(id string) (encryptedData, iv string, err error) {
	return s.OpenDataApp(id, "")
}

// OpenDataApp plays wx.getUserInfo in mini program appid ("" the default)
// for person id: the user-info payload encrypted under the person's current
// session_key in that app, watermarked with its appid, as the client
// receives it. In the default mini program the payload always carries the
// unionId (open data is how a mini program that jscode2session does not
// tell can still learn it); an app bound to no open platform never gets
// one.
func (s *Sandbox) OpenDataApp(id, appid string) (encryptedData, iv string, err error) {
	a, err := s.app(AppMiniProgram, appid)
	if err != nil {
		return "", "", err
	}
	s.mu.Lock()
	p, ok := s.people[id]
	var key string
	var payload map[string]any
	if ok {
		m := p.in(a.AppID)
		key = m.sessionKey
		payload = map[string]any{
			"openId":    m.openid,
			"nickName":  p.Nickname,
			"gender":    p.profile.Gender,
			"language":  p.profile.Language,
			"city":      p.profile.City,
			"province":  p.profile.Province,
			"country":   p.profile.Country,
			"avatarUrl": p.profile.AvatarURL,
		}
		if u := unionIDFor(a, p); u != "" {
			payload["unionId"] = u
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		return "", "", ErrNoPerson
	case key == "":
		return "", "", ErrNoSession
	}
	return wechat.EncryptOpenData(key, a.AppID, payload, s.clock.Now())
}

// openID makes an openid for appid: 28 characters, "o" and a prefix shared
// by every openid of the same app (as on the platform), then random.
func openID(appid string) string {
	sum := sha256.Sum256([]byte(appid))
	return "o" + base64.RawURLEncoding.EncodeToString(sum[:])[:5] + randomB64(22)
}

// newSessionKey makes a session_key: 16 random bytes, standard base64.
func newSessionKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// randomB64 returns n random characters of the base64url alphabet.
func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomAlnum returns n random letters and digits, like wx.login codes.
func randomAlnum(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[randomInt(len(alnum))]
	}
	return string(b)
}

func randomInt(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n))) // crypto/rand does not fail since Go 1.24
	return int(v.Int64())
}

var nicknames = []string{"阿杰", "小雨", "Mia", "老王", "晓峰", "Lily", "阿珍", "Tom", "小林", "Echo"}

var places = []struct{ city, province string }{
	{"Guangzhou", "Guangdong"}, {"Shenzhen", "Guangdong"}, {"Hangzhou", "Zhejiang"},
	{"Chengdu", "Sichuan"}, {"Wuhan", "Hubei"}, {"Nanjing", "Jiangsu"},
}

func randomProfile() profile {
	pl := places[randomInt(len(places))]
	return profile{
		Gender:    randomInt(3), // 0 unknown, 1 male, 2 female
		Language:  "zh_CN",
		City:      pl.city,
		Province:  pl.province,
		Country:   "China",
		AvatarURL: "https://thirdwx.qlogo.cn/mmopen/vi_32/" + randomB64(40) + "/132",
	}
}
