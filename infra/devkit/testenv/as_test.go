package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/ddb"
)

// errorsOf is a test whose Errorf is recorded rather than failing it: the
// errors As reports when the test ends.
type errorsOf struct {
	*testing.T
	mu   sync.Mutex
	errs []string
}

func (r *errorsOf) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func accessDenied(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "AccessDeniedException"
}

// TestAsHoldsTheFunctionToItsPolicy: the clients As gives are the
// function's (a key prefix or a secret outside its policy is denied, as in
// AWS; its DynamoDB requests are counted), the Env's own clients are not
// checked, and every denial of the function's calls fails the test when it
// ends, even one the code under test swallowed.
func TestAsHoldsTheFunctionToItsPolicy(t *testing.T) {
	rec := &errorsOf{}
	t.Run("follow_event", func(t *testing.T) {
		rec.T = t
		e := testenv.New(rec, testenv.Tokens(sandbox.DevOfficialAccount.AppID))
		fn := e.As("FollowEventFunction")
		ctx := context.Background()

		e.Counter.Counts()
		if _, err := fn.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: &e.Table, Key: ddb.Key("P#someone")}); err != nil {
			t.Fatalf("GetItem of a person: %v", err)
		}
		if n := e.Counter.Counts()["GetItem"]; n != 1 {
			t.Errorf("the function's GetItem counted %d times, want 1", n)
		}
		if _, err := fn.Tokens.Token(ctx, sandbox.DevOfficialAccount.AppID); err != nil {
			t.Errorf("the official account's token, read as follow-event: %v", err)
		}

		lease := &dynamodb.PutItemInput{TableName: &e.Table, Item: ddb.Key("TOKENLEASE#" + sandbox.DevOfficialAccount.AppID)}
		if _, err := fn.DB.PutItem(ctx, lease); !accessDenied(err) {
			t.Errorf("follow-event writing the refresher's lease: %v, want AccessDeniedException", err)
		}
		mpToken := &secretsmanager.GetSecretValueInput{SecretId: aws.String(e.TokenSecrets[sandbox.DevMiniProgram.AppID])}
		if _, err := fn.Secrets.GetSecretValue(ctx, mpToken); !accessDenied(err) {
			t.Errorf("follow-event reading the mini program's token: %v, want AccessDeniedException", err)
		}
		if _, err := e.DB.PutItem(ctx, lease); err != nil {
			t.Errorf("the test's own PutItem: %v", err)
		}
		if _, err := e.Secrets.GetSecretValue(ctx, mpToken); err != nil {
			t.Errorf("the test's own GetSecretValue: %v", err)
		}
		// A second As of the same function reports its denials once.
		e.As("FollowEventFunction")
	})
	if len(rec.errs) != 2 || !strings.Contains(rec.errs[0], "dynamodb PutItem") || !strings.Contains(rec.errs[1], "secretsmanager GetSecretValue") {
		t.Fatalf("reported when the test ended: %q, want the PutItem and the GetSecretValue denied", rec.errs)
	}
	for _, msg := range rec.errs {
		if !strings.Contains(msg, "FollowEventFunction") {
			t.Errorf("a denial that does not name the function: %q", msg)
		}
	}
}
