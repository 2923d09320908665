package samconfig

import (
	"maps"
	"reflect"
	"strings"
	"testing"
)

const sample = `# comment
version = 0.1

[default.global.parameters]
stack_name = "wxbridge-dev" # trailing comment
parameter_overrides = [
  # what H5Origins is
  "H5Origins=<https://h5.example.com>",
  'PublicUrl=""',   # empty on purpose
  "Note=\"two words\"",
]

[default.deploy.parameters]
confirm_changeset = true
stack_name = 'wxbridge-deploy'

[prod.deploy.parameters]
parameter_overrides = "LogRetentionDays=90 H5Origins=https://h5.example.com,https://m.example.com Title=\"a b\""
region = "cn-north-1"
`

func TestParse(t *testing.T) {
	f, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Environments(), []string{"default", "prod"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Environments = %v, want %v", got, want)
	}
	t.Run("command_table_before_global", func(t *testing.T) {
		if s, _ := f.String("default", "deploy", "stack_name"); s != "wxbridge-deploy" {
			t.Errorf("deploy stack_name = %q", s)
		}
		if s, _ := f.String("default", "build", "stack_name"); s != "wxbridge-dev" {
			t.Errorf("build stack_name = %q (the global one)", s)
		}
		if v, _ := f.Value("default", "deploy", "confirm_changeset"); v != true {
			t.Errorf("confirm_changeset = %v", v)
		}
		if s, _ := f.String("default", "deploy", "region"); s != "" {
			t.Errorf("absent region = %q", s)
		}
		if _, err := f.String("default", "deploy", "confirm_changeset"); err == nil {
			t.Error("a bool read as a string: want an error")
		}
	})
	t.Run("overrides_as_a_list", func(t *testing.T) {
		got, ok, err := f.ParameterOverrides("default", "deploy")
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		want := map[string]string{"H5Origins": "<https://h5.example.com>", "PublicUrl": "", "Note": "two words"}
		if !maps.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("overrides_as_one_string", func(t *testing.T) {
		got, _, err := f.ParameterOverrides("prod", "deploy")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"LogRetentionDays": "90", "H5Origins": "https://h5.example.com,https://m.example.com", "Title": "a b"}
		if !maps.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
		if _, ok, _ := f.ParameterOverrides("prod", "build"); ok {
			t.Error("prod's overrides are deploy's only; build must not see them")
		}
	})
}

func TestParseRefuses(t *testing.T) {
	for name, src := range map[string]string{
		"unclosed_string":     "[a.deploy.parameters]\nx = \"abc\n",
		"unquoted_string":     "[a.deploy.parameters]\nx = abc\n",
		"duplicate_key":       "[a.deploy.parameters]\nx = 1\nx = 2\n",
		"duplicate_table":     "[a.deploy.parameters]\nx = 1\n[a.deploy.parameters]\ny = 2\n",
		"quoted_table_name":   "[\"a b\".deploy]\n",
		"array_of_tables":     "[[a]]\n",
		"inline_table":        "[a.deploy.parameters]\nx = {y = 1}\n",
		"array_of_numbers":    "[a.deploy.parameters]\nx = [1, 2]\n",
		"unclosed_array":      "[a.deploy.parameters]\nx = [\"a\",\n",
		"missing_comma":       "[a.deploy.parameters]\nx = [\"a\" \"b\"]\n",
		"junk_after_value":    "[a.deploy.parameters]\nx = \"a\" b\n",
		"multiline_string":    "[a.deploy.parameters]\nx = \"\"\"a\"\"\"\n",
		"unknown_escape":      "[a.deploy.parameters]\nx = \"a\\qb\"\n",
		"key_without_a_value": "[a.deploy.parameters]\nx\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(src))
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Errorf("error %q does not name the line", err)
			}
		})
	}
}

func TestParseStrings(t *testing.T) {
	f, err := Parse([]byte("[e.deploy.parameters]\nb = \"tab\\tquote\\\" \\u00e9\"\nl = 'C:\\path \"as is\"'\nn = 1_000\n"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{"b": "tab\tquote\" é", "l": `C:\path "as is"`, "n": "1_000"} {
		if v, _ := f.Value("e", "deploy", key); v != want {
			t.Errorf("%s = %#v, want %#v", key, v, want)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Override
	}{
		{`A=1 B=two`, []Override{{"A", "1"}, {"B", "two"}}},
		{`  A=1   B=2  `, []Override{{"A", "1"}, {"B", "2"}}},
		{`A="x y" B='p q'`, []Override{{"A", "x y"}, {"B", "p q"}}},
		{`A="" B=''`, []Override{{"A", ""}, {"B", ""}}},
		{`A="say \"hi\""`, []Override{{"A", `say "hi"`}}},
		{`A=x\ y`, []Override{{"A", "x y"}}},
		{`A=https://h5.example.com,https://m.example.com`, []Override{{"A", "https://h5.example.com,https://m.example.com"}}},
		{`A=<https://h5.example.com>`, []Override{{"A", "<https://h5.example.com>"}}},
		{`A=a=b`, []Override{{"A", "a=b"}}},
		{``, nil},
	} {
		got, err := ParseOverrides(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{
		`A`,            // no =
		`A="x y`,       // unclosed quote
		`A=x"y`,        // a bare value stops at a quote
		`=x`,           // no key
		`A-B=1`,        // the CLI's keys are letters and digits
		`A=1 A=2`,      // twice
		`A=1,B=2 C=x"`, // junk at the end
	} {
		if got, err := ParseOverrides(in); err == nil {
			t.Errorf("%s: got %v, want an error", in, got)
		}
	}
}
