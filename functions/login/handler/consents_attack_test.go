package handler

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/reach"
	"wxbridge/shared/session"
)

// countWrites makes the handler record consents through a client whose
// requests are counted.
func (e *env) countWrites() *awstest.Counter {
	c := &awstest.Counter{}
	e.h.consents = reach.New(dynamodb.NewFromConfig(awstest.Config(c)), e.table)
	return c
}

// TestAttackSubscribeConsentsHostileRequests: POST /mp/subscribe-consents
// with sessions that must not pass and bodies the mini program never
// sends. Each is refused without one DynamoDB write, and nothing is
// recorded.
func TestAttackSubscribeConsentsHostileRequests(t *testing.T) {
	e, bearer, k, rs := consentEnv(t)
	writes := e.countWrites()
	expiring, err := session.NewKeys(e.te.Config.SigningKey, "", time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := expiring.Issue(session.Session{AppID: sandbox.DevMiniProgram.AppID, OpenID: k.OpenID, UID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := session.NewKeys("another deployment's signing key", "", 0)
	foreign, _, _ := otherKey.Issue(session.Session{AppID: sandbox.DevMiniProgram.AppID, OpenID: k.OpenID, UID: "u"})
	// A session of another person, re-signed with the payload swapped:
	// the signature no longer holds.
	parts := strings.Split(bearer, ".")
	swapped := parts[0] + "." + parts[1] + "x." + parts[2]

	thousand := `{"` + strings.Join(manyTemplates(1000), `":"accept","`) + `":"accept"}`
	ok := `{"` + mpOnce + `":"accept"}`
	cases := []struct {
		name, body, bearer string
		status             int
	}{
		{"expired_session", ok, expired, 401},
		{"session_signed_by_another_key", ok, foreign, 401},
		{"tampered_payload", ok, swapped, 401},
		{"none_algorithm", ok, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".", 401},
		{"a_thousand_templates", thousand, bearer, 413},
		{"thirty_templates", `{"` + strings.Join(manyTemplates(30), `":"accept","`) + `":"accept"}`, bearer, 400},
		{"answer_null", `{"` + mpOnce + `":null}`, bearer, 400},
		{"answer_object", `{"` + mpOnce + `":{"status":"accept"}}`, bearer, 400},
		{"answer_array", `{"` + mpOnce + `":["accept"]}`, bearer, 400},
		{"answer_true", `{"` + mpOnce + `":true}`, bearer, 400},
		{"answer_in_capitals", `{"` + mpOnce + `":"ACCEPT"}`, bearer, 400},
		{"errmsg_not_a_string", `{"errMsg":{"ok":true},"` + mpOnce + `":"accept"}`, bearer, 400},
		{"errmsg_ok_in_the_middle", `{"errMsg":"requestSubscribeMessage:ok but failed","` + mpOnce + `":"accept"}`, bearer, 400},
		{"template_id_too_long", `{"` + strings.Repeat("A", 129) + `":"accept"}`, bearer, 400},
		{"template_id_with_separators", `{"` + mpOnce + `:left":"accept"}`, bearer, 400},
		{"one_bad_among_good", `{"` + mpOnce + `":"accept","` + mpLong + `":"accept","` + mpNo + `":7}`, bearer, 400},
		{"top_level_string", `"accept"`, bearer, 400},
		{"empty_body", ``, bearer, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			writes.Counts()
			status, out, _ := e.call(t, "POST /mp/subscribe-consents", tc.body, tc.bearer)
			if status != tc.status {
				t.Fatalf("= %d %v, want %d", status, out, tc.status)
			}
			if c := writes.Counts(); c["UpdateItem"]+c["PutItem"]+c["BatchWriteItem"]+c["TransactWriteItems"] != 0 {
				t.Fatalf("a refused request wrote: %v", c)
			}
		})
	}
	if cs := consentsOf(t, rs, k); len(cs) != 0 {
		t.Fatalf("a refused request recorded %+v", cs)
	}
}

// TestAttackSubscribeConsentsDuplicateKeys: a JSON object naming one
// template twice is one answer (the last, as JSON decoders keep it), so
// one consent at most, in one write (the count the refusals above rely on).
func TestAttackSubscribeConsentsDuplicateKeys(t *testing.T) {
	e, bearer, k, rs := consentEnv(t)
	writes := e.countWrites()
	status, out, _ := e.call(t, "POST /mp/subscribe-consents", `{"`+mpOnce+`":"accept","`+mpOnce+`":"accept","`+mpOnce+`":"accept"}`, bearer)
	if status != 200 || out["recorded"] != float64(1) {
		t.Fatalf("= %d %v", status, out)
	}
	if c := writes.Counts(); c["UpdateItem"] != 1 {
		t.Fatalf("writes %v, want one UpdateItem", c)
	}
	if c := consentsOf(t, rs, k)[mpOnce]; c.Left != 1 {
		t.Fatalf("recorded %+v", c)
	}
}
