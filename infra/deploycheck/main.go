// Command deploycheck is the first step of `make deploy`: before `sam
// build`, and without the SAM CLI or AWS credentials, it checks that a
// samconfig.toml environment gives template.yaml every parameter the stack
// cannot work without (template.yaml's Metadata DeployCheck), that none is
// still a placeholder (<...>), and that each value is one CloudFormation
// accepts. It names each parameter that is not, and exits 1.
//
//	go run ./infra/deploycheck -env china [-print Architecture]
//
// With -print, once the check passes, it writes the value the stack gets
// for that parameter (the environment's, else the template's default) to
// standard output: the Makefile builds the binaries for the Architecture
// the stack will run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"

	"wxbridge/infra/samconfig"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is one invocation; getenv gives AWS_REGION and AWS_DEFAULT_REGION,
// where the SAM CLI finds the region an environment does not pin.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deploycheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := fs.String("env", "default", "the samconfig.toml environment (sam --config-env)")
	configPath := fs.String("config", "samconfig.toml", "the SAM CLI configuration file")
	templatePath := fs.String("template", "template.yaml", "the SAM template")
	printParam := fs.String("print", "", "after the check, print the value the stack gets for this parameter")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tpl, err := loadTemplate(*templatePath)
	if err != nil {
		fmt.Fprintln(stderr, "deploycheck:", err)
		return 2
	}
	cfg, err := samconfig.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, "deploycheck:", err)
		return 2
	}
	if !slices.Contains(cfg.Environments(), *env) {
		fmt.Fprintf(stderr, "deploycheck: %s has no environment %q (it has: %s)\n", *configPath, *env, strings.Join(cfg.Environments(), ", "))
		return 2
	}
	// sam deploy is what creates the stack: its view of the environment
	// (its own table, then the global one) is what counts.
	overrides, _, err := cfg.ParameterOverrides(*env, "deploy")
	if err != nil {
		fmt.Fprintf(stderr, "deploycheck: %s: %v\n", *configPath, err)
		return 1
	}
	region, err := cfg.String(*env, "deploy", "region")
	if err != nil {
		fmt.Fprintf(stderr, "deploycheck: %s: %v\n", *configPath, err)
		return 1
	}
	where := "region " + region
	if region == "" {
		region = firstNonEmpty(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))
		where = "region " + region + " from the environment"
	}
	if region == "" {
		// Then, as the SAM CLI does, the region of the AWS CLI profile it
		// deploys with.
		profile, err := cfg.String(*env, "deploy", "profile")
		if err != nil {
			fmt.Fprintf(stderr, "deploycheck: %s: %v\n", *configPath, err)
			return 1
		}
		profile = firstNonEmpty(profile, getenv("AWS_PROFILE"), "default")
		region = profileRegion(profile, getenv)
		where = "region " + region + " from the AWS CLI profile " + profile
		if region == "" {
			where = "no region pinned: checked as for the aws partition"
		}
	}
	partition := partitionOf(region)
	if region != "" {
		where += ", partition " + partition
	}

	if problems := check(tpl, overrides, partition); len(problems) > 0 {
		fmt.Fprintf(stderr, "%s [%s] is not ready to deploy (%s):\n", *configPath, *env, where)
		for _, p := range problems {
			fmt.Fprintf(stderr, "  ✗ %s %s\n", p.param, p.msg)
		}
		fmt.Fprintf(stderr, "Set them in parameter_overrides under [%s] in %s (template.yaml's Metadata DeployCheck lists what a working stack needs).\n", *env, *configPath)
		return 1
	}
	fmt.Fprintf(stderr, "%s [%s]: parameters ready (%s)\n", *configPath, *env, where)
	if *printParam != "" {
		v, ok := tpl.value(*printParam, overrides)
		if !ok {
			fmt.Fprintf(stderr, "deploycheck: -print %s: not a parameter of %s\n", *printParam, *templatePath)
			return 2
		}
		fmt.Fprintln(stdout, v)
	}
	return 0
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// profileRegion is the region the AWS CLI's shared configuration file
// (AWS_CONFIG_FILE, or ~/.aws/config) gives profile, or "" if it names none.
func profileRegion(profile string, getenv func(string) string) string {
	file := getenv("AWS_CONFIG_FILE")
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		file = filepath.Join(home, ".aws", "config")
	}
	sc, err := config.LoadSharedConfigProfile(context.Background(), profile, func(o *config.LoadSharedConfigOptions) {
		o.ConfigFiles = []string{file}
		o.CredentialsFiles = []string{}
	})
	if err != nil {
		return ""
	}
	return sc.Region
}
