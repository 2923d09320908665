package contract

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestFromAndPhoneSchemaAndGoAgree: "from" (an appid or a list of them)
// and to.phone, fed to the schema file and to Parse alike. Whether an
// appid is configured, and as which kind, is the worker's to check: the
// contract checks the shape.
func TestFromAndPhoneSchemaAndGoAgree(t *testing.T) {
	schema := compileSchema(t)
	const oa2, mp2, web = "wx5a0dbe0c0de00004", "wx5a0dbe0c0de00003", "wx5a0dbe0c0de00005"
	for _, tc := range []struct {
		name  string
		job   string
		field string // "" for a valid job
	}{
		{"from_one_appid", with(t, "from", oa2), ""},
		{"from_a_list", with(t, "from", []any{oa2, mp2}), ""},
		{"from_one_of_each_kind", with(t, "from", []any{oa2, mp2, web, "wx5a0dbe0c0de00007"}), ""},
		{"from_a_list_of_one", with(t, "from", []any{mp2}), ""},
		{"from_empty_string", with(t, "from", ""), "from"},
		{"from_empty_list", with(t, "from", []any{}), "from"},
		{"from_five_apps", with(t, "from", []any{oa2, mp2, web, "wx5a0dbe0c0de00007", "wx5a0dbe0c0de00008"}), "from"},
		{"from_repeated", with(t, "from", []any{oa2, oa2}), "from[1]"},
		{"from_not_an_appid", with(t, "from", "my-account"), "from"},
		{"from_appid_too_short", with(t, "from", "wx5a0dbe0c0de0000"), "from"},
		{"from_appid_upper_case", with(t, "from", "wx5A0DBE0C0DE00004"), "from"},
		{"from_bad_entry_in_a_list", with(t, "from", []any{oa2, "gh_0123456789ab"}), "from[1]"},
		{"from_a_number", with(t, "from", 4), "from"},
		{"from_an_object", with(t, "from", map[string]any{"official_account": oa2}), "from"},
		{"from_null", "", "from"}, // replaced below

		{"to_phone", with(t, "to", map[string]any{"phone": "+8613800000000"}), ""},
		{"to_phone_shortest", with(t, "to", map[string]any{"phone": "+123456"}), ""},
		{"to_phone_longest", with(t, "to", map[string]any{"phone": "+123456789012345"}), ""},
		{"to_phone_without_plus", with(t, "to", map[string]any{"phone": "13800000000"}), "to.phone"},
		{"to_phone_with_spaces", with(t, "to", map[string]any{"phone": "+86 138 0000 0000"}), "to.phone"},
		{"to_phone_too_long", with(t, "to", map[string]any{"phone": "+1234567890123456"}), "to.phone"},
		{"to_phone_too_short", with(t, "to", map[string]any{"phone": "+12345"}), "to.phone"},
		{"to_phone_and_uid", with(t, "to", map[string]any{"phone": "+8613800000000", "uid": "u"}), "to"},
		{"to_phone_not_a_string", with(t, "to", map[string]any{"phone": 8613800000000}), "to.phone"},
	} {
		if tc.name == "from_null" {
			// Refused by both, as "channels": null is.
			tc.job = strings.Replace(base, `"channels"`, `"from":null,"channels"`, 1)
		}
		t.Run(tc.name, func(t *testing.T) {
			var inst any
			if err := json.Unmarshal([]byte(tc.job), &inst); err != nil {
				t.Fatal(err)
			}
			schemaErr := schema.Validate(inst)
			_, goErr := Parse([]byte(tc.job))
			if (schemaErr == nil) != (tc.field == "") {
				t.Errorf("schema: %v, want valid=%v", schemaErr, tc.field == "")
			}
			if (goErr == nil) != (tc.field == "") {
				t.Errorf("Go: %v, want valid=%v", goErr, tc.field == "")
			}
			var fe *FieldError
			if tc.field != "" && goErr != nil && (!errors.As(goErr, &fe) || fe.Field != tc.field) {
				t.Errorf("Go names %v, want field %q", goErr, tc.field)
			}
			if goErr != nil && strings.HasPrefix(tc.name, "to_phone") && strings.Contains(goErr.Error(), "0000") {
				t.Errorf("the error carries the number: %v", goErr)
			}
		})
	}
}

// TestFromJSON: "from" reads an appid or a list, and writes one appid
// back as a string, more as a list.
func TestFromJSON(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		want    AppIDs
	}{
		{`"wx5a0dbe0c0de00004"`, `"wx5a0dbe0c0de00004"`, AppIDs{"wx5a0dbe0c0de00004"}},
		{`["wx5a0dbe0c0de00004","wx5a0dbe0c0de00003"]`, `["wx5a0dbe0c0de00004","wx5a0dbe0c0de00003"]`, AppIDs{"wx5a0dbe0c0de00004", "wx5a0dbe0c0de00003"}},
		{`["wx5a0dbe0c0de00004"]`, `"wx5a0dbe0c0de00004"`, AppIDs{"wx5a0dbe0c0de00004"}},
	} {
		var got AppIDs
		if err := json.Unmarshal([]byte(tc.in), &got); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: read %v", tc.in, got)
		}
		if b, _ := json.Marshal(got); string(b) != tc.out {
			t.Errorf("%s: writes back %s, want %s", tc.in, b, tc.out)
		}
	}
	// A job without from writes none: old jobs read and write as before.
	j, err := Parse([]byte(`{"id":"a","to":{"uid":"u"},"template":{"template_id":"t","data":{"k":"x"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(j); strings.Contains(string(b), "from") {
		t.Errorf("a job without from writes %s", b)
	}
}
