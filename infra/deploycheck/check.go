package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// placeholderRE is how samconfig.toml marks a value to fill in: angle
// brackets, such as <https://h5.example.com>, wherever they are in the
// value (" <x>", "<a>,<b>", "<x>/wx" are half-filled placeholders). No
// parameter of the template accepts one as a real value.
var placeholderRE = regexp.MustCompile(`<[^<>]*>`)

// template is what the check reads of template.yaml: its parameters, in
// order, and which of them a working stack needs (Metadata DeployCheck).
type template struct {
	params   []parameter
	required []requirement
}

type parameter struct {
	Name           string
	Type           string    `yaml:"Type"`
	Default        yaml.Node `yaml:"Default"`
	AllowedValues  []string  `yaml:"AllowedValues"`
	AllowedPattern string    `yaml:"AllowedPattern"`
	Constraint     string    `yaml:"ConstraintDescription"`
}

// requirement is one entry of Metadata.DeployCheck.RequiredParameters.
type requirement struct {
	Name       string   `yaml:"Name"`
	Partitions []string `yaml:"Partitions"`
	Why        string   `yaml:"Why"`
}

func (r requirement) appliesTo(partition string) bool {
	return len(r.Partitions) == 0 || slices.Contains(r.Partitions, partition)
}

func loadTemplate(path string) (*template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Parameters yaml.Node `yaml:"Parameters"`
		Metadata   struct {
			DeployCheck struct {
				RequiredParameters []requirement `yaml:"RequiredParameters"`
			} `yaml:"DeployCheck"`
		} `yaml:"Metadata"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t := &template{required: doc.Metadata.DeployCheck.RequiredParameters}
	ps := doc.Parameters.Content
	for i := 0; i+1 < len(ps); i += 2 {
		p := parameter{Name: ps[i].Value}
		if err := ps[i+1].Decode(&p); err != nil {
			return nil, fmt.Errorf("%s: parameter %s: %w", path, p.Name, err)
		}
		t.params = append(t.params, p)
	}
	for _, r := range t.required {
		if t.param(r.Name) == nil {
			return nil, fmt.Errorf("%s: Metadata DeployCheck requires %s, which is not a parameter", path, r.Name)
		}
	}
	return t, nil
}

func (t *template) param(name string) *parameter {
	for i := range t.params {
		if t.params[i].Name == name {
			return &t.params[i]
		}
	}
	return nil
}

// value is what the stack gets for parameter name: the environment's
// override, else the template's default.
func (t *template) value(name string, overrides map[string]string) (string, bool) {
	if v, ok := overrides[name]; ok {
		return v, true
	}
	if p := t.param(name); p != nil {
		return p.Default.Value, true
	}
	return "", false
}

// A problem is one reason an environment is not ready to deploy.
type problem struct {
	param, msg string
}

// partitionOf names the AWS partition of region ("" when the region is not
// known: the partition-wide requirements are then checked as for aws).
func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	default:
		return "aws"
	}
}

// check returns what keeps an environment whose parameter_overrides are
// overrides, deploying to partition, from a working stack. Parameters the
// environment does not name keep their previous values on an existing
// stack, which the check cannot see: a required one must be named.
func check(t *template, overrides map[string]string, partition string) []problem {
	var out []problem
	for _, name := range sortedKeys(overrides) {
		if t.param(name) == nil {
			msg := "is not a parameter of template.yaml"
			for _, p := range t.params {
				if strings.EqualFold(p.Name, name) || strings.EqualFold(p.Name, name+"s") || strings.EqualFold(p.Name+"s", name) {
					msg += fmt.Sprintf(" (did you mean %s?)", p.Name)
				}
			}
			out = append(out, problem{name, msg})
		}
	}
	for _, p := range t.params {
		v, named := overrides[p.Name]
		req := t.requirement(p.Name, partition)
		switch {
		case !named && req != nil:
			out = append(out, problem{p.Name, "is not set: " + req.Why})
		case !named:
		case placeholderRE.MatchString(v):
			why := "put your value in its place, or \"\" to leave it unset"
			if req != nil {
				why = req.Why
			}
			out = append(out, problem{p.Name, fmt.Sprintf("is still the placeholder %q: %s", v, why)})
		case strings.TrimSpace(v) == "" && req != nil:
			out = append(out, problem{p.Name, "is empty: " + req.Why})
		default:
			if msg := p.invalid(v); msg != "" {
				out = append(out, problem{p.Name, msg})
			}
		}
	}
	return out
}

func (t *template) requirement(name, partition string) *requirement {
	for i, r := range t.required {
		if r.Name == name && r.appliesTo(partition) {
			return &t.required[i]
		}
	}
	return nil
}

// invalid says why CloudFormation would refuse v for p ("" when it would
// not), so that the mistake shows before a build and a change set.
func (p *parameter) invalid(v string) string {
	if len(p.AllowedValues) > 0 && !slices.Contains(p.AllowedValues, v) {
		return fmt.Sprintf("is %q, not one of %s", v, strings.Join(p.AllowedValues, ", "))
	}
	if p.Type == "Number" {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Sprintf("is %q, not a number", v)
		}
	}
	if p.AllowedPattern != "" && p.Type == "String" {
		// CloudFormation matches the pattern against the whole value; a
		// pattern Go cannot compile is left to CloudFormation.
		if re, err := regexp.Compile(`^(?:` + p.AllowedPattern + `)$`); err == nil && !re.MatchString(v) {
			if p.Constraint != "" {
				return fmt.Sprintf("is %q, not %s", v, p.Constraint)
			}
			return fmt.Sprintf("is %q, which does not match %s", v, p.AllowedPattern)
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
