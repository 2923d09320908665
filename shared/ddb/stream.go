package ddb

import (
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// FromStream is a stream record's image (NewImage, OldImage or Keys, as
// Lambda hands a DynamoDB stream event to a function) as an Item, so that
// the code that reads the table's items reads the stream's too. A nil or
// empty image (OldImage of an INSERT) is a nil Item.
func FromStream(image map[string]events.DynamoDBAttributeValue) (Item, error) {
	if len(image) == 0 {
		return nil, nil
	}
	it, err := fromImage(image)
	if err != nil {
		return nil, fmt.Errorf("ddb: stream image: %w", err)
	}
	return it, nil
}

func fromImage(image map[string]events.DynamoDBAttributeValue) (Item, error) {
	out := make(Item, len(image))
	for name, v := range image {
		av, err := fromStream(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = av
	}
	return out, nil
}

func fromStream(v events.DynamoDBAttributeValue) (types.AttributeValue, error) {
	switch v.DataType() {
	case events.DataTypeString:
		return &types.AttributeValueMemberS{Value: v.String()}, nil
	case events.DataTypeNumber:
		return &types.AttributeValueMemberN{Value: v.Number()}, nil
	case events.DataTypeBoolean:
		return &types.AttributeValueMemberBOOL{Value: v.Boolean()}, nil
	case events.DataTypeNull:
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case events.DataTypeBinary:
		b, err := binary(v)
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberB{Value: b}, nil
	case events.DataTypeStringSet:
		return &types.AttributeValueMemberSS{Value: v.StringSet()}, nil
	case events.DataTypeNumberSet:
		return &types.AttributeValueMemberNS{Value: v.NumberSet()}, nil
	case events.DataTypeBinarySet:
		return &types.AttributeValueMemberBS{Value: v.BinarySet()}, nil
	case events.DataTypeList:
		list := v.List()
		out := make([]types.AttributeValue, len(list))
		for i, e := range list {
			av, err := fromStream(e)
			if err != nil {
				return nil, fmt.Errorf("%d: %w", i, err)
			}
			out[i] = av
		}
		return &types.AttributeValueMemberL{Value: out}, nil
	case events.DataTypeMap:
		m, err := fromImage(v.Map())
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberM{Value: m}, nil
	}
	return nil, fmt.Errorf("unknown stream data type %d", v.DataType())
}

// binary reads a binary attribute. The zero DynamoDBAttributeValue (one no
// event decoded) also says it is binary, and its Binary panics.
func binary(v events.DynamoDBAttributeValue) (b []byte, err error) {
	defer func() {
		if recover() != nil {
			b, err = nil, fmt.Errorf("an empty attribute value")
		}
	}()
	return v.Binary(), nil
}
