package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	sessionKey = "session-signing-key-for-tests-0123456789abcdef"
	bindKey    = "business-bind-key-for-tests-0123456789abcdef"
)

// env is one login function wired to its own table, secret and sandbox,
// its AWS calls held to LoginFunction's policy; store and db are the
// test's, unchecked.
type env struct {
	h       *Handler
	te      *testenv.Env
	sb      *sandbox.Sandbox
	store   *identity.Store
	db      *dynamodb.Client
	table   string
	logs    *bytes.Buffer
	counter *awstest.Counter // the handler's DynamoDB requests (and db's)
}

func newEnv(t testing.TB, tweaks ...func(*sandbox.Config)) *env {
	t.Helper()
	opts := []testenv.Option{testenv.Tokens(), testenv.Configure(func(c *config.Config) {
		c.OfficialAccount, c.SigningKey, c.BindKey = config.OfficialAccount{}, sessionKey, bindKey
	})}
	for _, f := range tweaks {
		opts = append(opts, testenv.Sandbox(f))
	}
	te := testenv.New(t, opts...)
	fn := te.As("LoginFunction")
	// The configuration goes through a real secret, as in Lambda.
	cfg, err := config.Load(context.Background(), fn.Secrets, te.ConfigSecret)
	if err != nil {
		t.Fatal(err)
	}
	table := te.Table
	logs := &bytes.Buffer{}
	h, err := New(cfg, fn.WeChat, identity.NewStore(fn.DB, table), observe.Logger(logs, "login"), observe.NewMetrics(logs, "login"), WithTokenUses(binding.NewUses(fn.DB, table)))
	if err != nil {
		t.Fatal(err)
	}
	return &env{h: h, te: te, sb: te.Sandbox, store: identity.NewStore(te.DB, table), db: te.DB, table: table, logs: logs, counter: te.Counter}
}

// faults puts an AWS fault proxy in front of the IAM check, and returns it
// with the login function's AWS configuration through both.
func (e *env) faults(t testing.TB) (*awsfault.Proxy, aws.Config) {
	t.Helper()
	p := awsfault.ForTest(t, e.te.IAM().URL())
	return p, p.Config(e.te.FunctionAWS("LoginFunction"))
}

func (e *env) call(t testing.TB, route, body, bearer string) (int, map[string]any, events.APIGatewayV2HTTPResponse) {
	t.Helper()
	return e.callIn(t, route, "", body, bearer)
}

// callIn calls route, whose {appid}, if any, is appid, as API Gateway
// passes it: the route key as the template has it, the value in
// pathParameters.
func (e *env) callIn(t testing.TB, route, appid, body, bearer string) (int, map[string]any, events.APIGatewayV2HTTPResponse) {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	req := events.APIGatewayV2HTTPRequest{RouteKey: route, RawPath: path, Body: body, Headers: map[string]string{}}
	if strings.Contains(path, "{appid}") {
		req.RawPath = strings.Replace(path, "{appid}", appid, 1)
		req.PathParameters = map[string]string{"appid": appid}
	}
	req.RequestContext.HTTP.Method = method
	if bearer != "" {
		req.Headers["authorization"] = "Bearer " + bearer
	}
	resp, err := e.h.Handle(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: handler error %v", route, err)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &out); err != nil {
		t.Fatalf("%s: body is not JSON: %q", route, resp.Body)
	}
	return resp.StatusCode, out, resp
}

func (e *env) login(t testing.TB, personID, bindToken string) (int, map[string]any) {
	t.Helper()
	code, err := e.sb.WXLogin(personID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"code": code, "bind_token": bindToken})
	status, out, _ := e.call(t, "POST /mp/login", string(body), "")
	return status, out
}

func (e *env) items(t testing.TB) int {
	t.Helper()
	out, err := e.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &e.table})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Items)
}

func uidOf(out map[string]any) string {
	p, _ := out["person"].(map[string]any)
	s, _ := p["uid"].(string)
	return s
}

func TestLoginNewThenReturning(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	status, first := e.login(t, p.ID, "")
	if status != 200 || uidOf(first) == "" || first["session"] == "" {
		t.Fatalf("first login = %d %v", status, first)
	}
	status, again := e.login(t, p.ID, "")
	if status != 200 || uidOf(again) != uidOf(first) {
		t.Fatalf("returning login = %d %v, want uid %s", status, again, uidOf(first))
	}
	status, me, _ := e.call(t, "GET /me", "", again["session"].(string))
	if status != 200 || me["uid"] != uidOf(first) || me["unionid_known"] != true {
		t.Fatalf("GET /me = %d %v", status, me)
	}
	mp := me["mini_program"].(map[string]any)
	if mp["openid"] != p.MPOpenID || mp["appid"] != sandbox.DevMiniProgram.AppID {
		t.Errorf("me.mini_program = %v", mp)
	}
}

// TestLoginLinksToFollower: a follower known from the official account
// (same unionid) logs in to the mini program and is the same person.
func TestLoginLinksToFollower(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	follower, err := e.store.Link(context.Background(), identity.Sighting{
		OA:      &identity.OASighting{AppID: sandbox.DevOfficialAccount.AppID, OpenID: p.OAOpenID, Follow: &identity.Follow{Subscribed: true, At: time.Now()}},
		UnionID: p.UnionID,
	})
	if err != nil {
		t.Fatal(err)
	}
	status, out := e.login(t, p.ID, "")
	person := out["person"].(map[string]any)
	if status != 200 || uidOf(out) != follower.Person.UID || person["linked"] != true || person["follows_oa"] != true {
		t.Fatalf("login = %d %v, want linked follower %s", status, out, follower.Person.UID)
	}
}

func TestLoginRejects(t *testing.T) {
	cases := []struct {
		name   string
		body   func(e *env, p sandbox.Person) string
		setup  func(e *env)
		status int
		code   string
	}{
		{name: "malformed_json", body: static(`{"code":`), status: 400, code: "invalid_request"},
		{name: "not_an_object", body: static(`["x"]`), status: 400, code: "invalid_request"},
		{name: "missing_code", body: static(`{}`), status: 400, code: "invalid_request"},
		{name: "unknown_field", body: static(`{"js_code":"x"}`), status: 400, code: "invalid_request"},
		{name: "oversized_body", body: static(`{"code":"` + strings.Repeat("x", MaxBody) + `"}`), status: 413, code: "body_too_large"},
		{name: "unknown_code", body: static(`{"code":"0123456789abcdef0123456789abcdef"}`), status: 400, code: "invalid_code"},
		{name: "used_code", body: func(e *env, p sandbox.Person) string {
			code, _ := e.sb.WXLogin(p.ID)
			if _, err := e.h.wechat.Code2Session(context.Background(), sandbox.DevMiniProgram.AppID, sandbox.DevMiniProgram.Secret, code); err != nil {
				panic(err)
			}
			return `{"code":"` + code + `"}`
		}, status: 400, code: "invalid_code"},
		{name: "expired_code", body: func(e *env, p sandbox.Person) string {
			code, _ := e.sb.WXLogin(p.ID)
			e.sb.Clock().Advance(5*time.Minute + time.Second)
			return `{"code":"` + code + `"}`
		}, status: 400, code: "invalid_code"},
		{name: "forged_bind_token", body: func(e *env, p sandbox.Person) string {
			code, _ := e.sb.WXLogin(p.ID)
			tok, _ := binding.Sign("some-other-key-0123456789abcdef0123", "8812", time.Now().Add(time.Minute))
			return `{"code":"` + code + `","bind_token":"` + tok + `"}`
		}, status: 400, code: "invalid_bind_token"},
		{name: "wechat_busy", body: freshCode, setup: fault(-1), status: 503, code: "wechat_unavailable"},
		{name: "wechat_rate_limited", body: freshCode, setup: fault(45011), status: 503, code: "wechat_unavailable"},
		{name: "risky_user_blocked", body: freshCode, setup: fault(40226), status: 403, code: "login_blocked"},
		{name: "bad_app_secret_is_ours_to_fix", body: freshCode, setup: fault(40125), status: 500, code: "server_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.sb.CreatePerson(sandbox.PersonSpec{})
			body := tc.body(e, p)
			if tc.setup != nil {
				tc.setup(e)
			}
			status, out, resp := e.call(t, "POST /mp/login", body, "")
			if status != tc.status || out["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
			if status == 503 && resp.Headers["Retry-After"] == "" {
				t.Error("503 without Retry-After")
			}
			if n := e.items(t); n != 0 {
				t.Errorf("a failed login wrote %d items", n)
			}
			if strings.Contains(resp.Body, "rid") || strings.Contains(resp.Body, "errcode") {
				t.Errorf("answer leaks platform internals: %s", resp.Body)
			}
		})
	}
}

func static(s string) func(*env, sandbox.Person) string {
	return func(*env, sandbox.Person) string { return s }
}

func freshCode(e *env, p sandbox.Person) string {
	code, _ := e.sb.WXLogin(p.ID)
	return `{"code":"` + code + `"}`
}

func fault(errcode int) func(*env) {
	return func(e *env) {
		if err := e.sb.InjectFault(sandbox.Fault{Path: "/sns/jscode2session", ErrCode: errcode, Count: 1}); err != nil {
			panic(err)
		}
	}
}

func TestBinding(t *testing.T) {
	e := newEnv(t)
	alice := e.sb.CreatePerson(sandbox.PersonSpec{})
	tok, _ := binding.Sign(bindKey, "8812", time.Now().Add(10*time.Minute))
	status, out := e.login(t, alice.ID, tok)
	if status != 200 {
		t.Fatalf("bind login = %d %v", status, out)
	}
	_, me, _ := e.call(t, "GET /me", "", out["session"].(string))
	if me["external_id"] != "8812" {
		t.Fatalf("me = %v, want external_id 8812", me)
	}
	// Alice's retried login with the same token is fine.
	if status, out := e.login(t, alice.ID, tok); status != 200 || uidOf(out) == "" {
		t.Fatalf("the same user presenting the token again = %d %v", status, out)
	}
	// The same business account cannot be claimed by a second WeChat user:
	// with a token of its own, the account is bound elsewhere.
	bob := e.sb.CreatePerson(sandbox.PersonSpec{})
	before := e.items(t)
	own, _ := binding.Sign(bindKey, "8812", time.Now().Add(20*time.Minute))
	status, out = e.login(t, bob.ID, own)
	if status != 409 || out["error"] != "binding_conflict" {
		t.Fatalf("second binding = %d %v, want 409 binding_conflict", status, out)
	}
	if after := e.items(t); after != before {
		t.Errorf("a refused binding wrote: %d items, then %d", before, after)
	}
}

// TestBindTokenIsSingleUse (issue 12, defect 2): a bind token that bound
// one WeChat user binds nobody else: a second user presenting it (a token
// leaked, a link forwarded) is refused as an invalid bind token, writes
// nothing, and the refusal is logged and counted, whether or not logins
// reveal the unionid (the token's first user is then named by unionid or
// by mini-program openid).
func TestBindTokenIsSingleUse(t *testing.T) {
	for _, reveal := range []bool{true, false} {
		t.Run(map[bool]string{true: "unionid_known", false: "unionid_unknown"}[reveal], func(t *testing.T) {
			e := newEnv(t)
			e.sb.SetRevealUnionID(reveal)
			alice, mallory := e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{})
			tok, _ := binding.Sign(bindKey, "8812", time.Now().Add(10*time.Minute))
			if status, out := e.login(t, alice.ID, tok); status != 200 {
				t.Fatalf("alice = %d %v", status, out)
			}
			before := e.items(t)
			status, out := e.login(t, mallory.ID, tok)
			if status != 400 || out["error"] != "invalid_bind_token" {
				t.Fatalf("mallory with alice's token = %d %v, want 400 invalid_bind_token", status, out)
			}
			if after := e.items(t); after != before {
				t.Errorf("the refused login wrote: %d items, then %d", before, after)
			}
			got, err := e.store.Lookup(context.Background(), identity.ExternalKey("8812"))
			if err != nil || got.MP[sandbox.DevMiniProgram.AppID].OpenID != alice.MPOpenID {
				t.Fatalf("8812 = %+v, %v; want alice's person", got, err)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, `"reason":"token_used"`) || !strings.Contains(logs, `"BindingsRefused":1`) {
				t.Errorf("the refusal was not logged and counted: %s", logs)
			}
		})
	}
}

// TestProfileRevealsUnionID: a mini program not bound to the open platform
// learns the unionid only from open data; posting it merges the login with
// the follower who already had that unionid.
func TestProfileRevealsUnionID(t *testing.T) {
	e := newEnv(t)
	e.sb.SetRevealUnionID(false)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	follower, err := e.store.Link(context.Background(), identity.Sighting{
		OA:      &identity.OASighting{AppID: sandbox.DevOfficialAccount.AppID, OpenID: p.OAOpenID, Follow: &identity.Follow{Subscribed: true, At: time.Now()}},
		UnionID: p.UnionID,
	})
	if err != nil {
		t.Fatal(err)
	}
	status, out := e.login(t, p.ID, "")
	if status != 200 || out["person"].(map[string]any)["linked"] != false {
		t.Fatalf("login without unionid = %d %v", status, out)
	}
	sess := out["session"].(string)
	data, iv, err := e.sb.OpenData(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"encrypted_data": data, "iv": iv})
	status, prof, _ := e.call(t, "POST /mp/profile", string(body), sess)
	person, _ := prof["person"].(map[string]any)
	if status != 200 || person["linked"] != true || person["follows_oa"] != true || prof["unionid_known"] != true {
		t.Fatalf("profile = %d %v", status, prof)
	}
	// Whoever survived the merge, the session still resolves to one person
	// who holds both identities.
	_, me, _ := e.call(t, "GET /me", "", sess)
	oa, _ := me["official_account"].(map[string]any)
	if me["uid"] != person["uid"] || oa["openid"] != p.OAOpenID || oa["subscribed"] != true {
		t.Fatalf("me = %v", me)
	}
	if got, _ := e.store.Lookup(context.Background(), identity.UnionKey(p.UnionID)); got.UID != person["uid"] {
		t.Errorf("unionid resolves to %s, want %v (follower was %s)", got.UID, person["uid"], follower.Person.UID)
	}
}

func TestProfileRejects(t *testing.T) {
	e := newEnv(t)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	_, out := e.login(t, p.ID, "")
	sess := out["session"].(string)
	staleData, staleIV, _ := e.sb.OpenData(p.ID)
	_, out = e.login(t, p.ID, "") // a new login rotates the session key
	sess2 := out["session"].(string)
	other := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.login(t, other.ID, "")
	otherData, otherIV, _ := e.sb.OpenData(other.ID)
	js := func(d, iv string) string {
		b, _ := json.Marshal(map[string]string{"encrypted_data": d, "iv": iv})
		return string(b)
	}
	cases := []struct {
		name, body, bearer string
		status             int
		code               string
	}{
		{"no_session", js(staleData, staleIV), "", 401, "invalid_session"},
		{"forged_session", js(staleData, staleIV), sess[:len(sess)-4] + "AAAA", 401, "invalid_session"},
		{"missing_fields", `{"iv":"x"}`, sess2, 400, "invalid_request"},
		{"stale_session_key", js(staleData, staleIV), sess2, 400, "stale_session_key"},
		{"someone_elses_data", js(otherData, otherIV), sess2, 400, "stale_session_key"},
		{"garbage", js("bm90IGRhdGE=", staleIV), sess, 400, "stale_session_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.items(t)
			status, out, _ := e.call(t, "POST /mp/profile", tc.body, tc.bearer)
			if status != tc.status || out["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
			if after := e.items(t); after != before {
				t.Errorf("a failed profile wrote: %d items, then %d", before, after)
			}
		})
	}
}

func TestMeRejects(t *testing.T) {
	e := newEnv(t)
	for name, bearer := range map[string]string{"none": "", "garbage": "abc.def.ghi"} {
		t.Run(name, func(t *testing.T) {
			status, out, resp := e.call(t, "GET /me", "", bearer)
			if status != http.StatusUnauthorized || out["error"] != "invalid_session" || resp.Headers["WWW-Authenticate"] == "" {
				t.Fatalf("got %d %v", status, out)
			}
		})
	}
	status, out, _ := e.call(t, "GET /nope", "", "")
	if status != 404 || out["error"] != "not_found" {
		t.Fatalf("unknown route = %d %v", status, out)
	}
}

// TestLogsKeepSecrets runs every route and checks that no session key,
// session token, login code, app secret or encrypted payload reaches the
// logs.
func TestLogsKeepSecrets(t *testing.T) {
	e := newEnv(t)
	e.sb.SetRevealUnionID(false)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	code, _ := e.sb.WXLogin(p.ID)
	_, out, _ := e.call(t, "POST /mp/login", `{"code":"`+code+`"}`, "")
	sess := out["session"].(string)
	data, iv, _ := e.sb.OpenData(p.ID)
	e.call(t, "POST /mp/profile", `{"encrypted_data":"`+data+`","iv":"`+iv+`"}`, sess)
	e.call(t, "GET /me", "", sess)
	e.call(t, "POST /mp/login", `{"code":"`+code+`"}`, "") // used code: an error path
	stored, err := e.store.Session(context.Background(), sandbox.DevMiniProgram.AppID, p.MPOpenID)
	if err != nil || stored.SessionKey == "" {
		t.Fatalf("session key not stored: %v", err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"route":"POST /mp/login"`) {
		t.Fatalf("expected request logs, got %s", logs)
	}
	for name, secret := range map[string]string{
		"session key": stored.SessionKey, "session": sess, "code": code,
		"app secret": sandbox.DevMiniProgram.Secret, "encrypted data": data[:24], "nickname": p.Nickname,
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
}
