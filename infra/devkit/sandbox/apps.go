package sandbox

import (
	"errors"
	"net/http"
)

// The sandbox plays one open-platform account with several apps of each
// kind bound to it, and apps bound to nothing. Config.MiniProgram and
// Config.OfficialAccount are the default apps of their kinds; Config.Apps
// adds the others. Every person has an openid in every app and one unionid,
// which the platform reveals only to bound apps.

// AppKind is the kind of a WeChat app.
type AppKind string

// Kinds of apps.
const (
	AppMiniProgram     AppKind = "mini_program"
	AppOfficialAccount AppKind = "official_account"
	AppWebsite         AppKind = "website" // website app: QR login (qrconnect)
	AppMobile          AppKind = "mobile"  // mobile app: login through WeChat's SDK
)

// AppSpec is an app of Config.Apps.
type AppSpec struct {
	Kind AppKind
	App  App
	// Unbound apps are not bound to the open platform: the platform never
	// reveals a unionid to them (jscode2session, open data,
	// sns/oauth2/access_token, sns/userinfo and user/info leave it out).
	Unbound bool
}

// Credentials of the sandbox's further apps, in the pattern of
// DevMiniProgram.
var (
	DevMiniProgram2       = App{AppID: "wx5a0dbe0c0de00003", Secret: "5a0dbe0c5ec7e700000000000000a003"}
	DevOfficialAccount2   = App{AppID: "wx5a0dbe0c0de00004", Secret: "5a0dbe0c5ec7e700000000000000a004"}
	DevWebsite            = App{AppID: "wx5a0dbe0c0de00005", Secret: "5a0dbe0c5ec7e700000000000000a005"}
	DevWebsite2           = App{AppID: "wx5a0dbe0c0de00006", Secret: "5a0dbe0c5ec7e700000000000000a006"}
	DevMobile             = App{AppID: "wx5a0dbe0c0de00007", Secret: "5a0dbe0c5ec7e700000000000000a007"}
	DevMobile2            = App{AppID: "wx5a0dbe0c0de00008", Secret: "5a0dbe0c5ec7e700000000000000a008"}
	DevUnboundMiniProgram = App{AppID: "wx5a0dbe0c0de00009", Secret: "5a0dbe0c5ec7e700000000000000a009"}
)

// DefaultApps are the dev apps beyond the two defaults: a second mini
// program and official account, two website apps, two mobile apps, all
// bound to the open platform, and a mini program bound to nothing. The
// first of each kind is that kind's default.
func DefaultApps() []AppSpec {
	return []AppSpec{
		{Kind: AppMiniProgram, App: DevMiniProgram2},
		{Kind: AppOfficialAccount, App: DevOfficialAccount2},
		{Kind: AppWebsite, App: DevWebsite},
		{Kind: AppWebsite, App: DevWebsite2},
		{Kind: AppMobile, App: DevMobile},
		{Kind: AppMobile, App: DevMobile2},
		{Kind: AppMiniProgram, App: DevUnboundMiniProgram, Unbound: true},
	}
}

// Errors of the multi-app API.
var (
	ErrAppKind = errors.New("sandbox: the app is not of the kind this needs")
)

// AppInfo is one configured app as the control API lists it: never its
// secret.
type AppInfo struct {
	Kind    AppKind `json:"kind"`
	AppID   string  `json:"appid"`
	Bound   bool    `json:"bound"`   // bound to the open platform: reveals the unionid
	Default bool    `json:"default"` // the default app of its kind
	// OriginalID is an official account's ToUserName (see OriginalID).
	OriginalID string `json:"original_id,omitempty"`
}

// Apps lists the configured apps, the defaults of each kind first.
func (s *Sandbox) Apps() []AppInfo {
	out := make([]AppInfo, 0, len(s.appOrder))
	for _, appid := range s.appOrder {
		a := s.apps[appid]
		info := AppInfo{Kind: a.kind, AppID: appid, Bound: !a.unbound, Default: s.defaults[a.kind] == appid}
		if a.kind == AppOfficialAccount {
			info.OriginalID = OriginalID(appid)
		}
		out = append(out, info)
	}
	return out
}

// setupApps registers the defaults and cfg.Apps (New). An app listed twice
// keeps its first entry.
func (s *Sandbox) setupApps(cfg Config) {
	s.apps = map[string]*account{}
	s.defaults = map[AppKind]string{}
	s.appIndex = map[string]int{}
	add := func(spec AppSpec) {
		if spec.App.AppID == "" || s.apps[spec.App.AppID] != nil {
			return
		}
		s.apps[spec.App.AppID] = &account{App: spec.App, kind: spec.Kind, unbound: spec.Unbound}
		s.appIndex[spec.App.AppID] = len(s.appOrder)
		s.appOrder = append(s.appOrder, spec.App.AppID)
		if s.defaults[spec.Kind] == "" {
			s.defaults[spec.Kind] = spec.App.AppID
		}
	}
	add(AppSpec{Kind: AppMiniProgram, App: cfg.MiniProgram})
	add(AppSpec{Kind: AppOfficialAccount, App: cfg.OfficialAccount})
	for _, spec := range cfg.Apps {
		add(spec)
	}
}

// app resolves appid to a configured app of kind: "" is the kind's
// default. The app map is fixed after New, so no lock is needed.
func (s *Sandbox) app(kind AppKind, appid string) (*account, error) {
	if appid == "" {
		appid = s.defaults[kind]
	}
	a := s.apps[appid]
	switch {
	case a == nil:
		return nil, ErrNoApp
	case a.kind != kind:
		return nil, ErrAppKind
	}
	return a, nil
}

// ofKind returns the configured app appid if it is of kind, else nil.
func (s *Sandbox) ofKind(kind AppKind, appid string) *account {
	if a := s.apps[appid]; a != nil && a.kind == kind {
		return a
	}
	return nil
}

// membership is a person's state in one app.
type membership struct {
	openid     string
	sessionKey string      // mini programs: the current session_key, "" before the first jscode2session
	following  bool        // official accounts
	follow     followState // official accounts; see push.go
}

// in returns p's membership of appid, nil for an app not configured.
func (p *person) in(appid string) *membership {
	if i, ok := p.index[appid]; ok {
		return &p.apps[i]
	}
	return nil
}

// member finds the person whose openid in appid is openid (s.mu held).
func (s *Sandbox) member(appid, openid string) (*person, *membership) {
	p := s.openids[openid]
	if p == nil {
		return nil, nil
	}
	if m := p.in(appid); m != nil && m.openid == openid {
		return p, m
	}
	return nil, nil
}

// OpenID returns person id's openid in appid.
func (s *Sandbox) OpenID(id, appid string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.people[id]
	if p == nil || p.in(appid) == nil {
		return "", false
	}
	return p.in(appid).openid, true
}

// unionIDFor is the unionid a reveals for p: none if a is not bound to the
// open platform.
func unionIDFor(a *account, p *person) string {
	if a.unbound {
		return ""
	}
	return p.UnionID
}

// appBody reads the optional {"appid"} body of a control route.
func appBody(r *http.Request) (string, error) {
	var req struct {
		AppID string `json:"appid"`
	}
	if err := decodeBody(r, &req); err != nil {
		return "", err
	}
	return req.AppID, nil
}

// appError is the control API's status for an error naming an app or a
// person.
func appStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoPerson), errors.Is(err, ErrNoApp):
		return http.StatusNotFound
	case errors.Is(err, ErrAppKind):
		return http.StatusBadRequest
	}
	return http.StatusConflict
}

func (s *Sandbox) getApps(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]AppInfo{"apps": s.Apps()})
}
