package main

import (
	"strings"
	"testing"
)

// TestAttackDeployCheck: samconfig.toml environments written the ways a
// person fills one in (or half fills it in), each refused naming exactly
// the parameters that would break the stack, or let through when SAM would
// deploy what the stack needs.
func TestAttackDeployCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		env    map[string]string
		refuse []string // the ✗ lines' beginnings; none: the check passes
	}{
		// Values with spaces, quoted as the SAM CLI reads them.
		{name: "double_quoted_value_with_spaces",
			body: `parameter_overrides = ["H5Origins=\"https://a.example.com, https://b.example.com\""]`},
		{name: "single_quoted_value_with_spaces_in_a_string_of_pairs",
			body: `parameter_overrides = "H5Origins='https://a.example.com, https://b.example.com' LogRetentionDays=14"`},
		{name: "escaped_spaces",
			body: `parameter_overrides = ['H5Origins=https://a.example.com,\ https://b.example.com']`},
		{name: "the_long_form_of_the_SAM_CLI",
			body: `parameter_overrides = "ParameterKey=H5Origins,ParameterValue=https://h5.example.com ParameterKey=LogRetentionDays,ParameterValue=14"`},
		{name: "the_long_form_with_a_placeholder",
			body: `parameter_overrides = "ParameterKey=H5Origins,ParameterValue=<https://h5.example.com>"`, refuse: []string{"H5Origins is still the placeholder"}},

		// Empty, in every spelling.
		{name: "empty_double_quotes_in_a_string", body: `parameter_overrides = 'H5Origins="" LogRetentionDays=14'`, refuse: []string{"H5Origins is empty"}},
		{name: "empty_single_quotes", body: `parameter_overrides = ["H5Origins=''"]`, refuse: []string{"H5Origins is empty"}},
		{name: "only_spaces_quoted", body: `parameter_overrides = ['H5Origins="   "']`, refuse: []string{"H5Origins is empty"}},
		{name: "nothing_after_the_equals_sign", body: `parameter_overrides = ["H5Origins="]`, refuse: []string{`cannot read "H5Origins="`}},
		{name: "given_in_another_case", body: `parameter_overrides = ["h5origins=https://h5.example.com"]`,
			refuse: []string{"H5Origins is not set", "h5origins is not a parameter of template.yaml (did you mean H5Origins?)"}},

		// Placeholders, half filled in.
		{name: "placeholder_quoted", body: `parameter_overrides = ['H5Origins="<https://h5.example.com>"']`, refuse: []string{"H5Origins is still the placeholder"}},
		{name: "placeholder_with_a_space_before_it", body: `parameter_overrides = ['H5Origins=" <https://h5.example.com>"']`, refuse: []string{"H5Origins is still the placeholder"}},
		{name: "two_placeholders_in_a_list", body: `parameter_overrides = ["H5Origins=<https://h5.example.com>,<https://m.example.com>"]`, refuse: []string{"H5Origins is still the placeholder"}},
		{name: "one_origin_filled_one_not", body: `parameter_overrides = ["H5Origins=https://h5.shop.cn,<https://m.example.com>"]`, refuse: []string{"H5Origins is still the placeholder"}},
		{name: "placeholder_with_a_path_after_it", body: `parameter_overrides = ["H5Origins=https://h5.shop.cn", "PublicUrl=<https://api.example.com>/wx"]`, refuse: []string{"PublicUrl is still the placeholder"}},
		{name: "placeholder_by_TOML_unicode_escapes", body: `parameter_overrides = ["H5Origins=\u003chttps://h5.example.com\u003e"]`, refuse: []string{"H5Origins is still the placeholder"}},

		// What the file itself may do.
		{name: "given_twice_in_one_list", body: `parameter_overrides = ["H5Origins=https://a.example.com", "H5Origins=<https://h5.example.com>"]`, refuse: []string{"H5Origins is given twice"}},
		{name: "china_region_with_spaces_and_public_url_only_spaces", body: `region = "cn-northwest-1"` + "\n" + `parameter_overrides = ["H5Origins=https://h5.shop.cn", 'PublicUrl=" "']`,
			refuse: []string{"PublicUrl is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := deploycheck(t, tc.body, tc.env)
			if len(tc.refuse) == 0 {
				if code != 0 {
					t.Fatalf("exit %d, want 0:\n%s", code, stderr)
				}
				return
			}
			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, stderr)
			}
			for _, want := range tc.refuse {
				if !strings.Contains(stderr, want) {
					t.Errorf("output does not say %q:\n%s", want, stderr)
				}
			}
			if n := strings.Count(stderr, "✗"); n > len(tc.refuse) {
				t.Errorf("%d ✗, want at most %d:\n%s", n, len(tc.refuse), stderr)
			}
		})
	}
}

// TestAttackDeployCheckPrintsWhatSamDeploys: the Architecture make deploy
// builds for is the one sam deploy is given, whichever form names it.
func TestAttackDeployCheckPrintsWhatSamDeploys(t *testing.T) {
	for body, want := range map[string]string{
		`parameter_overrides = "ParameterKey=H5Origins,ParameterValue=https://h5.shop.cn ParameterKey=Architecture,ParameterValue=x86_64"`: "x86_64\n",
		`parameter_overrides = ["H5Origins=https://h5.shop.cn", "Architecture='x86_64'"]`:                                                  "x86_64\n",
	} {
		code, stdout, stderr := deploycheck(t, body, nil, "-print", "Architecture")
		if code != 0 || stdout != want {
			t.Errorf("%s: exit %d, %q; want %q\n%s", body, code, stdout, want, stderr)
		}
	}
}

// TestAttackEnvironments: an environment the file does not configure, or
// configures only for sam build, is refused before anything runs.
func TestAttackEnvironments(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		code      int
		want      string
	}{
		{"unknown_environment", "staging", 2, `has no environment "staging" (it has: test)`},
		{"a_table_name_is_not_an_environment", "test.global", 2, `has no environment "test.global"`},
		{"environment_in_another_case", "TEST", 2, `has no environment "TEST"`},
		{"empty_environment_name", "", 2, `has no environment ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := deploycheck(t, `parameter_overrides = ["H5Origins=https://h5.shop.cn"]`, nil, "-env", tc.env)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d saying %q:\n%s", code, tc.code, tc.want, stderr)
			}
		})
	}
	t.Run("an_environment_only_sam_build_has", func(t *testing.T) {
		// [test.build.parameters] only: sam deploy gets no parameters.
		code, _, stderr := deploycheck(t, "stack_name = \"x\"\n[test.build.parameters]\nparameter_overrides = [\"H5Origins=https://h5.shop.cn\"]", nil)
		if code != 1 || !strings.Contains(stderr, "✗ H5Origins is not set") {
			t.Fatalf("exit %d:\n%s", code, stderr)
		}
	})
}
