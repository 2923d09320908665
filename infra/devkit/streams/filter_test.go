package streams

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	record := `{"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "SEND#job-1"}}, "NewImage": {"pk": {"S": "SEND#job-1"}, "status": {"S": "SENT"}, "attempts": {"N": "2"}, "tags": {"L": [{"S": "a"}, {"S": "b"}]}, "urgent": {"BOOL": true}, "none": {"NULL": true}}}, "size": 7}`
	var doc map[string]any
	if err := json.Unmarshal([]byte(record), &doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, pattern string
		want          bool
	}{
		{"exact", `{"eventName": ["MODIFY"]}`, true},
		{"exact, one of", `{"eventName": ["INSERT", "MODIFY"]}`, true},
		{"exact, none of", `{"eventName": ["INSERT", "REMOVE"]}`, false},
		{"exact is case sensitive", `{"eventName": ["modify"]}`, false},
		{"equals-ignore-case", `{"eventName": [{"equals-ignore-case": "modify"}]}`, true},
		{"nested prefix", `{"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "SEND#"}]}}}}`, true},
		{"nested prefix misses", `{"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "PERSON#"}]}}}}`, false},
		{"suffix", `{"dynamodb": {"Keys": {"pk": {"S": [{"suffix": "-1"}]}}}}`, true},
		{"every field must match", `{"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["FAILED"]}}}}`, false},
		{"anything-but a value", `{"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": "INPROGRESS"}]}}}}`, true},
		{"anything-but a list", `{"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["SENT", "FAILED"]}]}}}}`, false},
		{"anything-but a prefix", `{"dynamodb": {"NewImage": {"pk": {"S": [{"anything-but": {"prefix": "SEND#"}}]}}}}`, false},
		{"anything-but needs the field", `{"dynamodb": {"NewImage": {"missing": {"S": [{"anything-but": "x"}]}}}}`, false},
		{"exists", `{"dynamodb": {"NewImage": {"status": {"S": [{"exists": true}]}}}}`, true},
		{"exists false on a missing field", `{"dynamodb": {"OldImage": {"status": {"S": [{"exists": false}]}}}}`, true},
		{"exists false on a present field", `{"dynamodb": {"NewImage": {"status": {"S": [{"exists": false}]}}}}`, false},
		{"exists is for leaves", `{"dynamodb": [{"exists": true}]}`, false},
		{"a number", `{"size": [7]}`, true},
		{"a number is not its text", `{"size": ["7"]}`, false},
		{"a boolean", `{"dynamodb": {"NewImage": {"urgent": {"BOOL": [true]}}}}`, true},
		{"null", `{"dynamodb": {"NewImage": {"none": {"NULL": [true]}}}}`, true},
		{"missing field", `{"dynamodb": {"NewImage": {"missing": {"S": ["x"]}}}}`, false},
		{"an object where a value is asked", `{"dynamodb": ["x"]}`, false},
		{"a list of objects stands for each element", `{"dynamodb": {"NewImage": {"tags": {"L": {"S": ["b"]}}}}}`, true},
		{"a list of objects, no element matches", `{"dynamodb": {"NewImage": {"tags": {"L": {"S": ["c"]}}}}}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := compile(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.match(doc); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
	listDoc := map[string]any{"tags": []any{"a", "b"}}
	if p, _ := compile(`{"tags": ["b"]}`); !p.match(listDoc) {
		t.Error("a list value must match when one of its elements does")
	}
}

func TestPatternRefused(t *testing.T) {
	for name, pattern := range map[string]string{
		"not JSON":                `{"eventName": [`,
		"not an object":           `["INSERT"]`,
		"a bare value":            `{"eventName": "INSERT"}`,
		"an empty list":           `{"eventName": []}`,
		"numeric":                 `{"size": [{"numeric": [">", 1]}]}`,
		"wildcard":                `{"eventName": [{"wildcard": "MOD*"}]}`,
		"cidr":                    `{"ip": [{"cidr": "10.0.0.0/8"}]}`,
		"$or":                     `{"$or": [{"a": ["x"]}, {"b": ["y"]}]}`,
		"nested prefix matcher":   `{"a": [{"prefix": {"equals-ignore-case": "x"}}]}`,
		"two operators":           `{"a": [{"prefix": "x", "suffix": "y"}]}`,
		"anything-but of objects": `{"a": [{"anything-but": [{"prefix": "x"}]}]}`,
		"exists of a string":      `{"a": [{"exists": "yes"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := compile(pattern); !errors.Is(err, ErrPattern) {
				t.Errorf("compile = %v, want ErrPattern", err)
			}
		})
	}
}
