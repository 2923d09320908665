package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	jskit "wxbridge/infra/clients/js"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/backfill"
	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

//go:embed console.html
var consolePage []byte

//go:embed h5.html
var h5Page []byte

// console adds the dev console and its JSON API under /_dev/, and reads
// the console's outcome queue until ctx ends. None of it exists in Lambda.
func (s *Stack) console(ctx context.Context, mux *http.ServeMux) {
	s.view = newConsoleView(s.aws, s.res.refs["Table"], s.ConsoleOutcomeQueueURL)
	if s.view.outcomes.url != "" {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.view.outcomes.run(ctx, s.log) }()
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/_dev/", http.StatusFound) })
	mux.HandleFunc("GET /_dev/{$}", page(consolePage))
	mux.HandleFunc("GET /_dev/h5", page(h5Page))
	// The client kit (infra/clients/js), which the H5 page signs in with.
	mux.HandleFunc("GET /_dev/wxbridge.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(jskit.Script)
	})
	mux.HandleFunc("GET /_dev/config", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.devConfig()) })
	mux.HandleFunc("GET /_dev/api/state", s.handle(s.state))
	mux.HandleFunc("GET /_dev/api/ledger", s.handle(s.ledgerAPI))
	if s.sb == nil {
		return
	}
	mux.HandleFunc("POST /_dev/api/people", s.handle(func(r *http.Request) (any, error) {
		var spec sandbox.PersonSpec
		if err := readJSON(r, &spec); err != nil {
			return nil, err
		}
		return s.sb.CreatePerson(spec), nil
	}))
	// The actions in one app take {"appid"}; none, or "", is the default
	// app of the kind.
	mux.HandleFunc("POST /_dev/api/people/{id}/login", s.handle(func(r *http.Request) (any, error) {
		var in appChoice
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		out, _, err := s.miniProgramLogin(r.Context(), r.PathValue("id"), in.AppID)
		return out, err
	}))
	mux.HandleFunc("POST /_dev/api/people/{id}/app-login", s.handle(func(r *http.Request) (any, error) {
		var in appChoice
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		return s.mobileLogin(r.Context(), r.PathValue("id"), in.AppID)
	}))
	mux.HandleFunc("POST /_dev/api/people/{id}/verify-phone", s.handle(func(r *http.Request) (any, error) {
		var in appChoice
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		return s.verifyPhone(r.Context(), r.PathValue("id"), in.AppID)
	}))
	mux.HandleFunc("POST /_dev/api/people/{id}/follow", s.handle(func(r *http.Request) (any, error) {
		var in appChoice
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		return s.sb.FollowApp(r.Context(), r.PathValue("id"), in.AppID, "")
	}))
	mux.HandleFunc("POST /_dev/api/people/{id}/unfollow", s.handle(func(r *http.Request) (any, error) {
		var in appChoice
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		return s.sb.UnfollowApp(r.Context(), r.PathValue("id"), in.AppID)
	}))
	s.notifyRoutes(mux)
	s.backfillRoutes(mux)
	mux.HandleFunc("POST /_dev/api/people/{id}/scan", s.handle(func(r *http.Request) (any, error) {
		var in struct {
			ExternalID string `json:"external_id"`
			appChoice
		}
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		// The business's binding QR code: a temporary parametric code whose
		// scene is a binding token for the external id.
		scene, err := binding.Sign(s.apps.BindKey, in.ExternalID, time.Now().Add(30*time.Minute))
		if err != nil {
			return nil, badRequest{err}
		}
		return s.sb.ScanApp(r.Context(), r.PathValue("id"), in.AppID, scene, "")
	}))
}

// appChoice is the app a console action is played in: "" is the default
// app of the action's kind.
type appChoice struct {
	AppID string `json:"appid"`
}

// badRequest marks an error the caller caused.
type badRequest struct{ error }

func (s *Stack) handle(f func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		var br badRequest
		switch {
		case errors.As(err, &br), errors.Is(err, sandbox.ErrNoPerson), errors.Is(err, sandbox.ErrNoApp), errors.Is(err, sandbox.ErrAppKind):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

func page(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return badRequest{fmt.Errorf("body is not the expected JSON: %w", err)}
	}
	return nil
}

// miniProgramLogin plays mini program appid ("" the default): wx.login in
// the sandbox, then POST /mp/login (or /mp/{appid}/login) to wxbridge,
// exactly as a phone would. It returns the answer and its session.
func (s *Stack) miniProgramLogin(ctx context.Context, id, appid string) (map[string]any, string, error) {
	code, err := s.sb.WXLoginApp(id, appid)
	if err != nil {
		return nil, "", err
	}
	out, err := s.callAPI(ctx, appPath("/mp", appid, "/login"), map[string]string{"code": code}, "")
	if err != nil {
		return nil, "", err
	}
	session, _ := out["session"].(string)
	return out, session, nil
}

// mobileLogin plays mobile app appid ("" the default): the WeChat SDK's
// login in the sandbox, whose code the app sends to POST /app/login (or
// /app/{appid}/login).
func (s *Stack) mobileLogin(ctx context.Context, id, appid string) (map[string]any, error) {
	code, err := s.sb.AppLoginCode(id, appid)
	if err != nil {
		return nil, err
	}
	return s.callAPI(ctx, appPath("/app", appid, "/login"), map[string]string{"code": code}, "")
}

// verifyPhone plays the getPhoneNumber button in mini program appid ("" the
// default): a login there first (the number goes to the session's person),
// then the button's code to POST /mp/phone (or /mp/{appid}/phone). The
// answer has the number masked.
func (s *Stack) verifyPhone(ctx context.Context, id, appid string) (map[string]any, error) {
	_, session, err := s.miniProgramLogin(ctx, id, appid)
	if err != nil {
		return nil, err
	}
	code, err := s.sb.PhoneCode(id, appid)
	if err != nil {
		return nil, err
	}
	return s.callAPI(ctx, appPath("/mp", appid, "/phone"), map[string]string{"code": code}, session)
}

// appPath is a route of the app appid: base+rest for the default route
// (appid ""), base/appid+rest for the app's own.
func appPath(base, appid, rest string) string {
	if appid == "" {
		return base + rest
	}
	return base + "/" + appid + rest
}

// callAPI posts body to wxbridge's route path, with the session as bearer
// when given, as a client would.
func (s *Stack) callAPI(ctx context.Context, path string, body any, session string) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.APIURL+path, bytes.NewReader(b))
	if err != nil {
		return nil, badRequest{err}
	}
	req.Header.Set("Content-Type", "application/json")
	if session != "" {
		req.Header.Set("Authorization", "Bearer "+session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("POST %s answered %d, not JSON: %w", path, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s answered %d: %v", path, resp.StatusCode, out["error"])
	}
	return out, nil
}

// personView is a simulated person in every app, with what wxbridge knows
// of them.
type personView struct {
	sandbox.Person
	// Phone is the number WeChat holds for the person, masked: the console
	// shows no number whole.
	Phone string       `json:"phone"`
	Apps  []personApp  `json:"apps"`
	Known *knownPerson `json:"wxbridge,omitempty"`
}

// personApp is the person in one configured app.
type personApp struct {
	Kind    config.Kind `json:"kind"`
	AppID   string      `json:"appid"`
	OpenID  string      `json:"openid"`
	Default bool        `json:"default,omitempty"`
	Unbound bool        `json:"unbound,omitempty"`
	// Known is whether wxbridge has this identity on the person.
	Known bool `json:"known"`
	// Official accounts: Following is what WeChat says (the sandbox tells
	// the default account's only), Subscribed what wxbridge recorded; nil
	// when not known.
	Following  *bool `json:"following,omitempty"`
	Subscribed *bool `json:"subscribed,omitempty"`
}

type knownPerson struct {
	UID        string `json:"uid"`
	Linked     bool   `json:"linked"`
	FollowsOA  bool   `json:"follows_oa"`
	HasMP      bool   `json:"has_mp"`
	HasOA      bool   `json:"has_oa"`
	UnionID    bool   `json:"unionid_known"`
	ExternalID string `json:"external_id,omitempty"`
	Merged     int    `json:"merged"`
	// Phone is the number the person verified last, masked, and the mini
	// program they verified it in.
	Phone      string `json:"phone,omitempty"`
	PhoneAppID string `json:"phone_appid,omitempty"`
}

type tokenView struct {
	App         string    `json:"app"`
	AppID       string    `json:"appid"`
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	Failure     string    `json:"failure,omitempty"`
}

type queueView struct {
	Name     string `json:"name"`
	Visible  int    `json:"visible"`
	InFlight int    `json:"in_flight"`
	Delayed  int    `json:"delayed"`
}

// shownPeople is how many people the console shows cards for, and
// shownJobs how many of the newest jobs its state carries (the ledger
// panel pages through the others with GET /_dev/api/ledger).
const (
	shownPeople = 24
	shownJobs   = 15
)

// state is everything the console shows, in one poll.
func (s *Stack) state(r *http.Request) (any, error) {
	ctx := r.Context()
	out := struct {
		People []personView `json:"people"`
		// Everyone counts the sandbox's people; People shows the first
		// few, so that a backfill of thousands does not flood the page.
		Everyone int           `json:"everyone"`
		Backfill *backfill.Run `json:"backfill,omitempty"`
		Tokens   []tokenView   `json:"tokens"`
		Queues   []queueView   `json:"queues"`
		// Ledger is the newest jobs: the first page of GET
		// /_dev/api/ledger, whose cursor LedgerNext is.
		Ledger         []ledgerEntry `json:"ledger"`
		LedgerNext     string        `json:"ledger_next,omitempty"`
		LedgerTotal    int           `json:"ledger_total"`
		LedgerComplete bool          `json:"ledger_complete"`
		Outcomes       outcomesView  `json:"outcomes"`
		Logs           []string      `json:"logs"`
		Now            time.Time     `json:"now"`
	}{Logs: s.tap.recent(60), Now: time.Now(), Backfill: s.backfill(r), Outcomes: s.view.outcomes.view()}
	// A ledger that cannot be read shows what the view has.
	if err := s.view.ledger.step(ctx); err != nil {
		s.log.Warn("console ledger", "error", err)
	}
	if p, err := s.view.ledger.page("", shownJobs); err == nil {
		out.Ledger, out.LedgerNext, out.LedgerTotal, out.LedgerComplete = p.Entries, p.Next, p.Total, p.Complete
	}
	if s.sb != nil {
		out.Now = s.sb.Clock().Now()
		store := identity.NewStore(dynamodb.NewFromConfig(s.aws), s.res.refs["Table"])
		everyone := s.sb.People()
		out.Everyone = len(everyone)
		apps := s.devApps()
		for _, p := range everyone[:min(len(everyone), shownPeople)] {
			out.People = append(out.People, s.personView(ctx, store, apps, p))
		}
	}
	sm := secretsmanager.NewFromConfig(s.aws)
	ids := tokens.SecretIDs(s.apps, s.tokenSecret(tokens.EnvMiniProgramSecret), s.tokenSecret(tokens.EnvOfficialAccountSecret), s.tokenSecret(tokens.EnvSecretPrefix))
	for _, ref := range s.apps.AllApps() {
		id := ids[ref.AppID]
		if id == "" || !ref.Kind.TakesToken() {
			continue
		}
		var st tokens.Stored
		v := tokenView{App: strings.ReplaceAll(string(ref.Kind), "_", " "), AppID: ref.AppID}
		// A token secret the refresher has not created yet reads as no
		// token yet.
		if err := awsenv.SecretJSON(ctx, sm, id, &st); err == nil {
			v.RefreshedAt, v.ExpiresAt = st.RefreshedAt, st.ExpiresAt
			if st.Failure != nil {
				v.Failure = fmt.Sprintf("errcode %d", st.Failure.ErrCode)
			}
		}
		out.Tokens = append(out.Tokens, v)
	}
	q := sqs.NewFromConfig(s.aws)
	for _, id := range s.tpl.ResourcesOf("AWS::SQS::Queue") {
		attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: strPtr(s.res.queues[id]), AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		}})
		if err != nil {
			continue
		}
		n := func(k sqstypes.QueueAttributeName) int { v, _ := strconv.Atoi(attrs.Attributes[string(k)]); return v }
		out.Queues = append(out.Queues, queueView{Name: id, Visible: n(sqstypes.QueueAttributeNameApproximateNumberOfMessages),
			InFlight: n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible), Delayed: n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)})
	}
	return out, nil
}

// personView is p in every app, and what wxbridge knows of them: the
// person any of p's identities (the unionid first, then each app's openid)
// finds.
func (s *Stack) personView(ctx context.Context, store *identity.Store, apps []DevApp, p sandbox.Person) personView {
	v := personView{Person: p}
	if p.Phone != "" {
		v.Phone = wechat.MaskPhone(p.Phone)
	}
	var found identity.Person
	err := identity.ErrNotFound
	if p.UnionID != "" {
		found, err = store.Lookup(ctx, identity.UnionKey(p.UnionID))
	}
	for _, a := range apps {
		if !errors.Is(err, identity.ErrNotFound) {
			break
		}
		if openid := p.OpenIDs[a.AppID]; openid != "" {
			found, err = store.Lookup(ctx, identityKey(a.Kind, a.AppID, openid))
		}
	}
	known := err == nil
	if known {
		v.Known = &knownPerson{UID: found.UID, Linked: found.Linked(), FollowsOA: found.FollowsOA(), HasMP: len(found.MP) > 0,
			HasOA: len(found.OA) > 0, UnionID: found.UnionID != "", ExternalID: found.ExternalID, Merged: len(found.MergedFrom)}
		if ph := found.Phone; ph != nil {
			v.Known.Phone, v.Known.PhoneAppID = wechat.MaskPhone(ph.Number), ph.AppID
		}
	}
	for _, a := range apps {
		pa := personApp{Kind: a.Kind, AppID: a.AppID, OpenID: p.OpenIDs[a.AppID], Default: a.Default, Unbound: a.Unbound}
		if known {
			_, openid, ok := found.OpenID(a.AppID)
			pa.Known = ok && openid == pa.OpenID
		}
		if a.Kind == config.KindOfficialAccount {
			if a.Default {
				pa.Following = &p.Following
			}
			if oa, ok := found.OA[a.AppID]; known && ok && (oa.SubscribedAt != nil || oa.UnsubscribedAt != nil) {
				pa.Subscribed = &oa.Subscribed
			}
		}
		v.Apps = append(v.Apps, pa)
	}
	return v
}

// identityKey is the identity key of openid in app appid of kind k.
func identityKey(k config.Kind, appid, openid string) identity.Key {
	switch k {
	case config.KindOfficialAccount:
		return identity.OAKey(appid, openid)
	case config.KindWebsite:
		return identity.WebKey(appid, openid)
	case config.KindMobile:
		return identity.MobileKey(appid, openid)
	}
	return identity.MPKey(appid, openid)
}

// tokenSecret is what the template gives env (a token secret, or the
// prefix of the others), as any function sees it.
func (s *Stack) tokenSecret(env string) string {
	for _, f := range s.fns.fns {
		if v, ok := f.def.Env[env]; ok {
			if id, err := s.res.resolve(v); err == nil {
				return id
			}
		}
	}
	return ""
}

func strPtr(s string) *string { return &s }

// consoleView is what the console keeps between requests: its copy of the
// send ledger and the outcome events it has read.
type consoleView struct {
	ledger   *ledgerView
	outcomes *outcomeFeed
}

// newConsoleView reads the ledger in table and, when queueURL is not "",
// the outcome events on that queue.
func newConsoleView(cfg aws.Config, table, queueURL string) *consoleView {
	v := &consoleView{ledger: newLedgerView(dynamodb.NewFromConfig(cfg), table, 0)}
	v.outcomes = &outcomeFeed{client: sqs.NewFromConfig(cfg), url: queueURL, keep: keptOutcomes, seen: v.ledger.observe}
	return v
}

// ledgerEntry is a ledger entry as the console shows it.
type ledgerEntry struct {
	JobID     string         `json:"job_id"`
	Status    string         `json:"status"`
	Channel   string         `json:"channel,omitempty"`
	ErrCode   int            `json:"errcode,omitempty"`
	Class     string         `json:"class,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Report    string         `json:"report,omitempty"`
	Attempts  int            `json:"attempts,omitempty"`
	Tried     []contract.Try `json:"tried,omitempty"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// scanAPI is the DynamoDB call the ledger view reads with.
type scanAPI interface {
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// ledgerView is the console's copy of the send ledger, newest first.
//
// DynamoDB returns a table's items in the order of their keys' hashes,
// with no index of ledger items by time (Lambda never lists jobs), so
// newest first needs every ledger item. The view reads the table as a
// sweep, one DynamoDB page (1 MB, LastEvaluatedKey as the cursor) per
// console request, so that each request costs at most one page however
// large the table grows (moto serves DynamoDB one request at a time: a
// whole scan would stall every function). A small table is read whole on
// every request. Outcome events update a job as soon as they arrive,
// before the sweep comes back to it.
type ledgerView struct {
	db        scanAPI
	table     string
	pageItems int32 // items a scan page evaluates; 0: DynamoDB's 1 MB
	now       func() time.Time

	reading sync.Mutex // one page read at a time

	mu       sync.Mutex
	sweep    map[string]bool // the jobs the sweep in progress has read; nil between sweeps
	cursor   ddb.Item        // where it continues
	started  time.Time       // when it began
	jobs     map[string]ledgerEntry
	complete bool // a sweep has read the whole table
}

func newLedgerView(db scanAPI, table string, pageItems int32) *ledgerView {
	return &ledgerView{db: db, table: table, pageItems: pageItems, now: time.Now, jobs: map[string]ledgerEntry{}}
}

// ledgerAttrs are the attributes the console shows ("status" and "class"
// are DynamoDB reserved words).
var ledgerAttrs = map[string]string{"#pk": "pk", "#id": "job_id", "#s": "status", "#ch": "channel", "#e": "errcode", "#c": "class",
	"#r": "reason", "#rep": "report", "#a": "attempts", "#t": "tried", "#u": "updated_at"}

// step reads the next page of the sweep, if no other request is reading
// one.
func (v *ledgerView) step(ctx context.Context) error {
	if !v.reading.TryLock() {
		return nil
	}
	defer v.reading.Unlock()
	v.mu.Lock()
	if v.sweep == nil {
		v.sweep, v.cursor, v.started = map[string]bool{}, nil, v.now()
	}
	cursor := v.cursor
	v.mu.Unlock()

	in := &dynamodb.ScanInput{
		TableName:                 &v.table,
		ExclusiveStartKey:         cursor,
		FilterExpression:          aws.String("begins_with(#pk, :p)"),
		ProjectionExpression:      aws.String(strings.Join(slices.Sorted(maps.Keys(ledgerAttrs)), ", ")),
		ExpressionAttributeNames:  ledgerAttrs,
		ExpressionAttributeValues: ddb.Item{":p": ddb.S(notify.LedgerPrefix)},
	}
	if v.pageItems > 0 {
		in.Limit = &v.pageItems
	}
	out, err := v.db.Scan(ctx, in)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, it := range out.Items {
		var e notify.Entry
		if attributevalue.UnmarshalMap(it, &e) != nil || e.JobID == "" {
			continue
		}
		v.sweep[e.JobID] = true
		v.keep(ledgerEntry{JobID: e.JobID, Status: string(e.Status), Channel: string(e.Channel), ErrCode: e.ErrCode, Class: e.Class,
			Reason: e.Reason, Report: e.Report, Attempts: e.Attempts, Tried: e.Tried, UpdatedAt: e.UpdatedAt})
	}
	v.cursor = out.LastEvaluatedKey
	if len(v.cursor) == 0 {
		// The sweep is whole: a job it did not read is gone from the table,
		// unless an outcome event told of it after the sweep began.
		for id, e := range v.jobs {
			if !v.sweep[id] && e.UpdatedAt.Before(v.started.Add(-time.Second)) {
				delete(v.jobs, id)
			}
		}
		v.sweep, v.complete = nil, true
	}
	return nil
}

// keep records e unless the view knows a later state of its job. Callers
// hold mu.
func (v *ledgerView) keep(e ledgerEntry) {
	if cur, ok := v.jobs[e.JobID]; !ok || !e.UpdatedAt.Before(cur.UpdatedAt) {
		v.jobs[e.JobID] = e
	}
}

// observe records what an outcome event says of its job.
func (v *ledgerView) observe(o contract.Outcome) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keep(ledgerEntry{JobID: o.JobID, Status: string(o.Status), Channel: string(o.Channel), ErrCode: o.ErrCode, Class: o.Class,
		Reason: o.Reason, Report: o.Report, Attempts: o.Attempts, Tried: o.Tried, UpdatedAt: o.At})
}

// ledgerPage is one page of the ledger, newest first.
type ledgerPage struct {
	Entries []ledgerEntry `json:"entries"`
	// Next is the cursor of the following page; "" on the last.
	Next  string `json:"next,omitempty"`
	Total int    `json:"total"`
	// Complete is false until the view has read the whole table once:
	// until then older jobs may be missing.
	Complete bool `json:"complete"`
}

// newestFirst orders entries by last change, newest first, then by job id.
func newestFirst(a, b ledgerEntry) int {
	if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.JobID, b.JobID)
}

// ledgerCursor is the position after entry e: its time and job id, so
// that jobs changing meanwhile shift no page onto another.
func ledgerCursor(e ledgerEntry) string {
	return base64.RawURLEncoding.EncodeToString([]byte(e.UpdatedAt.UTC().Format(time.RFC3339Nano) + " " + e.JobID))
}

func parseLedgerCursor(c string) (ledgerEntry, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	at, id, ok := strings.Cut(string(b), " ")
	t, terr := time.Parse(time.RFC3339Nano, at)
	if err != nil || !ok || terr != nil {
		return ledgerEntry{}, badRequest{fmt.Errorf("cursor %q is not one this API gave", c)}
	}
	return ledgerEntry{JobID: id, UpdatedAt: t}, nil
}

// page returns up to limit entries after cursor ("": from the newest).
func (v *ledgerView) page(cursor string, limit int) (ledgerPage, error) {
	v.mu.Lock()
	all := slices.SortedFunc(maps.Values(v.jobs), newestFirst)
	p := ledgerPage{Total: len(all), Complete: v.complete}
	v.mu.Unlock()
	if cursor != "" {
		after, err := parseLedgerCursor(cursor)
		if err != nil {
			return ledgerPage{}, err
		}
		i, _ := slices.BinarySearchFunc(all, after, newestFirst)
		if i < len(all) && newestFirst(all[i], after) == 0 {
			i++
		}
		all = all[i:]
	}
	p.Entries = slices.Clone(all[:min(limit, len(all))])
	if p.Entries == nil {
		p.Entries = []ledgerEntry{} // [] in JSON, not null
	}
	if len(all) > limit {
		p.Next = ledgerCursor(p.Entries[limit-1])
	}
	return p, nil
}

// ledgerAPI is GET /_dev/api/ledger?cursor=&limit=: a page of every job in
// the ledger, newest first (limit 50 by default, at most 1000).
func (s *Stack) ledgerAPI(r *http.Request) (any, error) {
	limit := 50
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return nil, badRequest{fmt.Errorf("limit %q: want 1 to 1000", l)}
		}
		limit = n
	}
	if err := s.view.ledger.step(r.Context()); err != nil {
		return nil, err
	}
	return s.view.ledger.page(r.URL.Query().Get("cursor"), limit)
}

// keptOutcomes is how many outcome events the console keeps.
const keptOutcomes = 50

// queueAPI is the SQS API the outcome feed reads with.
type queueAPI interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// outcomeFeed reads the console's outcome queue (an EventBridge rule sends
// it every outcome event, as a business's own queue would get them) and
// keeps the latest events.
type outcomeFeed struct {
	client queueAPI
	url    string // "": outcomes are off
	keep   int
	seen   func(contract.Outcome)

	mu          sync.Mutex
	recent      []outcomeEvent // oldest first
	received    int
	undecodable int
	lastError   string
}

// outcomeEvent is an outcome event as the console received it.
type outcomeEvent struct {
	DetailType string           `json:"detail_type"`
	Detail     contract.Outcome `json:"detail"`
	ReceivedAt time.Time        `json:"received_at"`
	// LatencyMS is from the ledger's change (detail.at) to the event's
	// arrival on the queue.
	LatencyMS int64 `json:"latency_ms"`
}

// run reads the queue until ctx ends.
func (f *outcomeFeed) run(ctx context.Context, log *slog.Logger) {
	for ctx.Err() == nil {
		start := time.Now()
		n, err := f.receive(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("console outcome queue", "error", err)
		}
		// A long poll that came back early and empty (an error, or an SQS
		// that does not wait) is not repeated at once.
		if n == 0 && time.Since(start) < 500*time.Millisecond {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// receive takes one batch of events off the queue and deletes it,
// undecodable messages included (nothing else reads this queue; they are
// counted, not retried forever).
func (f *outcomeFeed) receive(ctx context.Context) (int, error) {
	out, err := f.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &f.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
	if err != nil {
		return 0, err
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	now := time.Now()
	del := make([]sqstypes.DeleteMessageBatchRequestEntry, 0, len(out.Messages))
	for i, m := range out.Messages {
		del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		ev, err := contract.DecodeEvent([]byte(aws.ToString(m.Body)))
		f.mu.Lock()
		f.received++
		if err != nil {
			f.undecodable++
			f.lastError = err.Error()
			f.mu.Unlock()
			continue
		}
		f.recent = append(f.recent, outcomeEvent{DetailType: ev.DetailType, Detail: ev.Detail, ReceivedAt: now, LatencyMS: now.Sub(ev.Detail.At).Milliseconds()})
		if len(f.recent) > f.keep {
			f.recent = slices.Delete(f.recent, 0, len(f.recent)-f.keep)
		}
		f.mu.Unlock()
		if f.seen != nil {
			f.seen(ev.Detail)
		}
	}
	if _, err := f.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &f.url, Entries: del}); err != nil {
		return len(out.Messages), fmt.Errorf("delete: %w", err)
	}
	return len(out.Messages), nil
}

// outcomesView is the outcome panel's part of the console's state.
type outcomesView struct {
	// Enabled is false when the devstack has no console outcome queue.
	Enabled     bool           `json:"enabled"`
	QueueURL    string         `json:"queue_url,omitempty"`
	Events      []outcomeEvent `json:"events"` // newest first
	Received    int            `json:"received"`
	Undecodable int            `json:"undecodable,omitempty"`
	LastError   string         `json:"last_error,omitempty"`
}

func (f *outcomeFeed) view() outcomesView {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := outcomesView{Enabled: f.url != "", QueueURL: f.url, Events: slices.Clone(f.recent), Received: f.received, Undecodable: f.undecodable, LastError: f.lastError}
	slices.Reverse(v.Events)
	return v
}
