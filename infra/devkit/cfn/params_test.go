package cfn

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckParameters holds values to the repository template's own
// constraints, as CloudFormation would at deploy.
func TestCheckParameters(t *testing.T) {
	tpl, err := LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		values map[string]string
		want   []string // what the error must say; nil for no error
	}{
		{"none", nil, nil},
		{"public_url_with_a_base_path", map[string]string{"PublicUrl": "http://127.0.0.1:8080/wx", "H5Origins": "https://h5.example.com,https://m.example.com"}, nil},
		{"empty_public_url", map[string]string{"PublicUrl": ""}, nil},
		{"allowed_number", map[string]string{"LogRetentionDays": "90", "SendMaxConcurrency": "2"}, nil},
		{"unknown_name_lists_the_known", map[string]string{"PublicURL": "http://x"}, []string{"PublicURL is not a parameter", "PublicUrl", "H5Origins", "LogRetentionDays"}},
		{"trailing_slash", map[string]string{"PublicUrl": "http://127.0.0.1:8080/wx/"}, []string{`PublicUrl="http://127.0.0.1:8080/wx/"`, "AllowedPattern", "without a trailing slash"}},
		{"not_a_url", map[string]string{"PublicUrl": "api.example.com"}, []string{"PublicUrl", "AllowedPattern"}},
		{"not_an_allowed_value", map[string]string{"LogRetentionDays": "10"}, []string{"LogRetentionDays", "AllowedValues"}},
		{"not_a_number", map[string]string{"ApiThrottleRate": "fast"}, []string{"ApiThrottleRate", "not a number"}},
		{"below_min_value", map[string]string{"SendMaxConcurrency": "1"}, []string{"SendMaxConcurrency", "MinValue 2"}},
		{"every_problem_at_once", map[string]string{"LogRetentionDays": "10", "Nope": "1"}, []string{"LogRetentionDays", "Nope is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tpl.CheckParameters(tc.values)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckParameters = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrParameters) {
				t.Fatalf("CheckParameters = %v, want ErrParameters", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckParameters = %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestCheckParametersRules: the constraints the repository template does
// not use yet, on a template of their own.
func TestCheckParametersRules(t *testing.T) {
	src := `Parameters:
  Name:
    Type: String
    MinLength: 2
    MaxLength: 4
  Mode:
    Type: String
    AllowedValues: [a, b]
  Subnets:
    Type: CommaDelimitedList
    AllowedPattern: "subnet-[0-9a-f]+"
  Ratio:
    Type: Number
    MaxValue: 0.5
  Vpc:
    Type: AWS::EC2::VPC::Id
`
	p := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tpl, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	for values, ok := range map[[2]string]bool{
		{"Name", "ab"}: true, {"Name", "a"}: false, {"Name", "abcde"}: false, {"Name", "中文"}: true,
		{"Mode", "a"}: true, {"Mode", "c"}: false, {"Mode", ""}: false,
		{"Subnets", "subnet-1a,subnet-2b"}: true, {"Subnets", ""}: true, {"Subnets", "subnet-1a,sg-1"}: false,
		{"Ratio", "0.25"}: true, {"Ratio", "1"}: false, {"Ratio", "1e-3"}: true,
		{"Vpc", "anything"}: true, // checked against an account, not locally
	} {
		err := tpl.CheckParameters(map[string]string{values[0]: values[1]})
		if (err == nil) != ok {
			t.Errorf("%s=%q: CheckParameters = %v, want ok %v", values[0], values[1], err, ok)
		}
	}
}
