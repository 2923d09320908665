// Package sandbox is a stand-in for the WeChat platform (api.weixin.qq.com)
// that runs in-process: an http.Handler with simulated people, login codes
// that expire and work once, access tokens that expire and get superseded,
// quotas, and injected faults. Tests mount it with httptest and the devstack
// serves it on a local port, so nothing needs a WeChat account.
//
// Platform paths answer the way WeChat does (HTTP 200, JSON, errcode and an
// errmsg ending in a rid). Paths under /sandbox/ are a control API that plays
// the WeChat client and the test operator: create people, call wx.login,
// produce encrypted open data, move the clock, inject faults. See
// docs/sandbox.md.
package sandbox

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// App is one WeChat account's credentials.
type App struct {
	AppID  string
	Secret string
}

// Fixed credentials of the sandbox's two accounts. They look like real ones
// (appid "wx" + 16 hex, secret 32 hex) but spell out that they are not.
var (
	DevMiniProgram     = App{AppID: "wx5a0dbe0c0de00001", Secret: "5a0dbe0c5ec7e700000000000000a001"}
	DevOfficialAccount = App{AppID: "wx5a0dbe0c0de00002", Secret: "5a0dbe0c5ec7e700000000000000a002"}
)

// Config describes a sandbox. Zero fields take the defaults noted on them,
// except RevealUnionID, whose zero value (false) is meaningful.
type Config struct {
	MiniProgram     App    // default DevMiniProgram
	OfficialAccount App    // default DevOfficialAccount
	Clock           *Clock // default NewClock()

	// RevealUnionID makes jscode2session return the unionid, as the platform
	// does for a mini program bound to an open-platform account.
	RevealUnionID bool

	LoginPerMinute  int // jscode2session calls per person per minute before 45011; default 100
	TokenDailyQuota int // cgi-bin/token calls per app per day before 45009; default 2000
	ForceDailyQuota int // stable_token force_refresh calls per app per day; default 20

	// Apps are the apps beyond MiniProgram and OfficialAccount (see
	// DefaultApps); the first of a kind without a default above is that
	// kind's default.
	Apps []AppSpec
}

// DefaultConfig is the configuration of a typical setup: both dev accounts,
// the mini program bound to the open platform, the platform's quotas.
func DefaultConfig() Config {
	return Config{
		MiniProgram:     DevMiniProgram,
		OfficialAccount: DevOfficialAccount,
		Clock:           NewClock(),
		RevealUnionID:   true,
		LoginPerMinute:  100,
		TokenDailyQuota: 2000,
		ForceDailyQuota: 20,
	}
}

// Sandbox plays the WeChat platform. Create it with New; it is safe for
// concurrent use.
type Sandbox struct {
	cfg     Config // fixed after New
	clock   *Clock
	control *http.ServeMux
	api     *http.ServeMux

	mu       sync.Mutex
	reveal   bool
	people   map[string]*person // by ID
	order    []string           // person IDs in creation order
	unionIDs map[string]string  // unionid -> person ID
	codes    map[string]*jsCode
	issued   int                 // codes issued, to pace pruning
	apps     map[string]*account // by appid; fixed after New
	appOrder []string            // appids, defaults first; fixed after New
	appIndex map[string]int      // appid -> its index in appOrder (and in person.apps); fixed after New
	defaults map[AppKind]string  // the default appid of each kind; fixed after New
	tokens   map[string]*accessToken
	faults   map[string]*Fault  // by path
	calls    map[string]int     // by path
	push     pushState          // see push.go
	openids  map[string]*person // openids of every app -> person
	phones   phoneBook          // numbers and getPhoneNumber codes; see phone.go
	oauth    oauthBook          // web OAuth codes and grants, see oauth.go
	tokenctl tokenControl       // token errors on demand, token calls per app; see tokenctl.go
	roster   followerBook       // bulk followers and user/get; see followers.go
	messages messageBook        // consents, inboxes, template quota and delivery reports; see messages.go
	channels channelBook        // OA subscribe consents, customer-service windows; see channels.go
}

// New returns a sandbox for cfg; zero fields take their defaults.
func New(cfg Config) *Sandbox {
	def := DefaultConfig()
	if cfg.MiniProgram == (App{}) {
		cfg.MiniProgram = def.MiniProgram
	}
	if cfg.OfficialAccount == (App{}) {
		cfg.OfficialAccount = def.OfficialAccount
	}
	if cfg.Clock == nil {
		cfg.Clock = NewClock()
	}
	if cfg.LoginPerMinute <= 0 {
		cfg.LoginPerMinute = def.LoginPerMinute
	}
	if cfg.TokenDailyQuota <= 0 {
		cfg.TokenDailyQuota = def.TokenDailyQuota
	}
	if cfg.ForceDailyQuota <= 0 {
		cfg.ForceDailyQuota = def.ForceDailyQuota
	}
	s := &Sandbox{
		cfg:      cfg,
		clock:    cfg.Clock,
		reveal:   cfg.RevealUnionID,
		people:   make(map[string]*person),
		unionIDs: make(map[string]string),
		openids:  make(map[string]*person),
		codes:    make(map[string]*jsCode),
		tokens:   make(map[string]*accessToken),
		faults:   make(map[string]*Fault),
		calls:    make(map[string]int),
	}
	s.setupApps(cfg)
	s.api = s.platformRoutes()
	s.oauthRoutes(s.api)
	s.control = s.controlRoutes()
	return s
}

// Clock returns the clock the sandbox runs on.
func (s *Sandbox) Clock() *Clock { return s.clock }

// SetRevealUnionID switches whether jscode2session returns the unionid, that
// is whether the mini program is bound to the open platform.
func (s *Sandbox) SetRevealUnionID(reveal bool) {
	s.mu.Lock()
	s.reveal = reveal
	s.mu.Unlock()
}

// ServeHTTP answers platform calls and, under /sandbox/, the control API.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/sandbox" || strings.HasPrefix(r.URL.Path, "/sandbox/") {
		s.control.ServeHTTP(w, r)
		return
	}
	fault := s.recordCall(r.URL.Path)
	if fault.LostAnswer {
		s.loseAnswer(w, r, fault.Latency)
		return
	}
	if fault.Latency > 0 {
		t := time.NewTimer(fault.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if fault.ErrCode != 0 {
		s.fail(w, fault.ErrCode)
		return
	}
	s.api.ServeHTTP(w, r)
}

// Fault makes calls to one platform path misbehave: the next Count calls
// (every call while Count is 0) wait Latency, then answer ErrCode instead of
// being served. Either may be zero: a fault with only Latency delays calls
// that are then served normally.
//
// With LostAnswer, the calls are served (a message reaches the inbox, a
// token is issued, a code is used up) but their answers are lost: the
// connection is held for Latency, then closed without a response. The
// client sees its connection drop (or its own timeout, if shorter) and
// cannot tell whether the call took effect.
type Fault struct {
	Path       string
	ErrCode    int
	Count      int
	Latency    time.Duration
	LostAnswer bool
}

// ErrEmptyFault reports a fault that would change nothing.
var ErrEmptyFault = errors.New("sandbox: fault needs a path starting with / and an errcode, a latency or a lost answer")

// ErrLostAnswerErrCode reports a fault that both loses the answer and sets
// an errcode: a lost answer has no errcode for the client to see.
var ErrLostAnswerErrCode = errors.New("sandbox: a lost answer takes no errcode: the call is served and its answer dropped")

// InjectFault arms f for f.Path, replacing any fault armed there before.
func (s *Sandbox) InjectFault(f Fault) error {
	if !strings.HasPrefix(f.Path, "/") || (f.ErrCode == 0 && f.Latency <= 0 && !f.LostAnswer) || f.Count < 0 {
		return ErrEmptyFault
	}
	if f.LostAnswer && f.ErrCode != 0 {
		return ErrLostAnswerErrCode
	}
	s.mu.Lock()
	s.faults[f.Path] = &f
	s.mu.Unlock()
	return nil
}

// ClearFaults disarms every fault.
func (s *Sandbox) ClearFaults() {
	s.mu.Lock()
	clear(s.faults)
	s.mu.Unlock()
}

// Calls reports how many platform calls hit path, failed ones included.
func (s *Sandbox) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// stats returns the call counts of every path called so far.
func (s *Sandbox) stats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for p, n := range s.calls {
		out[p] = n
	}
	return out
}

// recordCall counts a platform call and consumes one use of the fault armed
// for its path, returning that fault (zero if none).
func (s *Sandbox) recordCall(path string) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[path]++
	f, ok := s.faults[path]
	if !ok {
		return Fault{}
	}
	out := *f
	if f.Count > 0 {
		f.Count--
		if f.Count == 0 {
			delete(s.faults, path)
		}
	}
	return out
}
