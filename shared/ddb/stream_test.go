package ddb

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// A stream record's NewImage as Lambda sends it (JSON, every DynamoDB
// type, nested) becomes the Item GetItem would return.
func TestFromStream(t *testing.T) {
	const record = `{"eventName":"MODIFY","dynamodb":{"SequenceNumber":"1","NewImage":{
		"pk":{"S":"SEND#job-1"},"attempts":{"N":"2"},"final":{"BOOL":true},"gone":{"NULL":true},
		"blob":{"B":"aGVsbG8="},"tags":{"SS":["a","b"]},"nums":{"NS":["1","2.5"]},"blobs":{"BS":["aGk="]},
		"tried":{"L":[{"M":{"channel":{"S":"template"},"errcode":{"N":"43004"}}},{"S":"x"}]},
		"to":{"M":{"external_id":{"S":"8812"},"empty":{"M":{}}}}}}}`
	var rec events.DynamoDBEventRecord
	if err := json.Unmarshal([]byte(record), &rec); err != nil {
		t.Fatal(err)
	}
	got, err := FromStream(rec.Change.NewImage)
	if err != nil {
		t.Fatal(err)
	}
	want := Item{
		"pk":       S("SEND#job-1"),
		"attempts": &types.AttributeValueMemberN{Value: "2"},
		"final":    Bool(true),
		"gone":     &types.AttributeValueMemberNULL{Value: true},
		"blob":     &types.AttributeValueMemberB{Value: []byte("hello")},
		"tags":     &types.AttributeValueMemberSS{Value: []string{"a", "b"}},
		"nums":     &types.AttributeValueMemberNS{Value: []string{"1", "2.5"}},
		"blobs":    &types.AttributeValueMemberBS{Value: [][]byte{[]byte("hi")}},
		"tried": &types.AttributeValueMemberL{Value: []types.AttributeValue{
			&types.AttributeValueMemberM{Value: Item{"channel": S("template"), "errcode": &types.AttributeValueMemberN{Value: "43004"}}},
			S("x"),
		}},
		"to": &types.AttributeValueMemberM{Value: Item{"external_id": S("8812"), "empty": &types.AttributeValueMemberM{Value: Item{}}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromStream:\n got %#v\nwant %#v", got, want)
	}
	if String(got, "pk") != "SEND#job-1" || Int(got, "attempts") != 2 {
		t.Fatalf("the package's readers do not read the converted item: %v", got)
	}
}

func TestFromStreamEmptyAndInvalid(t *testing.T) {
	if it, err := FromStream(nil); it != nil || err != nil {
		t.Fatalf("FromStream(nil) = %v, %v; want nil (an INSERT's OldImage)", it, err)
	}
	// A value no event decoded says it is binary and has no value: an
	// error, not a panic.
	if _, err := FromStream(map[string]events.DynamoDBAttributeValue{"x": {}}); err == nil {
		t.Fatal("want an error for an attribute value with no value")
	}
	nested := events.NewMapAttribute(map[string]events.DynamoDBAttributeValue{"inner": events.NewListAttribute([]events.DynamoDBAttributeValue{{}})})
	if _, err := FromStream(map[string]events.DynamoDBAttributeValue{"outer": nested}); err == nil || err.Error() != "ddb: stream image: outer: inner: 0: an empty attribute value" {
		t.Fatalf("error %v, want the path to the bad value", err)
	}
}
