package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"wxbridge/shared/notify"
)

// The world of the chaos story: simulated people who act on their phones,
// a business that sends them notifications, and the faults. Everything each
// of them does is drawn in advance from the seed, so that a seed names one
// story; only the interleaving with wxbridge's own work varies between runs.

// chaosSize is how much happens in one run.
type chaosSize struct {
	People, Ops, Jobs, WeChatFaults, AWSFaults int
	// Span is how long the people, the business and the faults keep
	// acting; the queues drain after it.
	Span time.Duration
}

func sizeOf(n int) chaosSize {
	return chaosSize{People: 8 * n, Ops: 40 * n, Jobs: 20 * n, WeChatFaults: 12 * n, AWSFaults: 8 * n,
		Span: 10*time.Second + time.Duration(n-1)*4*time.Second}
}

// Operation kinds a person does.
const (
	opLogin   = "login"   // the mini program: wx.login, POST /mp/login
	opToggle  = "toggle"  // follow, or unfollow if following
	opFlap    = "flap"    // follow, unfollow, follow (or the reverse) at once
	opH5      = "h5"      // H5 sign-in through web OAuth (snsapi_userinfo)
	opConsent = "consent" // accept one subscribe message (wx.requestSubscribeMessage)
)

var opWeights = []struct {
	kind   string
	weight int
}{{opLogin, 3}, {opToggle, 4}, {opFlap, 1}, {opH5, 2}, {opConsent, 2}}

type plannedOp struct {
	At   time.Duration
	Kind string
}

// chaosPerson is one simulated person and what the story knows about them.
type chaosPerson struct {
	ID, UnionID, MPOpenID, OAOpenID string
	plan                            []plannedOp
	rng                             *rand.Rand

	// Only the person's own goroutine writes these while the story runs.
	following  bool
	pushes     int  // follow/unfollow events the sandbox pushed
	lastAcked  bool // whether WeChat counted the last one delivered
	unacked    int  // pushes WeChat gave up on (no success after its retries)
	loggedIn   bool
	signedIn   bool
	consents   int
	trace      []string // what the person did, for a failure's report
	lastPushAt time.Time
}

func (p *chaosPerson) note(start time.Time, format string, args ...any) {
	p.trace = append(p.trace, fmt.Sprintf("%6.2fs %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...)))
}

// chaosJob is one notification the business sends.
type chaosJob struct {
	At       time.Duration
	Index    int
	ID       string
	Key      string // in the message's data (character_string2): how the inbox names the job
	Person   int
	Channels []notify.Channel
	Enqueued bool
}

// chaosFault is one fault, armed at At.
type chaosFault struct {
	At     time.Duration
	Kind   string
	WeChat *sandboxFault
	AWS    *awsRule
	// callsBefore is the sandbox's call count of the path when it was
	// armed: a sandbox fault counts as fired by the calls made while it
	// was armed (up to its count).
	callsBefore int
	Armed       bool
	Fired       int
}

type sandboxFault struct {
	Path       string `json:"path"`
	ErrCode    int    `json:"errcode,omitempty"`
	Count      int    `json:"count"`
	LatencyMS  int    `json:"latency_ms,omitempty"`
	LostAnswer bool   `json:"lost_answer,omitempty"`
}

type awsRule struct {
	Service   string `json:"service"`
	Operation string `json:"operation,omitempty"`
	Match     string `json:"match,omitempty"`
	Count     int    `json:"count"`
	Error     string `json:"error"`
	id        int    // the devstack's id for the armed rule
}

// The WeChat faults the story draws from: the platform busy (-1), too
// frequent (45011), slow (user/info beyond the push budget, so that follows
// go through the retry queue; sends), and answers lost after the platform
// acted (a message delivered, a code used up).
var wechatMenu = []struct {
	kind string
	f    sandboxFault
}{
	{"jscode2session -1", sandboxFault{Path: "/sns/jscode2session", ErrCode: -1}},
	{"jscode2session 45011", sandboxFault{Path: "/sns/jscode2session", ErrCode: 45011}},
	{"jscode2session lost answer", sandboxFault{Path: "/sns/jscode2session", LostAnswer: true, LatencyMS: 200}},
	{"user/info slow 3.5s", sandboxFault{Path: "/cgi-bin/user/info", LatencyMS: 3500}},
	{"user/info -1", sandboxFault{Path: "/cgi-bin/user/info", ErrCode: -1}},
	{"user/info 45011", sandboxFault{Path: "/cgi-bin/user/info", ErrCode: 45011}},
	{"template/send -1", sandboxFault{Path: "/cgi-bin/message/template/send", ErrCode: -1}},
	{"template/send 45011", sandboxFault{Path: "/cgi-bin/message/template/send", ErrCode: 45011}},
	{"template/send slow 1.5s", sandboxFault{Path: "/cgi-bin/message/template/send", LatencyMS: 1500}},
	{"template/send lost answer", sandboxFault{Path: "/cgi-bin/message/template/send", LostAnswer: true, LatencyMS: 500}},
	{"subscribe/send -1", sandboxFault{Path: "/cgi-bin/message/subscribe/send", ErrCode: -1}},
	{"subscribe/send lost answer", sandboxFault{Path: "/cgi-bin/message/subscribe/send", LostAnswer: true, LatencyMS: 500}},
	{"oauth2/access_token -1", sandboxFault{Path: "/sns/oauth2/access_token", ErrCode: -1}},
	{"oauth2/access_token lost answer", sandboxFault{Path: "/sns/oauth2/access_token", LostAnswer: true, LatencyMS: 200}},
}

// The DynamoDB operations wxbridge's functions call, and the failures
// drawn for them. A rule matching "SEND#" hits the send ledger only.
var (
	dynamoOps    = []string{"GetItem", "PutItem", "UpdateItem", "TransactWriteItems", "BatchGetItem", "Query"}
	dynamoErrors = []string{"ThrottlingException", "InternalServerError"}
)

// plan draws the whole story from the seed.
func (r *chaosRun) plan() {
	rng := rand.New(rand.NewPCG(uint64(r.seed), 0x636861_6f73)) // "chaos"
	span := r.size.Span
	at := func(from, to float64) time.Duration {
		return time.Duration((from + rng.Float64()*(to-from)) * float64(span))
	}
	total := 0
	for _, w := range opWeights {
		total += w.weight
	}
	for i := range r.size.People {
		p := &chaosPerson{rng: rand.New(rand.NewPCG(uint64(r.seed), uint64(i)))}
		r.people = append(r.people, p)
	}
	// Everyone starts with the mini program or the official account (the
	// people a business notifies are its users); what follows is random.
	for _, p := range r.people {
		kind := opLogin
		if rng.IntN(5) < 2 {
			kind = opToggle
		}
		p.plan = append(p.plan, plannedOp{At: at(0, 0.3), Kind: kind})
	}
	for range r.size.Ops - len(r.people) {
		p := r.people[rng.IntN(len(r.people))]
		n, kind := rng.IntN(total), ""
		for _, w := range opWeights {
			if n -= w.weight; n < 0 {
				kind = w.kind
				break
			}
		}
		p.plan = append(p.plan, plannedOp{At: at(0, 0.9), Kind: kind})
	}
	for _, p := range r.people {
		sort.Slice(p.plan, func(i, j int) bool { return p.plan[i].At < p.plan[j].At })
	}
	channelSets := [][]notify.Channel{
		{notify.Template, notify.Subscribe}, {notify.Subscribe, notify.Template}, {notify.Template}, {notify.Subscribe},
	}
	for i := range r.size.Jobs {
		r.jobs = append(r.jobs, &chaosJob{
			At: at(0.2, 1), Index: i, ID: fmt.Sprintf("chaos-%d-job-%d", r.seed, i), Key: fmt.Sprintf("j%d", i),
			Person: rng.IntN(len(r.people)), Channels: channelSets[rng.IntN(len(channelSets))],
		})
	}
	for range r.size.WeChatFaults {
		m := wechatMenu[rng.IntN(len(wechatMenu))]
		f := m.f
		f.Count = 1 + rng.IntN(3)
		r.faults = append(r.faults, &chaosFault{At: at(0, 0.9), Kind: "wechat " + m.kind, WeChat: &f})
	}
	for range r.size.AWSFaults {
		rule := awsRule{Service: "dynamodb", Operation: dynamoOps[rng.IntN(len(dynamoOps))],
			Error: dynamoErrors[rng.IntN(len(dynamoErrors))], Count: 1 + rng.IntN(4)}
		if rule.Operation == "UpdateItem" && rng.IntN(2) == 0 {
			rule.Match = "SEND#"
		}
		kind := "dynamodb " + rule.Operation + " " + rule.Error
		if rule.Match != "" {
			kind = "dynamodb " + rule.Operation + "(ledger) " + rule.Error
		}
		r.faults = append(r.faults, &chaosFault{At: at(0, 0.9), Kind: kind, AWS: &rule})
	}
	slices.SortStableFunc(r.faults, func(a, b *chaosFault) int { return int(a.At - b.At) })
	slices.SortStableFunc(r.jobs, func(a, b *chaosJob) int { return int(a.At - b.At) })
}

// until sleeps until the story's clock reads at: the plan's timetable, not
// a wait for anything to happen.
func (r *chaosRun) until(at time.Duration) {
	if d := time.Until(r.start.Add(at)); d > 0 {
		time.Sleep(d)
	}
}

// live plays one person's plan.
func (r *chaosRun) live(p *chaosPerson) {
	for _, op := range p.plan {
		r.until(op.At)
		switch op.Kind {
		case opLogin:
			r.login(p)
		case opToggle:
			r.toggle(p)
		case opFlap:
			for range 3 {
				r.toggle(p)
			}
		case opH5:
			r.h5(p)
		case opConsent:
			r.consent(p)
		}
	}
}

func (r *chaosRun) login(p *chaosPerson) {
	st, out, err := r.call("POST", r.s.SandboxURL+"/sandbox/people/"+p.ID+"/wx-login", nil, nil)
	if err != nil || st != http.StatusOK {
		r.fail("sandbox wx-login for %s: %d %v %v", p.ID, st, out, err)
		return
	}
	st, out, err = r.call("POST", r.s.APIURL+"/mp/login", map[string]any{"code": out["code"]}, nil)
	switch {
	case err != nil:
		r.ops.add("login: no answer")
		p.note(r.start, "login: no answer: %v", err)
	case st == http.StatusOK:
		r.ops.add("login: ok")
		p.loggedIn = true
		p.note(r.start, "login: uid %v", out["person"].(map[string]any)["uid"])
	default:
		r.ops.add(fmt.Sprintf("login: %d %v", st, out["error"]))
		p.note(r.start, "login: %d %v", st, out["error"])
	}
}

func (r *chaosRun) toggle(p *chaosPerson) {
	what := "follow"
	if p.following {
		what = "unfollow"
	}
	st, out, err := r.call("POST", r.s.SandboxURL+"/sandbox/people/"+p.ID+"/"+what, nil, nil)
	if err != nil || st != http.StatusOK {
		r.fail("sandbox %s for %s: %d %v %v", what, p.ID, st, out, err)
		return
	}
	p.following = !p.following
	p.pushes++
	p.lastPushAt = time.Now()
	p.lastAcked = out["delivered"] == true
	attempts, _ := out["attempts"].([]any)
	if p.lastAcked {
		r.ops.add(what + ": acknowledged")
	} else {
		p.unacked++
		r.ops.add(what + ": not acknowledged")
	}
	p.note(r.start, "%s: delivered=%v after %d attempt(s) %s", what, p.lastAcked, len(attempts), describeAttempts(attempts))
}

// describeAttempts summarises a push's attempts (status and body, or error).
func describeAttempts(attempts []any) string {
	var parts []string
	for _, a := range attempts {
		m, _ := a.(map[string]any)
		if e, _ := m["error"].(string); e != "" {
			parts = append(parts, "error "+e)
			continue
		}
		parts = append(parts, fmt.Sprintf("%v %q", m["status"], m["body"]))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// h5 signs in on an H5 page: the browser (with its cookie jar) follows
// wxbridge's redirect to the platform's authorize page, where the person
// consents, and back to the callback, which sends it to the page with a
// session (or an error) in the fragment.
func (r *chaosRun) h5(p *chaosPerson) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := r.s.APIURL + "/_dev/h5"
	next := r.s.APIURL + "/oauth/authorize?scope=snsapi_userinfo&return_to=" + url.QueryEscape(page)
	for range 4 {
		resp, err := browser.Get(next)
		if err != nil {
			r.ops.add("h5: no answer")
			p.note(r.start, "h5: %v", err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || loc == "" {
			r.ops.add(fmt.Sprintf("h5: %d", resp.StatusCode))
			p.note(r.start, "h5: %s answered %d", next, resp.StatusCode)
			return
		}
		if strings.HasPrefix(loc, page+"#") {
			frag, _ := url.ParseQuery(loc[len(page)+1:])
			if frag.Get("session") != "" {
				r.ops.add("h5: session")
				p.signedIn = true
				p.note(r.start, "h5: session")
			} else {
				r.ops.add("h5: error=" + frag.Get("error"))
				p.note(r.start, "h5: error=%s", frag.Get("error"))
			}
			return
		}
		u, err := url.Parse(loc)
		if err != nil {
			r.fail("h5: redirect to %q: %v", loc, err)
			return
		}
		if strings.HasPrefix(loc, r.s.SandboxURL+"/connect/oauth2/authorize") {
			q := u.Query()
			q.Set("person", p.ID) // the person consents on the platform's page
			u.RawQuery, u.Fragment = q.Encode(), ""
		}
		next = u.String()
	}
	r.fail("h5: too many redirects for %s", p.ID)
}

func (r *chaosRun) consent(p *chaosPerson) {
	st, out, err := r.call("POST", r.s.SandboxURL+"/sandbox/people/"+p.ID+"/consent", map[string]string{"template_id": demoSubscribeID}, nil)
	if err != nil || st != http.StatusOK {
		r.fail("sandbox consent for %s: %d %v %v", p.ID, st, out, err)
		return
	}
	p.consents++
	r.ops.add("consent")
	p.note(r.start, "consent (%v left)", out["consents"])
}

// business enqueues the jobs on the send queue, as a business backend
// would with the notify client, addressed by unionid.
func (r *chaosRun) business() {
	client := notify.NewClient(r.sqs, r.s.res.queues["SendQueue"])
	for _, j := range r.jobs {
		r.until(j.At)
		p := r.people[j.Person]
		data := map[string]string{"thing1": "Chaos story", "character_string2": j.Key}
		job := notify.Job{
			ID: j.ID, To: notify.Recipient{UnionID: p.UnionID}, Channels: j.Channels,
			Template:  &notify.TemplateMessage{TemplateID: demoTemplateID, Data: data},
			Subscribe: &notify.SubscribeMessage{TemplateID: demoSubscribeID, Page: "pages/order/detail?id=" + j.Key, Data: data},
		}
		if _, err := client.Enqueue(context.Background(), job); err != nil {
			r.fail("enqueue %s: %v", j.ID, err)
			continue
		}
		j.Enqueued = true
		r.ops.add("job enqueued")
	}
}

// chaos arms the faults on their timetable.
func (r *chaosRun) chaos() {
	for _, f := range r.faults {
		r.until(f.At)
		switch {
		case f.WeChat != nil:
			f.callsBefore = r.sandboxCalls()[f.WeChat.Path]
			// A new fault on a path replaces the one armed there: the old
			// one is done firing.
			r.settleSandboxFault(f.WeChat.Path)
			st, out, err := r.call("POST", r.s.SandboxURL+"/sandbox/faults", f.WeChat, nil)
			if err != nil || st != http.StatusCreated {
				r.fail("sandbox fault %s: %d %v %v", f.Kind, st, out, err)
				continue
			}
		case f.AWS != nil:
			st, out, err := r.call("POST", r.s.APIURL+"/_dev/faults", f.AWS, nil)
			if err != nil || st != http.StatusCreated {
				r.fail("AWS fault %s: %d %v %v", f.Kind, st, out, err)
				continue
			}
			f.AWS.id = int(out["id"].(float64))
		}
		f.Armed = true
		r.faultsArmed.add(f.Kind)
	}
}

// settleSandboxFault counts how often the armed fault on path fired, from
// the calls made to path since it was armed.
func (r *chaosRun) settleSandboxFault(path string) {
	calls := r.sandboxCalls()[path]
	for _, f := range slices.Backward(r.faults) {
		if f.Armed && f.WeChat != nil && f.WeChat.Path == path {
			if f.Fired == 0 {
				f.Fired = min(f.WeChat.Count, calls-f.callsBefore)
			}
			return
		}
	}
}

// stopFaults clears every fault, after counting how often each fired.
func (r *chaosRun) stopFaults() {
	paths := map[string]bool{}
	for _, f := range r.faults {
		if f.WeChat != nil {
			paths[f.WeChat.Path] = true
		}
	}
	for path := range paths {
		r.settleSandboxFault(path)
	}
	if st, _, err := r.call("DELETE", r.s.SandboxURL+"/sandbox/faults", nil, nil); err != nil || st != http.StatusNoContent {
		r.fail("clear sandbox faults: %d %v", st, err)
	}
	var rules struct {
		Rules []struct {
			ID    int `json:"id"`
			Fired int `json:"fired"`
		} `json:"rules"`
	}
	if err := r.getJSON(r.s.APIURL+"/_dev/faults", &rules); err != nil {
		r.fail("list AWS faults: %v", err)
	}
	for _, rule := range rules.Rules {
		for _, f := range r.faults {
			if f.AWS != nil && f.Armed && f.AWS.id == rule.ID {
				f.Fired = rule.Fired
			}
		}
	}
	if st, _, err := r.call("DELETE", r.s.APIURL+"/_dev/faults", nil, nil); err != nil || st != http.StatusNoContent {
		r.fail("clear AWS faults: %d %v", st, err)
	}
}

func (r *chaosRun) sandboxCalls() map[string]int {
	var stats struct {
		Calls map[string]int `json:"calls"`
	}
	if err := r.getJSON(r.s.SandboxURL+"/sandbox/stats", &stats); err != nil {
		r.fail("sandbox stats: %v", err)
	}
	return stats.Calls
}

// call makes a JSON request; unlike the story test's call it is safe in
// any goroutine (it reports instead of failing the test).
func (r *chaosRun) call(method, u string, body any, header map[string]string) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &out) != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: not JSON: %.200s", method, u, raw)
	}
	return resp.StatusCode, out, nil
}

func (r *chaosRun) getJSON(u string, v any) error {
	resp, err := r.http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// tally counts things by kind.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[kind]++
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, v := range t.n {
		n += v
	}
	return n
}

// String lists the counts by kind, in kind order.
func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.n))
	for k := range t.n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n    %-44s %d", k, t.n[k])
	}
	return b.String()
}
