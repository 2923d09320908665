package notify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/ddb"
)

// TestAttackSendLedgerReadPolicy: a business role with template.yaml's
// SendLedgerReadPolicy attached (and nothing else) makes real calls
// through the IAM check (infra/devkit/iam) to a table that holds ledger
// entries, a person, an identity marker and another system's SEND-looking
// key: it reads a ledger entry by its key, and every other way into the
// table is denied — other items, batches, transactions that slip one other
// item in, queries, the index, scans, PartiQL, writes.
func TestAttackSendLedgerReadPolicy(t *testing.T) {
	const reader = "BusinessLedgerReader"
	e := testenv.New(t, testenv.Template(withReader(t, reader)))
	ctx := context.Background()
	l := NewLedger(e.DB, e.Table)
	if _, err := l.Claim(ctx, "order-8812", "uid-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, pk := range []string{"P#01JD3K8Q7W5ZC0M4T2N6B9XH1R", "EXT#8812", "send#order-8812", "SEND", "XSEND#order-8812"} {
		if _, err := e.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &e.Table, Item: ddb.Item{"pk": ddb.S(pk), "session_key": ddb.S("secret")}}); err != nil {
			t.Fatal(err)
		}
	}

	cfg := e.FunctionAWS(reader)
	cfg.RetryMaxAttempts = 1
	db := dynamodb.NewFromConfig(cfg)
	// The README's read: GetItem, consistent, by the SEND# key.
	if got, ok, err := NewLedger(db, e.Table).Get(ctx, "order-8812"); err != nil || !ok || got.Status != InProgress {
		t.Fatalf("the ledger read the policy is for: %+v %v %v", got, ok, err)
	}
	tbl := aws.String(e.Table)
	key := func(pk string) map[string]types.AttributeValue { return ddb.Key(pk) }
	get := func(pk string) func() error {
		return func() error {
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tbl, Key: key(pk)})
			return err
		}
	}
	for _, tc := range []struct {
		name    string
		call    func() error
		allowed bool
	}{
		{"get_an_entry_with_a_projection", func() error {
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tbl, Key: key("SEND#order-8812"), ProjectionExpression: aws.String("#s, reason"),
				ExpressionAttributeNames: map[string]string{"#s": "status"}})
			return err
		}, true},
		{"get_an_entry_never_written", get("SEND#nobody"), true},
		{"get_a_person", get("P#01JD3K8Q7W5ZC0M4T2N6B9XH1R"), false},
		{"get_an_identity_marker", get("EXT#8812"), false},
		{"get_send_in_lower_case", get("send#order-8812"), false},
		{"get_send_without_the_hash", get("SEND"), false},
		{"get_a_key_that_merely_contains_SEND#", get("XSEND#order-8812"), false},
		{"get_the_table_by_ARN_in_another_account", func() error {
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("arn:aws:dynamodb:us-east-1:999999999999:table/" + e.Table), Key: key("SEND#order-8812")})
			return err
		}, false},
		{"batch_get_entries", func() error {
			_, err := db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{e.Table: {Keys: []map[string]types.AttributeValue{key("SEND#order-8812")}}}})
			return err
		}, false},
		{"transaction_reading_an_entry", func() error {
			_, err := db.TransactGetItems(ctx, &dynamodb.TransactGetItemsInput{TransactItems: []types.TransactGetItem{{Get: &types.Get{TableName: tbl, Key: key("SEND#order-8812")}}}})
			return err
		}, true},
		{"transaction_slipping_a_person_in", func() error {
			_, err := db.TransactGetItems(ctx, &dynamodb.TransactGetItemsInput{TransactItems: []types.TransactGetItem{
				{Get: &types.Get{TableName: tbl, Key: key("SEND#order-8812")}},
				{Get: &types.Get{TableName: tbl, Key: key("P#01JD3K8Q7W5ZC0M4T2N6B9XH1R")}},
			}})
			return err
		}, false},
		{"query_the_entry's_partition", func() error {
			_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: tbl, KeyConditionExpression: aws.String("pk = :k"), ExpressionAttributeValues: ddb.Item{":k": ddb.S("SEND#order-8812")}})
			return err
		}, false},
		{"query_the_msgid_index", func() error {
			_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: tbl, IndexName: aws.String(MsgKeyIndex), KeyConditionExpression: aws.String("msg_key = :k"), ExpressionAttributeValues: ddb.Item{":k": ddb.S("wx#1")}})
			return err
		}, false},
		{"scan", func() error {
			_, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: tbl})
			return err
		}, false},
		{"partiql_select_of_an_entry", func() error {
			_, err := db.ExecuteStatement(ctx, &dynamodb.ExecuteStatementInput{Statement: aws.String(`SELECT * FROM "` + e.Table + `" WHERE pk = 'SEND#order-8812'`)})
			return err
		}, false},
		{"describe_the_table", func() error {
			_, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: tbl})
			return err
		}, false},
		{"rewrite_an_entry", func() error {
			_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: tbl, Key: key("SEND#order-8812"), UpdateExpression: aws.String("SET #s = :s"),
				ExpressionAttributeNames: map[string]string{"#s": "status"}, ExpressionAttributeValues: ddb.Item{":s": ddb.S("DELIVERED")}})
			return err
		}, false},
		{"delete_an_entry", func() error {
			_, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: tbl, Key: key("SEND#order-8812")})
			return err
		}, false},
		{"put_an_entry", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tbl, Item: ddb.Item{"pk": ddb.S("SEND#forged"), "status": ddb.S("DELIVERED")}})
			return err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var api smithy.APIError
			denied := errors.As(err, &api) && api.ErrorCode() == "AccessDeniedException"
			switch {
			case tc.allowed && err != nil:
				t.Fatalf("denied or failed: %v", err)
			case !tc.allowed && !denied:
				t.Fatalf("not denied: %v", err)
			}
		})
	}
	if got, _, _ := l.Get(ctx, "order-8812"); got.Status != InProgress {
		t.Fatalf("a denied write changed the entry: %+v", got)
	}
}

// withReader writes a copy of template.yaml with one more function, whose
// role has only SendLedgerReadPolicy: the business role the README tells
// to attach it to.
func withReader(t *testing.T, id string) string {
	t.Helper()
	wd, _ := os.Getwd()
	path, err := cfn.Find(wd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fn := "  " + id + ":\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: .\n      Policies:\n        - !Ref SendLedgerReadPolicy\n\n"
	text := string(b)
	i := strings.Index(text, "\nOutputs:\n")
	if i < 0 {
		t.Fatal("template.yaml has no Outputs section to put the reader before")
	}
	out := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(out, []byte(text[:i+1]+fn+text[i+1:]), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}
