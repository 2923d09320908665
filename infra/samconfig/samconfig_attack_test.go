package samconfig

import (
	"strings"
	"testing"
)

// TestAttackParseOverrides: --parameter-overrides strings as people write
// them, read as the SAM CLI reads them, or refused where the CLI would
// silently read something else.
func TestAttackParseOverrides(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Override
		err  string
	}{
		{in: `A="x y" B='p q' C=r\ s`, want: []Override{{"A", "x y"}, {"B", "p q"}, {"C", "r s"}}},
		{in: `A="say \"hi\""`, want: []Override{{"A", `say "hi"`}}},
		{in: `A=it's`, want: []Override{{"A", "it's"}}}, // a quote inside a bare value
		{in: `"A"=x`, want: []Override{{"A", "x"}}},     // the key's wrapping quotes go too
		{in: `A=""`, want: []Override{{"A", ""}}},
		{in: "  A=1   B=2  ", want: []Override{{"A", "1"}, {"B", "2"}}},
		{in: `ParameterKey=A,ParameterValue="x y" ParameterKey=B,ParameterValue=2`, want: []Override{{"A", "x y"}, {"B", "2"}}},
		{in: `ParameterKey=A,ParameterValue=1 B=2`, err: "the SAM CLI reads no Key=Value pair beside them"},
		{in: `A=x y`, err: `cannot read "y"`}, // SAM would drop y
		{in: `A=`, err: `cannot read "A="`},   // SAM would drop A
		{in: `A="unclosed`, err: `cannot read "A=\"unclosed"`},
		{in: `A=1 A=2`, err: "A is given twice"},
		{in: `A-B=1`, err: `cannot read "A-B=1"`},         // not a key SAM reads
		{in: `A=1,B=2`, want: []Override{{"A", "1,B=2"}}}, // one value, as SAM reads it
	} {
		got, err := ParseOverrides(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseOverrides(%s) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseOverrides(%s): %v", tc.in, err)
		case len(got) != len(tc.want):
			t.Errorf("ParseOverrides(%s) = %q, want %q", tc.in, got, tc.want)
		default:
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("ParseOverrides(%s) = %q, want %q", tc.in, got, tc.want)
				}
			}
		}
	}
}

// TestAttackParse: files the SAM CLI's TOML reader reads differently, or
// not at all, are refused with their line, not misread.
func TestAttackParse(t *testing.T) {
	ok := "version = 0.1\r\n[default.global.parameters]\r\nstack_name = \"s\" # c\r\nparameter_overrides = [\r\n  \"A=1\", # one\r\n  'B=\"two words\"',\r\n]\r\n"
	f, err := Parse([]byte(ok))
	if err != nil {
		t.Fatalf("CRLF file: %v", err)
	}
	if p, _, err := f.ParameterOverrides("default", "deploy"); err != nil || p["A"] != "1" || p["B"] != "two words" {
		t.Errorf("CRLF file: %v %v", p, err)
	}
	for name, src := range map[string]string{
		"multi_line_string":   "[a.b.parameters]\nx = \"\"\"\nA=1\n\"\"\"\n",
		"inline_table":        "[a.b.parameters]\nx = {A = 1}\n",
		"dotted_key":          "a.b.parameters.x = \"A=1\"\n",
		"quoted_key":          "[a.b.parameters]\n\"parameter_overrides\" = \"A=1\"\n",
		"table_twice":         "[a.b.parameters]\nx = 1\n[a.b.parameters]\ny = 2\n",
		"key_twice":           "[a.b.parameters]\nx = 1\nx = 2\n",
		"unquoted_string":     "[a.b.parameters]\nregion = cn-north-1\n",
		"array_of_numbers":    "[a.b.parameters]\nparameter_overrides = [1, 2]\n",
		"unclosed_array":      "[a.b.parameters]\nparameter_overrides = [\"A=1\"\n",
		"string_across_lines": "[a.b.parameters]\nx = \"A=1\nB=2\"\n",
		"not_UTF-8":           "[a.b.parameters]\nx = \"\xff\"\n",
		"array_of_tables":     "[[a.b.parameters]]\n",
	} {
		if _, err := Parse([]byte(src)); err == nil {
			t.Errorf("%s: parsed, want an error", name)
		}
	}
}
