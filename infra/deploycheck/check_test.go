package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testTemplate has the shapes of template.yaml's parameters: required
// everywhere, required in aws-cn only, allowed values, a pattern, a number.
const testTemplate = `Metadata:
  DeployCheck:
    RequiredParameters:
      - Name: H5Origins
        Why: oauth-callback does not start without it
      - Name: PublicUrl
        Partitions: [aws-cn]
        Why: China needs an ICP-filed domain
Parameters:
  H5Origins:
    Type: String
    Default: ""
  PublicUrl:
    Type: String
    Default: ""
    AllowedPattern: '^(https?://[^/?#\s]+(/[^?#\s]*[^/?#\s])?)?$'
    ConstraintDescription: an http(s) base URL without a trailing slash
  Architecture:
    Type: String
    Default: arm64
    AllowedValues: [arm64, x86_64]
  LogRetentionDays:
    Type: Number
    Default: 30
    AllowedValues: [1, 14, 30]
  SendMaxConcurrency:
    Type: Number
    Default: 5
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub ${AWS::StackName}-q
`

// deploycheck runs the command on a samconfig.toml of one environment
// "test" whose global table holds body, against testTemplate.
func deploycheck(t *testing.T, body string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	cfg := "version = 0.1\n[test.global.parameters]\n" + body + "\n[test.deploy.parameters]\nresolve_s3 = true\n"
	for name, src := range map[string]string{"samconfig.toml": cfg, "template.yaml": testTemplate} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args = append([]string{"-env", "test", "-config", filepath.Join(dir, "samconfig.toml"), "-template", filepath.Join(dir, "template.yaml")}, args...)
	var out, errOut bytes.Buffer
	code = run(args, func(k string) string {
		if k == "AWS_CONFIG_FILE" && env[k] == "" {
			return filepath.Join(dir, "no-aws-config") // not this machine's
		}
		return env[k]
	}, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDeployCheck(t *testing.T) {
	const ready = `"H5Origins=https://h5.example.com", 'PublicUrl=""', "Architecture=x86_64", "LogRetentionDays=14"`
	for _, tc := range []struct {
		name   string
		body   string
		env    map[string]string
		refuse []string // each a parameter the output must name as refused; none: the check passes
	}{
		{name: "every_required_parameter_set", body: "parameter_overrides = [" + ready + "]"},
		{name: "one_string_of_pairs", body: `parameter_overrides = "H5Origins=https://h5.example.com PublicUrl=https://api.example.com/wx"`},
		{name: "required_still_a_placeholder", body: `parameter_overrides = ["H5Origins=<https://h5.example.com>"]`, refuse: []string{"H5Origins"}},
		{name: "required_empty", body: `parameter_overrides = ['H5Origins=""']`, refuse: []string{"H5Origins"}},
		{name: "required_left_out", body: `parameter_overrides = ["LogRetentionDays=14"]`, refuse: []string{"H5Origins"}},
		{name: "no_overrides_at_all", body: `stack_name = "x"`, refuse: []string{"H5Origins"}},
		{name: "optional_placeholder", body: `parameter_overrides = ["H5Origins=https://h5.example.com", "PublicUrl=<https://api.example.com>"]`, refuse: []string{"PublicUrl"}},
		{name: "china_needs_public_url", body: `region = "cn-north-1"` + "\nparameter_overrides = [" + ready + "]", refuse: []string{"PublicUrl"}},
		{name: "china_with_public_url", body: `region = "cn-northwest-1"` + "\nparameter_overrides = [\"H5Origins=https://h5.example.cn\", \"PublicUrl=https://api.example.cn/wx\"]"},
		{name: "china_region_from_AWS_REGION", body: "parameter_overrides = [" + ready + "]", env: map[string]string{"AWS_REGION": "cn-north-1"}, refuse: []string{"PublicUrl"}},
		{name: "china_region_from_AWS_DEFAULT_REGION", body: "parameter_overrides = [" + ready + "]", env: map[string]string{"AWS_DEFAULT_REGION": "cn-northwest-1"}, refuse: []string{"PublicUrl"}},
		{name: "pinned_region_wins_over_AWS_REGION", body: `region = "us-east-1"` + "\nparameter_overrides = [" + ready + "]", env: map[string]string{"AWS_REGION": "cn-north-1"}},
		{name: "unknown_parameter", body: `parameter_overrides = ["H5Origins=https://h5.example.com", "H5Origin=https://h5.example.com"]`, refuse: []string{"H5Origin is not a parameter of template.yaml (did you mean H5Origins?)"}},
		{name: "not_an_allowed_value", body: `parameter_overrides = ["H5Origins=https://h5.example.com", "Architecture=amd64"]`, refuse: []string{"Architecture"}},
		{name: "not_an_allowed_number", body: `parameter_overrides = ["H5Origins=https://h5.example.com", "LogRetentionDays=15"]`, refuse: []string{"LogRetentionDays"}},
		{name: "not_a_number", body: `parameter_overrides = ["H5Origins=https://h5.example.com", "SendMaxConcurrency=ten"]`, refuse: []string{"SendMaxConcurrency"}},
		{name: "not_the_pattern", body: `parameter_overrides = ["H5Origins=https://h5.example.com", "PublicUrl=https://api.example.com/wx/"]`, refuse: []string{"PublicUrl is \"https://api.example.com/wx/\", not an http(s) base URL"}},
		{name: "several_at_once", body: `region = "cn-north-1"` + "\n" + `parameter_overrides = ["H5Origins=<x>", "Architecture=arm"]`, refuse: []string{"H5Origins", "PublicUrl", "Architecture"}},
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
			if got := strings.Count(stderr, "✗"); got != len(tc.refuse) {
				t.Errorf("%d parameters refused, want %d:\n%s", got, len(tc.refuse), stderr)
			}
			for _, want := range tc.refuse {
				if !strings.Contains(stderr, "✗ "+want) {
					t.Errorf("output does not refuse %q:\n%s", want, stderr)
				}
			}
		})
	}
}

func TestDeployCheckSaysWhy(t *testing.T) {
	_, _, stderr := deploycheck(t, `region = "cn-north-1"`+"\n"+`parameter_overrides = ["H5Origins=<https://h5.example.cn>", 'PublicUrl=""']`, nil)
	for _, want := range []string{
		`✗ H5Origins is still the placeholder "<https://h5.example.cn>": oauth-callback does not start without it`,
		"✗ PublicUrl is empty: China needs an ICP-filed domain",
		"region cn-north-1, partition aws-cn",
		"under [test]",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("output lacks %q:\n%s", want, stderr)
		}
	}
}

func TestDeployCheckPrint(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`parameter_overrides = ["H5Origins=https://h5.example.com", "Architecture=x86_64"]`, "x86_64\n"},
		{`parameter_overrides = ["H5Origins=https://h5.example.com"]`, "arm64\n"}, // the template's default
	} {
		code, stdout, stderr := deploycheck(t, tc.body, nil, "-print", "Architecture")
		if code != 0 || stdout != tc.want {
			t.Errorf("%s: exit %d, stdout %q, want %q:\n%s", tc.body, code, stdout, tc.want, stderr)
		}
	}
	if code, stdout, _ := deploycheck(t, `parameter_overrides = ["H5Origins=<x>"]`, nil, "-print", "Architecture"); code != 1 || stdout != "" {
		t.Errorf("a refused environment: exit %d, stdout %q; want 1 and nothing printed", code, stdout)
	}
	if code, _, _ := deploycheck(t, `parameter_overrides = ["H5Origins=x"]`, nil, "-print", "Nope"); code != 2 {
		t.Errorf("-print of an unknown parameter: exit %d, want 2", code)
	}
}

func TestDeployCheckUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tpl := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(tpl, []byte(testTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[test.global.parameters]\nparameter_overrides = [\"H5Origins=x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badTpl := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badTpl, []byte("Metadata:\n  DeployCheck:\n    RequiredParameters:\n      - Name: Missing\nParameters: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no_such_environment":         {"-env", "nope", "-template", tpl, "-config", "../../samconfig.toml"},
		"unreadable_samconfig":        {"-env", "test", "-template", tpl, "-config", bad},
		"missing_samconfig":           {"-env", "test", "-template", tpl, "-config", filepath.Join(dir, "none.toml")},
		"requirement_of_no_parameter": {"-env", "default", "-template", badTpl, "-config", "../../samconfig.toml"},
		"unknown_flag":                {"-bogus"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(args, func(string) string { return "" }, &out, &errOut); code != 2 {
				t.Errorf("exit %d, want 2:\n%s", code, errOut.String())
			}
		})
	}
}

// TestRegionFromTheProfile: with no region pinned and none in the
// environment, the SAM CLI deploys to the region of its AWS CLI profile
// (samconfig's profile, else AWS_PROFILE, else default), so a China
// profile must be checked as China.
func TestRegionFromTheProfile(t *testing.T) {
	awsConfig := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(awsConfig, []byte("[default]\nregion = cn-north-1\n\n[profile global]\nregion = us-east-1\n\n[profile china]\nregion = cn-northwest-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const ready = `parameter_overrides = ["H5Origins=https://h5.example.com"]`
	for _, tc := range []struct {
		name   string
		body   string
		env    map[string]string
		refuse bool // PublicUrl refused: checked as China
		where  string
	}{
		{name: "default_profile", body: ready, refuse: true, where: "region cn-north-1 from the AWS CLI profile default"},
		{name: "AWS_PROFILE", body: ready, env: map[string]string{"AWS_PROFILE": "global"}, where: "region us-east-1 from the AWS CLI profile global"},
		{name: "samconfig_profile_wins_over_AWS_PROFILE", body: `profile = "china"` + "\n" + ready, env: map[string]string{"AWS_PROFILE": "global"}, refuse: true, where: "profile china"},
		{name: "AWS_REGION_wins_over_the_profile", body: ready, env: map[string]string{"AWS_REGION": "us-east-1"}, where: "region us-east-1 from the environment"},
		{name: "a_profile_without_a_region", body: ready, env: map[string]string{"AWS_PROFILE": "nosuch"}, where: "no region pinned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"AWS_CONFIG_FILE": awsConfig}
			for k, v := range tc.env {
				env[k] = v
			}
			code, _, stderr := deploycheck(t, tc.body, env)
			if refused := code == 1 && strings.Contains(stderr, "✗ PublicUrl"); refused != tc.refuse || (!tc.refuse && code != 0) {
				t.Errorf("exit %d, PublicUrl refused %v, want %v:\n%s", code, refused, tc.refuse, stderr)
			}
			if !strings.Contains(stderr, tc.where) {
				t.Errorf("output does not say %q:\n%s", tc.where, stderr)
			}
		})
	}
}
