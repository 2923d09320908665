package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/ddb"
	"wxbridge/shared/observe"
)

// TestIAM: the devstack's functions make their calls as themselves,
// through the IAM check. A login and a follow cost no denial; a call a
// function's policy does not allow (login deleting an item, oauth-callback
// invoking the refresher) fails as in AWS, once, and is logged; the refresher's
// callers invoke it through the same check.
func TestIAM(t *testing.T) {
	logs := &observe.Capture{}
	s := testStack(t, Config{Logs: logs})
	ctx := context.Background()

	p := s.sb.CreatePerson(sandbox.PersonSpec{Nickname: "Iris"})
	code, err := s.sb.WXLogin(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if status, out := call(t, "POST", s.APIURL+"/mp/login", map[string]any{"code": code}, nil); status != 200 {
		t.Fatalf("login: %d %v", status, out)
	}
	if d, err := s.sb.Follow(ctx, p.ID, ""); err != nil || !d.Delivered {
		t.Fatalf("follow: %v %+v", err, d)
	}
	if d := s.iam.Denials(); len(d) != 0 {
		t.Fatalf("denials in a login and a follow: %+v", d)
	}

	before := len(s.iam.Denials())
	_, err = dynamodb.NewFromConfig(s.functionAWS("LoginFunction")).DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(s.res.refs["Table"]), Key: ddb.Key("P#nobody"),
	})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" {
		t.Fatalf("login's DeleteItem: %v, want AccessDeniedException", err)
	}
	if d := s.iam.Denials(); len(d) != before+1 || d[before].Action != "dynamodb:DeleteItem" {
		t.Fatalf("denials %+v, want login's DeleteItem once (not retried)", d[before:])
	}
	if !strings.Contains(logs.String(), "IAM denied") {
		t.Error("the denial is not in the devstack's log")
	}

	refresher := &awslambda.InvokeInput{FunctionName: aws.String("TokenRefresherFunction"), InvocationType: lambdatypes.InvocationTypeDryRun}
	_, err = s.functionLambda("OAuthCallbackFunction").Invoke(ctx, refresher)
	var resp *awshttp.ResponseError
	if !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" || !errors.As(err, &resp) || resp.HTTPStatusCode() != 403 {
		t.Fatalf("oauth-callback invoking the refresher: %v, want 403 AccessDeniedException", err)
	}
	if out, err := s.functionLambda("SendWorkerFunction").Invoke(ctx, refresher); err != nil || out.StatusCode != 204 {
		t.Fatalf("send-worker invoking the refresher: %v %+v, want 204", err, out)
	}
}
