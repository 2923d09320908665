package iam

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"wxbridge/infra/devkit/cfn"
)

// Template is what the check reads of a SAM template: its conditions and
// resources, undecoded.
type Template struct {
	Parameters map[string]struct {
		Type string `yaml:"Type"`
	} `yaml:"Parameters"`
	Conditions map[string]yaml.Node `yaml:"Conditions"`
	Globals    struct {
		Function yaml.Node `yaml:"Function"`
	} `yaml:"Globals"`
	Resources map[string]struct {
		Type string `yaml:"Type"`
		// Condition names the template condition the resource exists
		// under.
		Condition  string    `yaml:"Condition"`
		Properties yaml.Node `yaml:"Properties"`
	} `yaml:"Resources"`
}

// Load reads the template at path.
func Load(path string) (*Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Template
	if err := yaml.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("iam: %s: %w", path, err)
	}
	return &t, nil
}

// LoadNearest reads the template.yaml above the working directory.
func LoadNearest() (*Template, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	p, err := cfn.Find(wd)
	if err != nil {
		return nil, err
	}
	return Load(p)
}

// Env is where a template's references lead in one environment (a test's,
// the devstack's).
type Env struct {
	Region  string // us-east-1 when empty
	Account string // moto's 123456789012 when empty
	// Ref is what !Ref gives for a resource or a parameter of the
	// template: a table's name, a queue's URL, a secret's ARN, a function's
	// name, an event bus's name, a parameter's value. Pseudo parameters
	// (AWS::Partition, …) and !GetAtt of the usual attributes are derived
	// by the check.
	Ref func(name string) (string, error)
}

func (e Env) region() string {
	if e.Region == "" {
		return "us-east-1"
	}
	return e.Region
}

func (e Env) account() string {
	if e.Account == "" {
		return "123456789012"
	}
	return e.Account
}

// Partition is the ARN partition of a region: aws-cn for the China
// regions, aws-us-gov for GovCloud, aws elsewhere.
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

func urlSuffix(region string) string {
	if strings.HasPrefix(region, "cn-") {
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
}

// unresolved is a reference the environment has no resource for (a
// resource the test did not make).
type unresolved struct{ what string }

func (u *unresolved) Error() string { return u.what + " is not made in this environment" }

// noValue is AWS::NoValue: the property it is in is dropped.
type noValue struct{}

// resolver evaluates the intrinsic functions of a template's values.
type resolver struct {
	tpl *Template
	env Env
	// vars are !Sub's own variables, and a SAM policy template's
	// parameters.
	vars map[string]any
}

// value evaluates n into a string, a []any, a map[string]any or noValue.
func (r *resolver) value(n *yaml.Node) (any, error) {
	if n.Kind == yaml.AliasNode {
		return r.value(n.Alias)
	}
	if fn, arg, ok := intrinsic(n); ok {
		return r.call(fn, arg)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := r.value(c)
			if err != nil {
				return nil, err
			}
			if _, drop := v.(noValue); !drop {
				out = append(out, v)
			}
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := r.value(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			if _, drop := v.(noValue); !drop {
				out[n.Content[i].Value] = v
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("iam: line %d: unexpected YAML node", n.Line)
}

// intrinsic recognises !Fn arg and {"Fn::X": arg} / {"Ref": arg}.
func intrinsic(n *yaml.Node) (string, *yaml.Node, bool) {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		arg := *n
		arg.Tag = ""
		switch n.Kind {
		case yaml.ScalarNode:
			arg.Tag = "!!str"
		case yaml.SequenceNode:
			arg.Tag = "!!seq"
		case yaml.MappingNode:
			arg.Tag = "!!map"
		}
		name := n.Tag[1:]
		if name != "Ref" && name != "Condition" {
			name = "Fn::" + name
		}
		return name, &arg, true
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		k := n.Content[0].Value
		if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
			return k, n.Content[1], true
		}
	}
	return "", nil, false
}

func (r *resolver) str(n *yaml.Node) (string, error) {
	v, err := r.value(n)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("iam: line %d: want a string", n.Line)
	}
	return s, nil
}

func args(n *yaml.Node, count int, fn string) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode || (count > 0 && len(n.Content) != count) {
		return nil, fmt.Errorf("iam: line %d: %s takes a list of %d", n.Line, fn, count)
	}
	return n.Content, nil
}

func (r *resolver) call(fn string, arg *yaml.Node) (any, error) {
	switch fn {
	case "Ref":
		return r.ref(arg.Value)
	case "Fn::GetAtt":
		id, attr, ok := strings.Cut(arg.Value, ".")
		if arg.Kind == yaml.SequenceNode && len(arg.Content) == 2 {
			id, attr, ok = arg.Content[0].Value, arg.Content[1].Value, true
		}
		if !ok {
			return nil, fmt.Errorf("iam: line %d: !GetAtt wants Resource.Attribute", arg.Line)
		}
		return r.getAtt(id, attr)
	case "Fn::Sub":
		return r.sub(arg)
	case "Fn::Join":
		a, err := args(arg, 2, fn)
		if err != nil {
			return nil, err
		}
		list, err := r.value(a[1])
		if err != nil {
			return nil, err
		}
		items, ok := list.([]any)
		if !ok {
			return nil, fmt.Errorf("iam: line %d: !Join wants a list", arg.Line)
		}
		parts := make([]string, len(items))
		for i, it := range items {
			if parts[i], ok = it.(string); !ok {
				return nil, fmt.Errorf("iam: line %d: !Join of a non-string", arg.Line)
			}
		}
		return strings.Join(parts, a[0].Value), nil
	case "Fn::Split":
		a, err := args(arg, 2, fn)
		if err != nil {
			return nil, err
		}
		s, err := r.str(a[1])
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(s, a[0].Value) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Select":
		a, err := args(arg, 2, fn)
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(a[0].Value)
		list, lerr := r.value(a[1])
		items, ok := list.([]any)
		if err != nil || lerr != nil || !ok || i < 0 || i >= len(items) {
			return nil, errors.Join(fmt.Errorf("iam: line %d: bad !Select", arg.Line), lerr)
		}
		return items[i], nil
	case "Fn::If":
		a, err := args(arg, 3, fn)
		if err != nil {
			return nil, err
		}
		ok, err := r.condition(a[0].Value)
		if err != nil {
			return nil, err
		}
		if ok {
			return r.value(a[1])
		}
		return r.value(a[2])
	case "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition":
		ok, err := r.boolean(fn, arg)
		return strconv.FormatBool(ok), err
	}
	return nil, fmt.Errorf("%w: %s (line %d)", ErrUnsupported, fn, arg.Line)
}

// exists reports whether resource id exists with the environment's
// parameters (its Condition holds, or it has none).
func (r *resolver) exists(id string) (bool, error) {
	c := r.tpl.Resources[id].Condition
	if c == "" {
		return true, nil
	}
	return r.condition(c)
}

// condition evaluates the template's condition name.
func (r *resolver) condition(name string) (bool, error) {
	n, ok := r.tpl.Conditions[name]
	if !ok {
		return false, fmt.Errorf("iam: no condition %q in the template", name)
	}
	fn, arg, ok := intrinsic(&n)
	if !ok {
		return false, fmt.Errorf("iam: condition %s is not a condition function", name)
	}
	return r.boolean(fn, arg)
}

func (r *resolver) boolean(fn string, arg *yaml.Node) (bool, error) {
	switch fn {
	case "Condition":
		return r.condition(arg.Value)
	case "Fn::Equals":
		a, err := args(arg, 2, fn)
		if err != nil {
			return false, err
		}
		x, err := r.value(a[0])
		if err != nil {
			return false, err
		}
		y, err := r.value(a[1])
		if err != nil {
			return false, err
		}
		return fmt.Sprint(x) == fmt.Sprint(y), nil
	case "Fn::Not", "Fn::And", "Fn::Or":
		a, err := args(arg, 0, fn)
		if err != nil {
			return false, err
		}
		var vals []bool
		for _, c := range a {
			cfn, carg, ok := intrinsic(c)
			if !ok {
				return false, fmt.Errorf("iam: line %d: %s of a non-condition", c.Line, fn)
			}
			v, err := r.boolean(cfn, carg)
			if err != nil {
				return false, err
			}
			vals = append(vals, v)
		}
		switch {
		case fn == "Fn::Not" && len(vals) == 1:
			return !vals[0], nil
		case fn == "Fn::And":
			return !slices.Contains(vals, false), nil
		case fn == "Fn::Or":
			return slices.Contains(vals, true), nil
		}
	}
	return false, fmt.Errorf("%w: condition function %s (line %d)", ErrUnsupported, fn, arg.Line)
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (r *resolver) sub(arg *yaml.Node) (any, error) {
	text := arg.Value
	inner := r
	if arg.Kind == yaml.SequenceNode {
		a, err := args(arg, 2, "Fn::Sub")
		if err != nil {
			return nil, err
		}
		text = a[0].Value
		vars, err := r.value(a[1])
		if err != nil {
			return nil, err
		}
		m, _ := vars.(map[string]any)
		inner = &resolver{tpl: r.tpl, env: r.env, vars: m}
	}
	var failed error
	out := subVar.ReplaceAllStringFunc(text, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}" // ${!Literal}
		}
		var v any
		var err error
		if val, ok := inner.vars[name]; ok {
			v = val
		} else if id, attr, ok := strings.Cut(name, "."); ok {
			v, err = r.getAtt(id, attr)
		} else {
			v, err = r.ref(name)
		}
		s, ok := v.(string)
		if err == nil && !ok {
			err = fmt.Errorf("iam: !Sub ${%s} is not a string", name)
		}
		if err != nil && failed == nil {
			failed = err
		}
		return s
	})
	return out, failed
}

func (r *resolver) ref(name string) (any, error) {
	if v, ok := r.vars[name]; ok {
		return v, nil
	}
	region := r.env.region()
	switch name {
	case "AWS::Partition":
		return Partition(region), nil
	case "AWS::Region":
		return region, nil
	case "AWS::AccountId":
		return r.env.account(), nil
	case "AWS::URLSuffix":
		return urlSuffix(region), nil
	case "AWS::StackName":
		if r.env.Ref != nil {
			if v, err := r.env.Ref(name); err == nil {
				return v, nil
			}
		}
		return "wxbridge", nil
	case "AWS::NoValue":
		return noValue{}, nil
	}
	if r.env.Ref == nil {
		return nil, &unresolved{"!Ref " + name}
	}
	v, err := r.env.Ref(name)
	if err != nil {
		return nil, &unresolved{fmt.Sprintf("!Ref %s (%v)", name, err)}
	}
	if t := r.tpl.Parameters[name].Type; t == "CommaDelimitedList" || strings.HasPrefix(t, "List<") {
		var out []any
		for _, s := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	}
	return v, nil
}

// getAtt derives the attributes policies name from what !Ref gives.
func (r *resolver) getAtt(id, attr string) (any, error) {
	p, region, account := Partition(r.env.region()), r.env.region(), r.env.account()
	res, ok := r.tpl.Resources[id]
	if !ok {
		// SAM's execution role of a function without its own Role.
		if fn, ok := strings.CutSuffix(id, "Role"); ok && attr == "Arn" && r.tpl.Resources[fn].Type == samFunction {
			return roleARN(p, account, id), nil
		}
		return nil, fmt.Errorf("iam: !GetAtt %s.%s: no resource %s in the template", id, attr, id)
	}
	if attr != "Arn" && attr != "QueueName" && attr != "Name" && attr != "StreamArn" {
		return nil, fmt.Errorf("%w: !GetAtt %s.%s", ErrUnsupported, id, attr)
	}
	v, err := r.ref(id)
	if err != nil {
		return nil, err
	}
	ref, _ := v.(string)
	switch {
	case res.Type == "AWS::DynamoDB::Table" && attr == "Arn":
		return fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", p, region, account, ref), nil
	case res.Type == "AWS::DynamoDB::Table" && attr == "StreamArn":
		// The stream's label is a timestamp only DynamoDB knows.
		return fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s/stream/*", p, region, account, ref), nil
	case res.Type == "AWS::SQS::Queue" && attr == "Arn":
		return queueARN(ref, p, region)
	case res.Type == "AWS::SQS::Queue" && attr == "QueueName":
		return path.Base(ref), nil
	case (res.Type == samFunction || res.Type == "AWS::Lambda::Function") && attr == "Arn":
		return fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", p, region, account, ref), nil
	case res.Type == "AWS::Events::EventBus" && attr == "Arn":
		return fmt.Sprintf("arn:%s:events:%s:%s:event-bus/%s", p, region, account, ref), nil
	case res.Type == "AWS::Events::EventBus" && attr == "Name":
		return ref, nil
	case res.Type == "AWS::IAM::Role" && attr == "Arn":
		return roleARN(p, account, ref), nil
	}
	return nil, fmt.Errorf("%w: !GetAtt %s.%s of a %s", ErrUnsupported, id, attr, res.Type)
}

const samFunction = "AWS::Serverless::Function"

func roleARN(partition, account, name string) string {
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", partition, account, name)
}

// queueARN is the ARN of the queue at a queue URL
// (http://host/123456789012/name): the account and name are its path.
func queueARN(queueURL, partition, region string) (string, error) {
	u, err := url.Parse(queueURL)
	if err != nil {
		return "", fmt.Errorf("iam: queue URL %q: %w", queueURL, err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", fmt.Errorf("iam: %q is not a queue URL (want .../<account>/<name>)", queueURL)
	}
	return fmt.Sprintf("arn:%s:sqs:%s:%s:%s", partition, region, parts[0], parts[1]), nil
}
