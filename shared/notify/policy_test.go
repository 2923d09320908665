package notify

import (
	"testing"

	"gopkg.in/yaml.v3"

	"wxbridge/infra/devkit/iam"
)

// readPolicy is template.yaml's SendLedgerReadPolicy as the local IAM
// evaluation takes it, with the table's ARN for !GetAtt Table.Arn.
func readPolicy(t *testing.T, tableARN string) iam.Policy {
	t.Helper()
	tpl, err := iam.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	def, ok := tpl.Resources["SendLedgerReadPolicy"]
	if !ok || def.Type != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("template.yaml has no managed policy SendLedgerReadPolicy (%+v)", def)
	}
	var props struct {
		PolicyDocument struct {
			Statement []struct {
				Sid       string                          `yaml:"Sid"`
				Effect    string                          `yaml:"Effect"`
				Action    yaml.Node                       `yaml:"Action"`
				Resource  yaml.Node                       `yaml:"Resource"`
				Condition map[string]map[string]yaml.Node `yaml:"Condition"`
			} `yaml:"Statement"`
		} `yaml:"PolicyDocument"`
	}
	if err := def.Properties.Decode(&props); err != nil {
		t.Fatal(err)
	}
	// strs reads a string or a list of strings; the only intrinsic the
	// policy may use is !GetAtt Table.Arn.
	strs := func(n yaml.Node) []string {
		switch {
		case n.Tag == "!GetAtt" && n.Value == "Table.Arn":
			return []string{tableARN}
		case n.Kind == yaml.ScalarNode && n.Tag == "!!str":
			return []string{n.Value}
		case n.Kind == yaml.SequenceNode:
			var out []string
			for _, c := range n.Content {
				if c.Tag != "!!str" {
					t.Fatalf("line %d: %s in a list the test does not resolve", c.Line, c.Tag)
				}
				out = append(out, c.Value)
			}
			return out
		}
		t.Fatalf("line %d: %s %q the test does not resolve", n.Line, n.Tag, n.Value)
		return nil
	}
	p := iam.Policy{Name: "SendLedgerReadPolicy"}
	for _, s := range props.PolicyDocument.Statement {
		st := iam.Statement{Sid: s.Sid, Effect: s.Effect, Action: strs(s.Action), Resource: strs(s.Resource)}
		for op, keys := range s.Condition {
			for key, values := range keys {
				st.Conditions = append(st.Conditions, iam.Condition{Operator: op, Key: key, Values: strs(values)})
			}
		}
		p.Statements = append(p.Statements, st)
	}
	return p
}

// TestSendLedgerReadPolicy: the managed policy a business attaches reads a
// job's ledger entry by its key and nothing else of the table.
func TestSendLedgerReadPolicy(t *testing.T) {
	const table = "arn:aws:dynamodb:us-east-1:123456789012:table/wxbridge"
	policy := readPolicy(t, table)
	keys := func(pks ...string) map[string][]string { return map[string][]string{"dynamodb:leadingkeys": pks} }
	for _, c := range []struct {
		name    string
		req     iam.Request
		allowed bool
	}{
		{"get_a_ledger_entry", iam.Request{Action: "dynamodb:GetItem", Resource: table, Context: keys("SEND#order-8812-shipped")}, true},
		{"get_a_person", iam.Request{Action: "dynamodb:GetItem", Resource: table, Context: keys("P#01JD3K8Q7W5ZC0M4T2N6B9XH1R")}, false},
		{"get_an_identity_marker", iam.Request{Action: "dynamodb:GetItem", Resource: table, Context: keys("EXT#8812")}, false},
		{"get_without_a_key", iam.Request{Action: "dynamodb:GetItem", Resource: table, Context: keys()}, false},
		{"get_through_an_index", iam.Request{Action: "dynamodb:GetItem", Resource: table + "/index/MsgKey", Context: keys("SEND#x")}, false},
		{"query_ledger_entries", iam.Request{Action: "dynamodb:Query", Resource: table, Context: keys("SEND#x")}, false},
		{"scan", iam.Request{Action: "dynamodb:Scan", Resource: table, Context: keys()}, false},
		{"write_a_ledger_entry", iam.Request{Action: "dynamodb:UpdateItem", Resource: table, Context: keys("SEND#x")}, false},
		{"batch_get_entries", iam.Request{Action: "dynamodb:BatchGetItem", Resource: table, Context: keys("SEND#x")}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := iam.Evaluate([]iam.Policy{policy}, "arn:aws:iam::123456789012:role/business", "123456789012", c.req)
			if d.Err != nil {
				t.Fatal(d.Err)
			}
			if d.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", d.Allowed, c.allowed, d)
			}
		})
	}
}
