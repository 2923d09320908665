package backfill

import (
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"wxbridge/shared/ddb"
)

// update builds an update expression and its condition with every
// attribute name behind a placeholder: several of ours (status, total, last,
// ttl, errors) are DynamoDB reserved words.
type update struct {
	sets, adds, removes []string
	cond                string
	names               map[string]string
	vals                ddb.Item
}

func newUpdate() *update {
	return &update{names: map[string]string{}, vals: ddb.Item{}}
}

// name returns the placeholder of attribute a.
func (u *update) name(a string) string {
	p := "#" + a
	u.names[p] = a
	return p
}

// val returns a placeholder for v.
func (u *update) val(v types.AttributeValue) string {
	p := ":v" + strconv.Itoa(len(u.vals))
	u.vals[p] = v
	return p
}

func (u *update) set(a string, v types.AttributeValue) *update {
	u.sets = append(u.sets, u.name(a)+" = "+u.val(v))
	return u
}

func (u *update) add(a string, n int64) *update {
	u.adds = append(u.adds, u.name(a)+" "+u.val(ddb.N(n)))
	return u
}

func (u *update) remove(a string) *update {
	u.removes = append(u.removes, u.name(a))
	return u
}

// when sets the condition; %s in it are replaced by the placeholders of
// the given attribute names and values, in order.
func (u *update) when(cond string, args ...any) *update {
	for _, a := range args {
		var p string
		switch a := a.(type) {
		case string:
			p = u.name(a)
		case types.AttributeValue:
			p = u.val(a)
		}
		cond = strings.Replace(cond, "%s", p, 1)
	}
	u.cond = cond
	return u
}

func (u *update) expression() string {
	var parts []string
	if len(u.sets) > 0 {
		parts = append(parts, "SET "+strings.Join(u.sets, ", "))
	}
	if len(u.adds) > 0 {
		parts = append(parts, "ADD "+strings.Join(u.adds, ", "))
	}
	if len(u.removes) > 0 {
		parts = append(parts, "REMOVE "+strings.Join(u.removes, ", "))
	}
	return strings.Join(parts, " ")
}

// on returns the update of the item with partition key pk.
func (u *update) on(table, pk string) *types.Update {
	out := &types.Update{
		TableName: aws.String(table), Key: ddb.Key(pk),
		UpdateExpression: aws.String(u.expression()), ExpressionAttributeNames: u.names,
	}
	if len(u.vals) > 0 {
		out.ExpressionAttributeValues = u.vals
	}
	if u.cond != "" {
		out.ConditionExpression = aws.String(u.cond)
	}
	return out
}
