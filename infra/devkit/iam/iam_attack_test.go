package iam_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	refresher "wxbridge/functions/token-refresher/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/iam"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/ddb"
	"wxbridge/shared/tokens"
)

// The attacks on the IAM check: calls a function's policy would not allow
// in AWS, dressed up to slip past the local check.

// TestAttackCalls: each call is one AWS would deny Fn (checkedTemplate),
// or one it would allow that a careless check denies; a denied call leaves
// moto untouched.
func TestAttackCalls(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	cfg := w.proxy.Config(awstest.Config(nil), "Fn")
	db, sm, q, lc := dynamodb.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg), sqs.NewFromConfig(cfg), awslambda.NewFromConfig(cfg)
	raw := dynamodb.NewFromConfig(awstest.Config(nil)) // unchecked: the test's own view of moto
	tbl := aws.String(w.table)
	secretName := w.secret[strings.Index(w.secret, ":secret:")+8 : len(w.secret)-7]
	other := func(partition, account string) string {
		return "arn:" + partition + ":secretsmanager:us-east-1:" + account + ":secret:" + secretName
	}
	exists := func(key string) bool {
		out, err := raw.GetItem(ctx, &dynamodb.GetItemInput{TableName: tbl, Key: pk(key), ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item != nil
	}
	for _, tc := range []struct {
		name    string
		call    func() error
		allowed bool
		// untouched is a key the call must not have written.
		untouched string
	}{
		{"leading_key_prefix_in_another_case", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tbl, Item: pk("p#case")})
			return err
		}, false, "p#case"},
		{"transaction_with_one_item_outside_writes_nothing", func() error {
			_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
				{Put: &ddbtypes.Put{TableName: tbl, Item: pk("P#tx")}},
				{Put: &ddbtypes.Put{TableName: tbl, Item: pk("SEND#tx")}},
			}})
			return err
		}, false, "P#tx"},
		{"batch_mixing_put_allowed_and_delete_outside", func() error {
			_, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{w.table: {
				{PutRequest: &ddbtypes.PutRequest{Item: pk("P#batch")}},
				{DeleteRequest: &ddbtypes.DeleteRequest{Key: pk("TOKENLEASE#1")}},
			}}})
			return err
		}, false, "P#batch"},
		{"table_by_ARN_in_the_China_partition", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("arn:aws-cn:dynamodb:us-east-1:123456789012:table/" + w.table), Item: pk("P#cn")})
			return err
		}, false, "P#cn"},
		{"table_by_ARN_in_another_account", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("arn:aws:dynamodb:us-east-1:999999999999:table/" + w.table), Item: pk("P#acct")})
			return err
		}, false, "P#acct"},
		{"scan_of_an_index_the_policy_names_only_for_Query", func() error {
			_, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: tbl, IndexName: aws.String("MsgKey")})
			return err
		}, false, ""},
		{"query_on_the_index_by_legacy_KeyConditions", func() error {
			_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: tbl, IndexName: aws.String("MsgKey"), KeyConditions: map[string]ddbtypes.Condition{
				"msg_key": {ComparisonOperator: ddbtypes.ComparisonOperatorEq, AttributeValueList: []ddbtypes.AttributeValue{ddb.S("wx#1")}}}})
			return err
		}, true, ""},
		{"query_on_an_index_the_table_does_not_have", func() error {
			_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: tbl, IndexName: aws.String("msgkey"), KeyConditionExpression: aws.String("msg_key = :k"),
				ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":k": ddb.S("wx#1")}})
			return err
		}, false, ""},
		{"secret_by_partial_ARN", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(other("aws", "123456789012"))})
			return err
		}, true, ""},
		{"secret_by_partial_ARN_in_another_account", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(other("aws", "999999999999"))})
			return err
		}, false, ""},
		{"secret_by_partial_ARN_in_the_China_partition", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(other("aws-cn", "123456789012"))})
			return err
		}, false, ""},
		{"secret_by_a_name_in_another_case", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(strings.ToUpper(secretName))})
			return err
		}, false, ""},
		{"queue_URL_of_another_account", func() error {
			u := w.queue[:strings.LastIndex(w.queue, "/")]
			u = u[:strings.LastIndex(u, "/")] + "/999999999999" + w.queue[strings.LastIndex(w.queue, "/"):]
			_, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(u), MessageBody: aws.String("{}")})
			return err
		}, false, ""},
		{"invoke_by_ARN_in_the_China_partition", func() error {
			_, err := lc.Invoke(ctx, &awslambda.InvokeInput{FunctionName: aws.String("arn:aws-cn:lambda:us-east-1:123456789012:function:Target"), Payload: []byte("{}")})
			return err
		}, false, ""},
		{"invoke_by_name_in_another_case", func() error {
			_, err := lc.Invoke(ctx, &awslambda.InvokeInput{FunctionName: aws.String("target"), Payload: []byte("{}")})
			return err
		}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			switch {
			case tc.allowed && err != nil:
				t.Fatalf("want allowed (as in AWS): %v", err)
			case !tc.allowed && !accessDenied(err) && !isCode(err, "AccessDenied"):
				t.Fatalf("error %v, want AccessDenied", err)
			}
			if tc.untouched != "" && exists(tc.untouched) {
				t.Errorf("%s was written though the call was denied", tc.untouched)
			}
		})
	}
}

func isCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}

// TestAttackAmbiguousJSON: JSON the SDK never writes, whose fields Go's
// decoder reads case-insensitively while DynamoDB (and moto) read them
// exactly. Were the check to decide on one reading and moto to act on the
// other, a denied key would be read.
func TestAttackAmbiguousJSON(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	raw := dynamodb.NewFromConfig(awstest.Config(nil))
	if _, err := raw.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(w.table), Item: map[string]ddbtypes.AttributeValue{
		"pk": ddb.S("SEND#secret"), "note": ddb.S("not Fn's to read")}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, body string }{
		{"Key_then_key", `{"TableName":"` + w.table + `","Key":{"pk":{"S":"SEND#secret"}},"key":{"pk":{"S":"P#1"}}}`},
		{"key_then_Key", `{"TableName":"` + w.table + `","key":{"pk":{"S":"P#1"}},"Key":{"pk":{"S":"SEND#secret"}}}`},
		{"TableName_twice_in_two_cases", `{"TableName":"` + w.table + `","tablename":"elsewhere","Key":{"pk":{"S":"SEND#secret"}}}`},
		{"attribute_name_case", `{"TableName":"` + w.table + `","Key":{"pk":{"S":"SEND#secret"},"PK":{"S":"P#1"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, w.proxy.URL(), strings.NewReader(tc.body))
			req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
			req.Header.Set("Content-Type", "application/x-amz-json-1.0")
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+iam.AccessKeyID("Fn")+"/20260301/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "not Fn's to read") || !strings.Contains(string(body), "AccessDeniedException") {
				t.Fatalf("HTTP %d %s; want AccessDeniedException and no item", resp.StatusCode, body)
			}
		})
	}
}

// TestAttackRemovedActionScheduled: the removed-action check for a
// scheduled function (the token-refresher), and the token secrets'
// resource policy, whose Deny no identity policy can outweigh.
func TestAttackRemovedActionScheduled(t *testing.T) {
	ctx := context.Background()
	t.Run("refresher_without_PutSecretValue_cannot_store_a_token", func(t *testing.T) {
		path := withChange(t, "TokenRefresherFunction", "                - secretsmanager:PutSecretValue\n", "")
		te := testenv.New(t, testenv.Tokens(), testenv.Template(path))
		h, err := refresher.FromEnv(ctx, te.FunctionEnv("TokenRefresherFunction"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Handle(ctx, tokens.RefreshRequest{}); err == nil {
			t.Fatal("Handle = nil error, want the apps' refreshes failed")
		}
		var puts int
		for _, d := range te.IAM().Denials() {
			if d.Function != "TokenRefresherFunction" || d.Action != "secretsmanager:PutSecretValue" {
				t.Errorf("denied %+v, want only PutSecretValue", d)
			}
			puts++
		}
		if puts == 0 {
			t.Fatal("no PutSecretValue denied")
		}
		for appid, arn := range te.TokenSecrets {
			if st, err := tokens.Load(ctx, te.Secrets, arn); err != nil || st.AccessToken != "" {
				t.Errorf("token secret of %s: %+v %v, want still without a token", appid, st, err)
			}
		}
	})
	t.Run("repository_template_refreshes", func(t *testing.T) {
		te := testenv.New(t, testenv.Tokens())
		h, err := refresher.FromEnv(ctx, te.FunctionEnv("TokenRefresherFunction"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Handle(ctx, tokens.RefreshRequest{}); err != nil {
			t.Fatalf("Handle: %v (denials %+v)", err, te.IAM().Denials())
		}
	})
	t.Run("another_function_granted_PutSecretValue_is_still_denied_by_the_secret", func(t *testing.T) {
		// SendWorkerFunction's identity policy gains PutSecretValue on the
		// token secrets; OnlyTheTokenRefresherWritesValues denies it.
		path := withChange(t, "SendWorkerFunction", "      Policies:\n", `      Policies:
        - Statement:
            - Sid: Overreach
              Effect: Allow
              Action: secretsmanager:PutSecretValue
              Resource: [!Ref MiniProgramTokenSecret, !Ref OfficialAccountTokenSecret]
`)
		te := testenv.New(t, testenv.Template(path))
		arn := te.TokenSecrets[te.Config.MiniProgram.AppID]
		sm := secretsmanager.NewFromConfig(te.FunctionAWS("SendWorkerFunction"))
		_, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(arn), SecretString: aws.String(`{"access_token":"forged"}`)})
		if !accessDenied(err) || !strings.Contains(err.Error(), "explicit deny in a resource-based policy") {
			t.Fatalf("PutSecretValue = %v, want AccessDeniedException from the resource policy", err)
		}
		if st, err := tokens.Load(ctx, te.Secrets, arn); err != nil || st.AccessToken == "forged" {
			t.Fatalf("token secret: %+v %v", st, err)
		}
	})
}
