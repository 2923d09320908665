package handler

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/reach"
	"wxbridge/shared/session"
)

// MP subscribe templates (43 characters, as the platform's).
const (
	mpOnce = "MPOneTimeTemplate0000000000000000000000000A"
	mpLong = "MPLongTermTemplate000000000000000000000000B"
	mpNo   = "MPRefusedTemplate0000000000000000000000000C"
	mpBan  = "MPBannedTemplate00000000000000000000000000D"
)

// consentEnv is the login function as template.yaml builds it (its AWS
// calls held to LoginFunction's policy), with mpLong configured long-term,
// and a logged-in person's session.
func consentEnv(t *testing.T) (e *env, bearer string, k reach.Key, rs *reach.Store) {
	t.Helper()
	te := testenv.New(t)
	h, err := FromEnv(context.Background(), te.FunctionEnv("LoginFunction", "WXB_LONG_TERM_TEMPLATES", mpLong))
	if err != nil {
		t.Fatal(err)
	}
	e = &env{h: h, te: te, sb: te.Sandbox, db: te.DB, table: te.Table, counter: te.Counter}
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	status, out := e.login(t, p.ID, "")
	if status != 200 {
		t.Fatalf("login: %d %v", status, out)
	}
	return e, out["session"].(string), reach.Key{AppID: sandbox.DevMiniProgram.AppID, OpenID: p.MPOpenID}, reach.New(te.DB, te.Table)
}

func consentsOf(t *testing.T, rs *reach.Store, k reach.Key) map[string]reach.Consent {
	t.Helper()
	m, err := rs.Get(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return m[k].Consents
}

// TestSubscribeConsentsAreRecorded: the object wx.requestSubscribeMessage
// resolves with, posted with the session, becomes the person's consents
// for their mini-program openid: accept adds one (or is long-term), reject
// declines the request, ban withdraws, filter records nothing.
func TestSubscribeConsentsAreRecorded(t *testing.T) {
	e, bearer, k, rs := consentEnv(t)
	body := `{"errMsg":"requestSubscribeMessage:ok","` + mpOnce + `":"accept","` + mpLong + `":"accept","` + mpNo + `":"reject","` + mpBan + `":"ban","filtered-one":"filter"}`
	status, out, _ := e.call(t, "POST /mp/subscribe-consents", body, bearer)
	if status != 200 || out["recorded"] != float64(4) {
		t.Fatalf("consents: %d %v", status, out)
	}
	cs := consentsOf(t, rs, k)
	if cs[mpOnce].Left != 1 || cs[mpOnce].LongTerm || !cs[mpLong].LongTerm || !cs[mpNo].Rejected || !cs[mpBan].Rejected || len(cs) != 4 {
		t.Fatalf("recorded %+v", cs)
	}
	// Accepting again adds one; declining later keeps both.
	at := time.Now()
	for _, answer := range []string{"accept", "reject"} {
		at = at.Add(time.Second)
		e.h.now = func() time.Time { return at }
		if status, out, _ := e.call(t, "POST /mp/subscribe-consents", `{"`+mpOnce+`":"`+answer+`"}`, bearer); status != 200 {
			t.Fatalf("%s: %d %v", answer, status, out)
		}
	}
	if c := consentsOf(t, rs, k)[mpOnce]; c.Left != 2 || c.Rejected {
		t.Fatalf("two acceptances and a declined request: %+v", c)
	}
}

func TestSubscribeConsentsRejects(t *testing.T) {
	e, bearer, k, rs := consentEnv(t)
	keys, err := session.NewKeys(e.te.Config.SigningKey, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	h5, _, err := keys.Issue(session.Session{AppID: sandbox.DevOfficialAccount.AppID, OpenID: "oH5", UID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	ok := `{"` + mpOnce + `":"accept"}`
	cases := []struct {
		name, body, bearer string
		status             int
		code               string
	}{
		{"no_session", ok, "", 401, "invalid_session"},
		{"forged_session", ok, bearer + "x", 401, "invalid_session"},
		{"an_h5_session_has_no_mini_program_openid", ok, h5, 401, "invalid_session"},
		{"malformed_json", `{"` + mpOnce + `":`, bearer, 400, "invalid_request"},
		{"not_an_object", `["accept"]`, bearer, 400, "invalid_request"},
		{"no_template", `{"errMsg":"requestSubscribeMessage:ok"}`, bearer, 400, "invalid_request"},
		{"a_failed_call", `{"errMsg":"requestSubscribeMessage:fail can only be invoked by user TAP gesture.","errCode":20004}`, bearer, 400, "invalid_request"},
		{"unknown_answer", `{"` + mpOnce + `":"maybe"}`, bearer, 400, "invalid_request"},
		{"answer_not_a_string", `{"` + mpOnce + `":1}`, bearer, 400, "invalid_request"},
		{"not_a_template_id", `{"<script>":"accept"}`, bearer, 400, "invalid_request"},
		{"too_many_templates", `{"` + strings.Join(manyTemplates(maxConsents+1), `":"accept","`) + `":"accept"}`, bearer, 400, "invalid_request"},
		{"oversized_body", `{"` + mpOnce + `":"` + strings.Repeat("x", MaxBody) + `"}`, bearer, 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out, _ := e.call(t, "POST /mp/subscribe-consents", tc.body, tc.bearer)
			if status != tc.status || out["error"] != tc.code {
				t.Fatalf("= %d %v, want %d %s", status, out, tc.status, tc.code)
			}
		})
	}
	if cs := consentsOf(t, rs, k); len(cs) != 0 {
		t.Fatalf("a refused request recorded %+v", cs)
	}
}

// TestSubscribeConsentsStoreOutage: DynamoDB failing past the SDK's
// retries is a 503 with Retry-After, nothing is recorded, and the same
// answer is recorded once the outage passes.
func TestSubscribeConsentsStoreOutage(t *testing.T) {
	e, bearer, k, rs := consentEnv(t)
	p, cfg := e.faults(t)
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 5 * time.Millisecond })
	}
	e.h.consents = reach.New(dynamodb.NewFromConfig(cfg), e.table)
	if _, err := p.Add(awsfault.Rule{Service: awsfault.DynamoDB, Error: awsfault.InternalServerError}); err != nil {
		t.Fatal(err)
	}
	body := `{"` + mpOnce + `":"accept"}`
	status, out, resp := e.call(t, "POST /mp/subscribe-consents", body, bearer)
	if status != http.StatusServiceUnavailable || out["error"] != "unavailable" || resp.Headers["Retry-After"] == "" {
		t.Fatalf("= %d %v %v", status, out, resp.Headers)
	}
	if cs := consentsOf(t, rs, k); len(cs) != 0 {
		t.Fatalf("recorded %+v", cs)
	}
	p.Clear()
	if status, out, _ := e.call(t, "POST /mp/subscribe-consents", body, bearer); status != 200 || consentsOf(t, rs, k)[mpOnce].Left != 1 {
		t.Fatalf("after the outage: %d %v", status, out)
	}
}

func manyTemplates(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Repeat(string(rune('A'+i%26)), 42) + string(rune('a'+i/26))
	}
	return out
}
