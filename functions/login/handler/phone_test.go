package handler

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/session"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

// foreignWatermark is the WeChat client with getuserphonenumber's answer
// vouched for in another mini program. The sandbox cannot answer so: it
// refuses another app's code (40029) before it would stamp one, so only a
// wrapper exercises the watermark check.
type foreignWatermark struct{ WeChat }

func (f foreignWatermark) PhoneNumber(ctx context.Context, appid, code string) (wechat.Phone, error) {
	p, err := f.WeChat.PhoneNumber(ctx, appid, code)
	p.WatermarkAppID = mpB.AppID
	return p, err
}

// TestPhone: a getPhoneNumber code becomes the person's verified number,
// shown masked only; the number moves to whoever verified it last; a code
// that is used, of another mini program, or that WeChat or DynamoDB fails
// on stores nothing.
func TestPhone(t *testing.T) {
	e := newMultiEnv(t)
	ctx := context.Background()
	alice, bob, carol := e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{})
	const number = "+8613912345678"
	if err := e.sb.SetPhone(alice.ID, number); err != nil {
		t.Fatal(err)
	}
	sessAlice := e.loginIn(t, alice.ID, mpA.AppID)["session"].(string)
	sessBob := e.loginIn(t, bob.ID, mpB.AppID)["session"].(string)
	sessCarol := e.loginIn(t, carol.ID, mpA.AppID)["session"].(string)
	phone := func(route, appid, code, bearer string) (int, map[string]any, map[string]string) {
		t.Helper()
		status, out, resp := e.callIn(t, route, appid, `{"code":"`+code+`"}`, bearer)
		if strings.Contains(resp.Body, number[1:]) {
			t.Errorf("the answer carries the number: %s", resp.Body)
		}
		return status, out, resp.Headers
	}
	me := func(bearer string) map[string]any {
		t.Helper()
		status, out, resp := e.call(t, "GET /me", "", bearer)
		if status != 200 || strings.Contains(resp.Body, number[1:]) {
			t.Fatalf("GET /me = %d %s", status, resp.Body)
		}
		p, _ := out["phone"].(map[string]any)
		return p
	}
	holder := func() string {
		t.Helper()
		p, err := e.store.ByPhone(ctx, number)
		if errors.Is(err, identity.ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return p.UID
	}
	expect := func(name string, status int, out map[string]any, wantStatus int, wantCode string) {
		t.Helper()
		if status != wantStatus || (wantCode != "" && out["error"] != wantCode) {
			t.Fatalf("%s = %d %v, want %d %s", name, status, out, wantStatus, wantCode)
		}
	}

	code, _ := e.sb.PhoneCode(alice.ID, mpA.AppID)
	status, out, _ := phone("POST /mp/phone", "", code, sessAlice)
	expect("verify", status, out, 200, "")
	got := out["phone"].(map[string]any)
	if got["masked"] != "+****5678" || got["verified_at"] == nil {
		t.Fatalf("phone = %v", got)
	}
	if p := me(sessAlice); p["masked"] != "+****5678" || p["verified_at"] != got["verified_at"] {
		t.Fatalf("alice's /me phone = %v, want %v", p, got)
	}
	if p, err := e.store.Lookup(ctx, identity.MPKey(mpA.AppID, alice.MPOpenID)); err != nil || holder() != p.UID {
		t.Fatalf("the number resolves to %s, want alice (%+v, %v)", holder(), p, err)
	}

	// The answer was lost on its way to the client, which retries with the
	// same code: WeChat has spent it; the number is stored all the same,
	// and GET /me shows it.
	status, out, _ = phone("POST /mp/phone", "", code, sessAlice)
	expect("the same code again", status, out, 400, "invalid_code")
	if me(sessAlice) == nil {
		t.Fatal("alice lost her number to a retried code")
	}

	// Bob gets the number (a carrier reassigned it) and verifies it in the
	// other mini program: it is his, and Alice has none.
	if err := e.sb.SetPhone(bob.ID, number); err != nil {
		t.Fatal(err)
	}
	code, _ = e.sb.PhoneCode(bob.ID, mpB.AppID)
	status, out, _ = phone("POST /mp/{appid}/phone", mpB.AppID, code, sessBob)
	expect("bob verifies", status, out, 200, "")
	if p := me(sessAlice); p != nil {
		t.Fatalf("alice still shows %v after bob verified the number", p)
	}
	if p := me(sessBob); p["masked"] != "+****5678" {
		t.Fatalf("bob's /me phone = %v", p)
	}
	bobUID := holder()
	if sessionOf(t, sessBob).UID != bobUID {
		t.Fatalf("the number resolves to %s, want bob", bobUID)
	}

	// Carol's failures store nothing, whatever they are.
	if err := e.sb.SetPhone(carol.ID, number); err != nil {
		t.Fatal(err)
	}
	fails := []struct {
		name   string
		code   func() string
		setup  func(t *testing.T) func()
		status int
		error  string
	}{
		{name: "code_of_another_mini_program", code: func() string { c, _ := e.sb.PhoneCode(carol.ID, mpB.AppID); return c }, status: 400, error: "invalid_code"},
		{name: "number_vouched_for_in_another_mini_program", setup: func(*testing.T) func() {
			real := e.h.wechat
			e.h.wechat = foreignWatermark{real}
			return func() { e.h.wechat = real }
		}, status: 400, error: "invalid_code"},
		{name: "wechat_busy", setup: wechatFault(e, sandbox.Fault{Path: "/wxa/business/getuserphonenumber", ErrCode: -1, Count: 1}), status: 503, error: "wechat_unavailable"},
		{name: "access_token_refused", setup: func(t *testing.T) func() {
			// Refused twice: the client asks the source for a fresher token,
			// which waits (briefly here) for a refresher that never comes.
			src := tokens.NewSource(tokens.Options{Secrets: e.te.TokenSecrets, Reader: e.te.As("LoginFunction").Secrets, Now: e.te.Now, Wait: 20 * time.Millisecond})
			real := e.h.wechat
			e.h.wechat = wechat.New(wechat.Options{APIBase: e.te.URL, Tokens: src})
			clear := wechatFault(e, sandbox.Fault{Path: "/wxa/business/getuserphonenumber", ErrCode: 40001, Count: 2})(t)
			return func() { clear(); e.h.wechat = real }
		}, status: 503, error: "wechat_unavailable"},
		{name: "wechat_answer_lost", setup: wechatFault(e, sandbox.Fault{Path: "/wxa/business/getuserphonenumber", LostAnswer: true, Count: 1}), status: 503, error: "wechat_unavailable"},
		{name: "dynamodb_throttled", setup: func(t *testing.T) func() {
			p, cfg := e.faults(t)
			cfg.Retryer = func() aws.Retryer {
				return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 5 * time.Millisecond })
			}
			if _, err := p.Add(awsfault.Rule{Service: awsfault.DynamoDB, Operation: "TransactWriteItems", Count: 3, Error: awsfault.ThrottlingException}); err != nil {
				t.Fatal(err)
			}
			real := e.h.people
			e.h.people = identity.NewStore(dynamodb.NewFromConfig(cfg), e.table)
			return func() { e.h.people = real }
		}, status: 503, error: "unavailable"},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			code := ""
			if tc.code != nil {
				code = tc.code()
			} else {
				code, _ = e.sb.PhoneCode(carol.ID, mpA.AppID)
			}
			if tc.setup != nil {
				defer tc.setup(t)()
			}
			status, out, headers := phone("POST /mp/phone", "", code, sessCarol)
			expect(tc.name, status, out, tc.status, tc.error)
			if status == 503 && headers["Retry-After"] == "" {
				t.Error("503 without Retry-After")
			}
			if p := me(sessCarol); p != nil {
				t.Errorf("carol has %v after a failed verification", p)
			}
			if holder() != bobUID {
				t.Error("the number left bob")
			}
		})
	}

	// A session whose person is unknown, or none, spends no code.
	keys, _ := session.NewKeys(sessionKey, "", 0)
	stranger, _, _ := keys.Issue(session.Session{AppID: mpA.AppID, OpenID: "oStrangerNeverLoggedIn0000000"})
	code, _ = e.sb.PhoneCode(carol.ID, mpA.AppID)
	calls := e.sb.Calls("/wxa/business/getuserphonenumber")
	for _, bearer := range []string{stranger, ""} {
		status, out, _ := phone("POST /mp/phone", "", code, bearer)
		expect("unknown session", status, out, 401, "invalid_session")
	}
	if e.sb.Calls("/wxa/business/getuserphonenumber") != calls {
		t.Error("a refused session spent the code")
	}

	logs := e.logs.String()
	if strings.Contains(logs, number[1:]) || strings.Contains(logs, code) {
		t.Error("the logs carry the number or a code")
	}
	counted := outcomes(logs, "PhoneVerifications")
	want := map[string]int{"verified": 2, "invalid_code": 2, "foreign_app": 1, "wechat_unavailable": 3, "failed": 1}
	if !maps.Equal(counted, want) {
		t.Errorf("PhoneVerifications by outcome = %v, want %v", counted, want)
	}
}

// outcomes sums the data points of metric in logs by their outcome.
func outcomes(logs, metric string) map[string]int {
	out := map[string]int{}
	for line := range strings.Lines(logs) {
		var point map[string]any
		if json.Unmarshal([]byte(line), &point) != nil {
			continue
		}
		if n, ok := point[metric].(float64); ok {
			o, _ := point["outcome"].(string)
			out[o] += int(n)
		}
	}
	return out
}

// wechatFault arms f in the sandbox for one subtest.
func wechatFault(e *env, f sandbox.Fault) func(*testing.T) func() {
	return func(t *testing.T) func() {
		if err := e.sb.InjectFault(f); err != nil {
			t.Fatal(err)
		}
		return e.sb.ClearFaults
	}
}

// TestPhoneAsDeployed: the function built from template.yaml's environment
// reads each mini program's access token (the default's secret, and the
// others' under the token-refresher's prefix) within its policy.
func TestPhoneAsDeployed(t *testing.T) {
	te := testenv.New(t,
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			c.MiniPrograms = []config.App{{AppID: mpB.AppID, Secret: mpB.Secret}}
		}))
	h, err := FromEnv(context.Background(), te.FunctionEnv("LoginFunction"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{h: h, te: te, sb: te.Sandbox, db: te.DB, table: te.Table, counter: te.Counter}
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	for _, mp := range []sandbox.App{mpA, mpB} {
		bearer := e.loginIn(t, p.ID, mp.AppID)["session"].(string)
		code, _ := e.sb.PhoneCode(p.ID, mp.AppID)
		if status, out, _ := e.callIn(t, mpRoute(mp.AppID, "phone"), mp.AppID, `{"code":"`+code+`"}`, bearer); status != 200 {
			t.Fatalf("%s: phone = %d %v", mp.AppID, status, out)
		}
	}
}
