package moto_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"wxbridge/infra/devkit/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func item(pk, v string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "v": &types.AttributeValueMemberS{Value: v}}
}

func get(t *testing.T, db *dynamodb.Client, table, pk string) string {
	t.Helper()
	out, err := db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &table, Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Item == nil {
		return "<none>"
	}
	return out.Item["v"].(*types.AttributeValueMemberS).Value
}

// TestFailedTransactionRollsBack: the launcher replaces moto's whole-table
// backup with a backup of the touched items; a transaction whose last
// condition fails must still leave every item as it was.
func TestFailedTransactionRollsBack(t *testing.T) {
	ctx := context.Background()
	table := awstest.Table(t)
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	for _, it := range []map[string]types.AttributeValue{item("a", "old-a"), item("c", "old-c")} {
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: &table, Item: item("a", "new-a")}},                                              // overwrites
		{Put: &types.Put{TableName: &table, Item: item("b", "new-b")}},                                              // creates
		{Delete: &types.Delete{TableName: &table, Key: map[string]types.AttributeValue{"pk": item("c", "")["pk"]}}}, // deletes
		{Put: &types.Put{TableName: &table, Item: item("a2", "x"), ConditionExpression: aws.String("attribute_exists(pk)")}},
	}})
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) {
		t.Fatalf("err = %v, want TransactionCanceledException", err)
	}
	for pk, want := range map[string]string{"a": "old-a", "b": "<none>", "c": "old-c", "a2": "<none>"} {
		if got := get(t, db, table, pk); got != want {
			t.Errorf("%s = %s after rollback, want %s", pk, got, want)
		}
	}
	// And a transaction that succeeds applies everything.
	_, err = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: &table, Item: item("a", "new-a")}},
		{Put: &types.Put{TableName: &table, Item: item("b", "new-b"), ConditionExpression: aws.String("attribute_not_exists(pk)")}},
	}})
	if err != nil || get(t, db, table, "a") != "new-a" || get(t, db, table, "b") != "new-b" {
		t.Fatalf("commit: %v, a=%s b=%s", err, get(t, db, table, "a"), get(t, db, table, "b"))
	}
}

// BenchmarkTransactWrite shows that a transaction's cost does not grow with
// the table (moto's own backup copied the whole table each time).
func BenchmarkTransactWrite(b *testing.B) {
	for _, size := range []int{100, 5000} {
		b.Run(fmt.Sprintf("table_%d_items", size), func(b *testing.B) {
			ctx := context.Background()
			table := awstest.Table(b)
			db := dynamodb.NewFromConfig(awstest.Config(nil))
			for i := 0; i < size; i += 25 {
				var reqs []types.WriteRequest
				for j := i; j < min(i+25, size); j++ {
					reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item(fmt.Sprint("fill", j), "x")}})
				}
				if _, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
					{Put: &types.Put{TableName: &table, Item: item(fmt.Sprint("t", i, "a"), "x"), ConditionExpression: aws.String("attribute_not_exists(pk)")}},
					{Put: &types.Put{TableName: &table, Item: item(fmt.Sprint("t", i, "b"), "x"), ConditionExpression: aws.String("attribute_not_exists(pk)")}},
				}})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
