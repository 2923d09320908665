package iam

import (
	"errors"
	"testing"
)

const (
	testRole  = "arn:aws:iam::123456789012:role/LoginFunctionRole"
	testTable = "arn:aws:dynamodb:us-east-1:123456789012:table/people"
)

// leading is a request with dynamodb:LeadingKeys keys (none: the key is
// absent, as in a Scan).
func leading(action, resource string, keys ...string) Request {
	if len(keys) == 0 {
		keys = nil
	}
	return Request{Action: action, Resource: resource, Context: map[string][]string{leadingKeys: keys}}
}

func TestEvaluate(t *testing.T) {
	identityStore := Statement{
		Sid: "IdentityStore", Effect: Allow,
		Action:     []string{"dynamodb:GetItem", "dynamodb:PutItem"},
		Resource:   []string{testTable},
		Conditions: []Condition{{Operator: "ForAllValues:StringLike", Key: "dynamodb:LeadingKeys", Values: []string{"P#*", "MP#*"}}},
	}
	id := func(stmts ...Statement) []Policy {
		return []Policy{{Name: "LoginFunction Policies[0]", Statements: stmts}}
	}
	for _, tc := range []struct {
		name     string
		policies []Policy
		req      Request
		allowed  bool
		explicit bool
		err      bool
	}{
		{"listed_action_on_its_resource_is_allowed",
			id(Statement{Effect: Allow, Action: []string{"secretsmanager:GetSecretValue"}, Resource: []string{"arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"}}),
			Request{Action: "secretsmanager:GetSecretValue", Resource: "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf", Context: map[string][]string{}}, true, false, false},
		{"action_not_listed_is_denied",
			id(identityStore), leading("dynamodb:UpdateItem", testTable, "P#1"), false, false, false},
		{"other_resource_is_denied",
			id(identityStore), leading("dynamodb:GetItem", testTable+"-other", "P#1"), false, false, false},
		{"action_names_are_case_insensitive",
			id(Statement{Effect: Allow, Action: []string{"DynamoDB:getitem"}, Resource: []string{"*"}}), leading("dynamodb:GetItem", testTable, "x"), true, false, false},
		{"explicit_deny_wins_over_an_allow",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:*"}, Resource: []string{"*"}},
				Statement{Sid: "NoDeletes", Effect: Deny, Action: []string{"dynamodb:DeleteItem"}, Resource: []string{"*"}}),
			leading("dynamodb:DeleteItem", testTable, "P#1"), false, true, false},
		{"wildcard_action",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:*Item"}, Resource: []string{testTable}}), leading("dynamodb:UpdateItem", testTable, "P#1"), true, false, false},
		{"wildcard_action_does_not_overreach",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Get*"}, Resource: []string{testTable}}), leading("dynamodb:PutItem", testTable, "P#1"), false, false, false},
		{"wildcard_resource_covers_an_index",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Query"}, Resource: []string{testTable + "/index/*"}}), leading("dynamodb:Query", testTable+"/index/MsgKey", "wx#1"), true, false, false},
		{"a_table_resource_does_not_cover_its_index",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Query"}, Resource: []string{testTable}}), leading("dynamodb:Query", testTable+"/index/MsgKey", "wx#1"), false, false, false},
		{"question_mark_is_one_character",
			id(Statement{Effect: Allow, Action: []string{"secretsmanager:GetSecretValue"}, Resource: []string{"arn:aws:secretsmanager:us-east-1:123456789012:secret:app-??????"}}),
			Request{Action: "secretsmanager:GetSecretValue", Resource: "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf", Context: map[string][]string{}}, true, false, false},
		{"not_action_allows_everything_else",
			id(Statement{Effect: Allow, NotAction: []string{"dynamodb:DeleteItem"}, Resource: []string{"*"}}), leading("dynamodb:PutItem", testTable, "P#1"), true, false, false},
		{"not_action_excludes_what_it_names",
			id(Statement{Effect: Allow, NotAction: []string{"dynamodb:DeleteItem"}, Resource: []string{"*"}}), leading("dynamodb:DeleteItem", testTable, "P#1"), false, false, false},
		{"not_resource",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:GetItem"}, NotResource: []string{testTable}}), leading("dynamodb:GetItem", testTable, "P#1"), false, false, false},
		{"leading_key_allowed",
			id(identityStore), leading("dynamodb:GetItem", testTable, "MP#wxapp#o123"), true, false, false},
		{"leading_key_denied",
			id(identityStore), leading("dynamodb:PutItem", testTable, "IDEM#push#1"), false, false, false},
		{"leading_keys_all_must_match",
			id(identityStore), leading("dynamodb:GetItem", testTable, "P#1", "SYNC#1"), false, false, false},
		{"absent_leading_keys_pass_ForAllValues_as_in_AWS",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Scan"}, Resource: []string{testTable}, Conditions: identityStore.Conditions}),
			leading("dynamodb:Scan", testTable), true, false, false},
		{"absent_key_fails_ForAnyValue",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Scan"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "ForAnyValue:StringLike", Key: "dynamodb:LeadingKeys", Values: []string{"P#*"}}}}),
			leading("dynamodb:Scan", testTable), false, false, false},
		{"absent_key_fails_a_plain_operator",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Scan"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "StringLike", Key: "dynamodb:LeadingKeys", Values: []string{"*"}}}}),
			leading("dynamodb:Scan", testTable), false, false, false},
		{"absent_key_passes_IfExists",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Scan"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "StringLikeIfExists", Key: "dynamodb:LeadingKeys", Values: []string{"P#*"}}}}),
			leading("dynamodb:Scan", testTable), true, false, false},
		{"absent_key_passes_a_negated_operator",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Scan"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "StringNotEquals", Key: "dynamodb:LeadingKeys", Values: []string{"P#1"}}}}),
			leading("dynamodb:Scan", testTable), true, false, false},
		{"null_true_on_an_absent_key",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:Scan"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "Null", Key: "dynamodb:LeadingKeys", Values: []string{"true"}}}}),
			leading("dynamodb:Scan", testTable), true, false, false},
		{"deny_with_a_condition_that_fails_does_not_deny",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:*"}, Resource: []string{"*"}},
				Statement{Effect: Deny, Action: []string{"dynamodb:*"}, Resource: []string{"*"},
					Conditions: []Condition{{Operator: "ForAnyValue:StringLike", Key: "dynamodb:LeadingKeys", Values: []string{"TOKEN*"}}}}),
			leading("dynamodb:GetItem", testTable, "P#1"), true, false, false},
		{"unknown_operator_is_an_error_never_an_allow",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:GetItem"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "ForAllValues:StringSortOf", Key: "dynamodb:LeadingKeys", Values: []string{"P#*"}}}}),
			leading("dynamodb:GetItem", testTable, "P#1"), false, false, true},
		{"unknown_set_qualifier_is_an_error",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:GetItem"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "ForSomeValues:StringLike", Key: "dynamodb:LeadingKeys", Values: []string{"P#*"}}}}),
			leading("dynamodb:GetItem", testTable, "P#1"), false, false, true},
		{"condition_key_the_call_does_not_supply_is_an_error",
			id(Statement{Effect: Allow, Action: []string{"dynamodb:GetItem"}, Resource: []string{testTable},
				Conditions: []Condition{{Operator: "ForAllValues:StringEquals", Key: "dynamodb:Attributes", Values: []string{"pk"}}}}),
			leading("dynamodb:GetItem", testTable, "P#1"), false, false, true},
		{"numeric",
			id(Statement{Effect: Allow, Action: []string{"sqs:SendMessage"}, Resource: []string{"*"},
				Conditions: []Condition{{Operator: "NumericLessThan", Key: "test:size", Values: []string{"10"}}}}),
			Request{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-1:123456789012:q", Context: map[string][]string{"test:size": {"9"}}}, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Evaluate(tc.policies, testRole, "123456789012", tc.req)
			if d.Allowed != tc.allowed || d.Explicit != tc.explicit || (d.Err != nil) != tc.err {
				t.Fatalf("Evaluate = %+v, want allowed %v, explicit %v, error %v", d, tc.allowed, tc.explicit, tc.err)
			}
			if tc.err && !errors.Is(d.Err, ErrUnsupported) {
				t.Fatalf("error %v, want ErrUnsupported", d.Err)
			}
		})
	}
}

// TestResourcePolicy: the token secrets' policy denies PutSecretValue to
// everyone but the refresher's role, whatever their identity policies say.
func TestResourcePolicy(t *testing.T) {
	secret := "arn:aws:secretsmanager:us-east-1:123456789012:secret:token-AbCdEf"
	refresher := "arn:aws:iam::123456789012:role/TokenRefresherFunctionRole"
	onlyRefresher := Policy{Name: "MiniProgramTokenSecretPolicy", Resource: true, Statements: []Statement{{
		Effect: Deny, Principal: []string{"*"}, Action: []string{"secretsmanager:PutSecretValue"}, Resource: []string{"*"},
		Conditions: []Condition{{Operator: "ArnNotEquals", Key: "aws:PrincipalArn", Values: []string{refresher}}},
	}}}
	broad := Policy{Name: "broad", Statements: []Statement{{Effect: Allow, Action: []string{"secretsmanager:*"}, Resource: []string{"*"}}}}
	put := func(principal string) Request {
		return Request{Action: "secretsmanager:PutSecretValue", Resource: secret, Context: map[string][]string{"aws:principalarn": {principal}}}
	}
	if d := Evaluate([]Policy{broad, onlyRefresher}, refresher, "123456789012", put(refresher)); !d.Allowed {
		t.Fatalf("refresher: %+v, want allowed", d)
	}
	other := "arn:aws:iam::123456789012:role/LoginFunctionRole"
	if d := Evaluate([]Policy{broad, onlyRefresher}, other, "123456789012", put(other)); d.Allowed || !d.Explicit || !d.ResourcePolicy {
		t.Fatalf("another role: %+v, want an explicit deny from the resource policy", d)
	}
	// A resource policy's Allow for the role grants without an identity
	// policy; one for a service principal (left out of Principal) does not.
	grant := Policy{Name: "grant", Resource: true, Statements: []Statement{{Effect: Allow, Principal: []string{other}, Action: []string{"secretsmanager:GetSecretValue"}}}}
	get := Request{Action: "secretsmanager:GetSecretValue", Resource: secret, Context: map[string][]string{}}
	if d := Evaluate([]Policy{grant}, other, "123456789012", get); !d.Allowed || !d.ResourcePolicy {
		t.Fatalf("resource policy naming the role: %+v, want allowed", d)
	}
	if d := Evaluate([]Policy{grant}, refresher, "123456789012", get); d.Allowed {
		t.Fatalf("resource policy naming another role: %+v, want denied", d)
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, value string
		want           bool
	}{
		{"*", "", true},
		{"P#*", "P#01H", true},
		{"P#*", "PX#1", false},
		{"*#push#*", "IDEM#push#abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"arn:aws:sqs:*:*:q", "arn:aws:sqs:us-east-1:1:q", true},
	} {
		if got := glob(tc.pattern, tc.value); got != tc.want {
			t.Errorf("glob(%q, %q) = %v", tc.pattern, tc.value, got)
		}
	}
}
