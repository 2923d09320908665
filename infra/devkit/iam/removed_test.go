package iam_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	login "wxbridge/functions/login/handler"
	sendworker "wxbridge/functions/send-worker/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/iam"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
)

// withChange writes a copy of template.yaml in which function's resource
// has old replaced by new (once), and returns its path.
func withChange(t *testing.T, function, old, new string) string {
	t.Helper()
	wd, _ := os.Getwd()
	src, err := cfn.Find(wd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n  "+function+":\n")
	if start < 0 {
		t.Fatalf("template.yaml has no resource %s", function)
	}
	// The resource runs to the next one (two spaces of indent) or the next
	// section.
	end := len(text)
	if m := regexp.MustCompile(`\n(  )?[A-Za-z]`).FindStringIndex(text[start+len(function)+5:]); m != nil {
		end = start + len(function) + 5 + m[0]
	}
	block := text[start:end]
	if strings.Count(block, old) < 1 {
		t.Fatalf("%s has no %q", function, old)
	}
	p := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(p, []byte(text[:start]+strings.Replace(block, old, new, 1)+text[end:]), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func accessDenied(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "AccessDeniedException"
}

// TestRemovedActionFails: with a needed action taken out of a copy of
// template.yaml, the function's own call fails with AccessDeniedException,
// once (no retries), as it would on a deployed stack; with the repository's
// template the same function works.
func TestRemovedActionFails(t *testing.T) {
	ctx := context.Background()
	t.Run("login_without_GetSecretValue_cannot_read_its_configuration", func(t *testing.T) {
		// LoginFunction's only secretsmanager action, for the AppSecret.
		path := withChange(t, "LoginFunction", "Action: secretsmanager:GetSecretValue", "Action: secretsmanager:DescribeSecret")
		te := testenv.New(t, testenv.Tokens(), testenv.Template(path))
		_, err := login.FromEnv(ctx, te.FunctionEnv("LoginFunction"))
		if !accessDenied(err) {
			t.Fatalf("FromEnv = %v, want AccessDeniedException", err)
		}
		d := te.IAM().Denials()
		if len(d) != 1 || d[0].Function != "LoginFunction" || d[0].Action != "secretsmanager:GetSecretValue" || d[0].Resource != te.ConfigSecret {
			t.Fatalf("denials %+v, want one GetSecretValue of the configuration secret", d)
		}
		if _, err := login.FromEnv(ctx, testenv.New(t, testenv.Tokens()).FunctionEnv("LoginFunction")); err != nil {
			t.Fatalf("with template.yaml: %v", err)
		}
	})

	t.Run("send_worker_without_UpdateItem_cannot_claim_a_job", func(t *testing.T) {
		path := withChange(t, "SendWorkerFunction", "                - dynamodb:UpdateItem\n", "")
		te := testenv.New(t, testenv.Template(path))
		h, err := sendworker.FromEnv(ctx, te.FunctionEnv("SendWorkerFunction"))
		if err != nil {
			t.Fatal(err)
		}
		// A follower of the official account, as follow-event records one.
		fs, err := te.Sandbox.CreateFollowers(sandbox.FollowersSpec{Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		p := fs[0]
		follow := &identity.Follow{Subscribed: true, At: te.Now().Truncate(time.Second)}
		sighting := identity.Sighting{OA: &identity.OASighting{AppID: te.Config.OfficialAccount.AppID, OpenID: p.OAOpenID, Follow: follow}, UnionID: p.UnionID}
		if _, err := identity.NewStore(te.DB, te.Table).Link(ctx, sighting); err != nil {
			t.Fatal(err)
		}
		queue := te.Queue("SendQueue")
		job := notify.Job{ID: "order-1-shipped", To: notify.Recipient{UnionID: p.UnionID}, Channels: []notify.Channel{notify.Template},
			Template: &notify.TemplateMessage{TemplateID: "oaTemplate" + strings.Repeat("0", 33), Data: map[string]string{"thing1": "Blue kettle"}}}
		if _, err := notify.NewClient(te.SQS, queue).Enqueue(ctx, job); err != nil {
			t.Fatal(err)
		}
		resp, err := h.Handle(ctx, awstest.Receive(t, te.SQS, queue, 1))
		if err != nil || len(resp.BatchItemFailures) != 1 {
			t.Fatalf("Handle = %+v, %v; want the job back for a retry", resp, err)
		}
		var denied []iam.Denial
		for _, d := range te.IAM().Denials() {
			if d.Action == "dynamodb:UpdateItem" && d.Function == "SendWorkerFunction" {
				denied = append(denied, d)
			}
		}
		// The claim (an UpdateItem of the job's ledger item) is refused:
		// nothing is sent, and the job waits for a retry, logged with
		// AWS's error.
		if len(denied) != 1 || !strings.Contains(te.Logs.String(), "claim order-1-shipped") || !strings.Contains(te.Logs.String(), "AccessDeniedException") {
			t.Fatalf("denials %+v, want the worker's claim (UpdateItem) denied once and logged", te.IAM().Denials())
		}
		if in := inboxOf(te, p.ID); len(in) != 0 {
			t.Fatalf("inbox %+v, want nothing sent without a claim", in)
		}
	})
}

func inboxOf(te *testenv.Env, id string) []sandbox.InboxMessage {
	in, _ := te.Sandbox.Inbox(id)
	return in
}

// TestLoginGivesBindingTokensBack: a login whose binding is refused (the
// business account is already bound to someone else) gives its spent
// binding token back (binding.Uses.Unspend, a DeleteItem of BIND#…), so
// that the refused login leaves nothing written. The login function's own
// tests, whose store is the test's, cannot see whether template.yaml allows
// that delete; through the check it did not, until LoginFunction was given
// GiveBackBindingTokens.
func TestLoginGivesBindingTokensBack(t *testing.T) {
	ctx := context.Background()
	te := testenv.New(t, testenv.Tokens())
	h, err := login.FromEnv(ctx, te.FunctionEnv("LoginFunction"))
	if err != nil {
		t.Fatal(err)
	}
	signIn := func(who sandbox.Person, external string, valid time.Duration) int {
		t.Helper()
		code, err := te.Sandbox.WXLogin(who.ID)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := binding.Sign(te.Config.BindKey, external, te.Now().Add(valid))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]string{"code": code, "bind_token": tok})
		req := events.APIGatewayV2HTTPRequest{RouteKey: "POST /mp/login", RawPath: "/mp/login", Body: string(body)}
		req.RequestContext.HTTP.Method = "POST"
		resp, err := h.Handle(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if status := signIn(te.Sandbox.CreatePerson(sandbox.PersonSpec{}), "8812", 10*time.Minute); status != 200 {
		t.Fatalf("alice binds 8812: %d", status)
	}
	binds := func() int {
		out, err := te.DB.Scan(ctx, &dynamodb.ScanInput{TableName: &te.Table})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, it := range out.Items {
			if pk, ok := it["pk"].(*ddbtypes.AttributeValueMemberS); ok && strings.HasPrefix(pk.Value, "BIND#") {
				n++
			}
		}
		return n
	}
	before := binds()
	if status := signIn(te.Sandbox.CreatePerson(sandbox.PersonSpec{}), "8812", 20*time.Minute); status != 409 {
		t.Fatalf("bob binds 8812 too, with a token of his own: %d, want 409", status)
	}
	if d := te.IAM().Denials(); len(d) != 0 {
		t.Fatalf("denied: %+v", d)
	}
	if after := binds(); after != before {
		t.Fatalf("binding tokens spent: %d, then %d; want bob's given back", before, after)
	}
}
