package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/samconfig"
)

// root is the repository: where template.yaml, samconfig.toml and the
// Makefile are.
func root(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfn.Find(wd)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(p)
}

// TestRepositorySamconfig holds samconfig.toml to template.yaml: each
// environment names every parameter (a new parameter must be added to
// each), is refused as shipped because its placeholders are not filled
// in, and passes once they are (so each placeholder has the shape of a
// value the template accepts).
func TestRepositorySamconfig(t *testing.T) {
	dir := root(t)
	tpl, err := loadTemplate(filepath.Join(dir, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := samconfig.Load(filepath.Join(dir, "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	envs := cfg.Environments()
	for _, want := range []string{"default", "prod", "china"} {
		if !slices.Contains(envs, want) {
			t.Errorf("samconfig.toml has no environment %s (has %v)", want, envs)
		}
	}
	for _, env := range envs {
		t.Run(env, func(t *testing.T) {
			overrides, ok, err := cfg.ParameterOverrides(env, "deploy")
			if err != nil || !ok {
				t.Fatalf("parameter_overrides: ok=%v, %v", ok, err)
			}
			build, _, _ := cfg.ParameterOverrides(env, "build")
			if !maps.Equal(build, overrides) {
				t.Errorf("sam build sees other parameters than sam deploy (put parameter_overrides in [%s.global.parameters])", env)
			}
			for _, p := range tpl.params {
				if _, ok := overrides[p.Name]; !ok {
					t.Errorf("does not name %s", p.Name)
				}
			}
			region, _ := cfg.String(env, "deploy", "region")
			partition := partitionOf(region)
			if env == "china" && partition != "aws-cn" {
				t.Errorf("region %q is not a China region", region)
			}

			shipped := check(tpl, overrides, partition)
			var refused []string
			for _, p := range shipped {
				refused = append(refused, p.param)
			}
			for _, r := range tpl.required {
				if r.appliesTo(partition) && !slices.Contains(refused, r.Name) {
					t.Errorf("as shipped, %s is not refused; a required parameter should be a placeholder: %v", r.Name, shipped)
				}
			}

			filled := map[string]string{}
			for k, v := range overrides {
				filled[k] = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
			}
			if problems := check(tpl, filled, partition); len(problems) > 0 {
				t.Errorf("with its placeholders filled in as they read, still refused: %v", problems)
			}
		})
	}
}

// TestMakeDeployRefusesBeforeSam runs `make deploy` on the shipped
// samconfig.toml: the check stops it, naming the parameters, before any
// sam command (sam is not needed to see it).
func TestMakeDeployRefusesBeforeSam(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "deploy", "ENV=china")
	cmd.Dir = root(t)
	// Not the outer make's flags or jobserver (make test runs this), nor a
	// caller's ENV or LAMBDA_ARCH.
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ENV", "LAMBDA_ARCH":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("make deploy ENV=china succeeded on the shipped placeholders:\n%s", out)
	}
	for _, want := range []string{"samconfig.toml [china] is not ready to deploy", "✗ H5Origins", "✗ PublicUrl"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "sam build") || strings.Contains(string(out), "needs the AWS SAM CLI") {
		t.Errorf("make deploy went past the check:\n%s", out)
	}
}

// TestMakefileBuildsForArchitecture holds the Makefile's LAMBDA_ARCH to the
// template's Architecture: each allowed value builds binaries of its
// GOARCH, for make build and for sam build's build-<Function> targets, and
// make build stays arm64 by default.
func TestMakefileBuildsForArchitecture(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dir := root(t)
	tpl, err := loadTemplate(filepath.Join(dir, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	arch := tpl.param("Architecture")
	if arch == nil {
		t.Fatal("template.yaml has no Architecture parameter")
	}
	goarch := map[string]string{"arm64": "arm64", "x86_64": "amd64"}
	dryRun := func(args ...string) (string, error) {
		cmd := exec.Command("make", append([]string{"-n", "--no-print-directory"}, args...)...)
		cmd.Dir = dir
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "LAMBDA_ARCH" {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, v := range arch.AllowedValues {
		want, ok := goarch[v]
		if !ok {
			t.Errorf("Architecture allows %s, which the test (and the Makefile?) does not map to a GOARCH", v)
			continue
		}
		for _, target := range []string{"build", "build-LoginFunction"} {
			out, err := dryRun(target, "LAMBDA_ARCH="+v, "ARTIFACTS_DIR="+t.TempDir())
			if err != nil || !strings.Contains(out, "GOOS=linux GOARCH="+want+" ") {
				t.Errorf("make %s LAMBDA_ARCH=%s: want GOARCH=%s (%v):\n%s", target, v, want, err, out)
			}
		}
	}
	if out, err := dryRun("build"); err != nil || !strings.Contains(out, "GOARCH="+goarch[arch.Default.Value]+" ") {
		t.Errorf("make build without LAMBDA_ARCH: want the template's default %s (%v):\n%s", arch.Default.Value, err, out)
	}
	if out, err := dryRun("build", "LAMBDA_ARCH=amd64"); err == nil || !strings.Contains(out, "arm64 or x86_64") {
		t.Errorf("LAMBDA_ARCH=amd64 (a GOARCH, not an Architecture): want make to refuse it (%v):\n%s", err, out)
	}
}

// TestTemplateIsPartitionAware keeps template.yaml, and the example
// templates in docs/examples, deployable in the China regions (partition
// aws-cn, domain amazonaws.com.cn), with one Architectures, the
// Architecture parameter's, for every function.
func TestTemplateIsPartitionAware(t *testing.T) {
	examples, _ := filepath.Glob(filepath.Join(root(t), "docs", "examples", "*.yaml"))
	for _, path := range append([]string{filepath.Join(root(t), "template.yaml")}, examples...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range partitionProblems(string(b)) {
			t.Errorf("%s: %s", filepath.Base(path), p)
		}
	}
	src, err := os.ReadFile(filepath.Join(root(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	var doc struct {
		Globals struct {
			Function struct {
				Architectures yaml.Node `yaml:"Architectures"`
			} `yaml:"Function"`
		} `yaml:"Globals"`
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	a := doc.Globals.Function.Architectures
	if len(a.Content) != 1 || a.Content[0].Tag != "!Ref" || a.Content[0].Value != "Architecture" {
		t.Errorf("Globals.Function.Architectures is not [!Ref Architecture]")
	}
	if n := strings.Count(string(src), "Architectures:"); n != 1 {
		t.Errorf("Architectures set %d times; only Globals should, so that the parameter governs every function", n)
	}
}

func TestPartitionProblems(t *testing.T) {
	for _, tc := range []struct {
		line string
		bad  bool
	}{
		{"      Resource: !Sub arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:q", false},
		{"      Resource: arn:aws:sqs:us-east-1:123456789012:q", true},
		{"      Resource: !Sub arn:aws:logs:${AWS::Region}:${AWS::AccountId}:*", true},
		{"      Resource: arn:aws-cn:sqs:cn-north-1:123456789012:q", true},
		{`    AllowedPattern: "^(arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+)?$"`, false},
		{"    Value: !Sub https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/wechat/push", false},
		{"    Value: !Sub https://${HttpApi}.execute-api.${AWS::Region}.amazonaws.com/wechat/push", true},
		{"              Service: events.amazonaws.com", false},
		{"      Principal: events.amazonaws.com", false},
		{"      Principal: !Sub events.${AWS::URLSuffix}", true},
		{`              Service: "scheduler.amazonaws.com"`, false},
		{"              Service: !Sub events.${AWS::URLSuffix}", true},
		{"  # a comment about arn:aws:sqs and amazonaws.com", false},
	} {
		src := "Resources:\n" + tc.line + "\n"
		if got := partitionProblems(src); (len(got) > 0) != tc.bad {
			t.Errorf("%s: problems %v, want bad=%v", strings.TrimSpace(tc.line), got, tc.bad)
		}
	}
	// A principal in a list under Service:
	list := "Principal:\n  Service:\n    - lambda.amazonaws.com\n    - !Sub states.${AWS::URLSuffix}\n"
	if got := partitionProblems(list); len(got) != 1 || !strings.Contains(got[0], "line 4:") {
		t.Errorf("list of principals: %v, want one problem on line 4", got)
	}
}

// partitionProblems lists what would keep src from deploying in another
// partition: an ARN with a literal partition (use ${AWS::Partition}, or
// !GetAtt and !Ref), a literal AWS domain (use ${AWS::URLSuffix}); service
// principals excepted, which are <service>.amazonaws.com in China too, and
// so are never built from ${AWS::URLSuffix}.
func partitionProblems(src string) []string {
	principal := regexp.MustCompile(`^\s*(?:(?:Service|Principal):\s*|-\s*)?["']?[a-z0-9.-]+\.amazonaws\.com["']?\s*$`)
	var out []string
	inService := false
	for i, line := range strings.Split(src, "\n") {
		code, _, _ := strings.Cut(line, " #")
		trimmed := strings.TrimSpace(code)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		switch {
		case strings.HasPrefix(trimmed, "Service:"), strings.HasPrefix(trimmed, "Principal:"):
			inService = true
		case !strings.HasPrefix(trimmed, "-"):
			inService = false
		}
		where := fmt.Sprintf("line %d: ", i+1)
		if strings.Contains(code, "arn:aws:") || strings.Contains(code, "arn:aws-cn:") {
			out = append(out, where+"an ARN with a literal partition: "+trimmed)
		}
		if strings.Contains(code, "amazonaws.com") && !principal.MatchString(code) {
			out = append(out, where+"a literal AWS domain (use ${AWS::URLSuffix}): "+trimmed)
		}
		if inService && strings.Contains(code, "URLSuffix") {
			out = append(out, where+"a service principal built from ${AWS::URLSuffix} (it is <service>.amazonaws.com in China too): "+trimmed)
		}
	}
	return out
}
