package iam

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// role is a function's execution role as the template declares it: the
// role's ARN and its identity policies.
type role struct {
	arn      string
	policies []Policy
	// notes name references in Allow statements that lead nowhere in this
	// environment (they allow nothing here), for denial messages.
	notes []string
}

type functionProps struct {
	Policies            yaml.Node `yaml:"Policies"`
	Role                yaml.Node `yaml:"Role"`
	PermissionsBoundary yaml.Node `yaml:"PermissionsBoundary"`
}

// functionRole reads the execution role of function id: SAM's generated
// role <id>Role with the function's Policies (inline statements, SAM
// policy templates, managed policies), or the template role its Role
// names, plus any AWS::IAM::Policy or ManagedPolicy of the template
// attached to that role. SAM's implicit policies for event sources
// (SqsPolicy, AWSLambdaDynamoDBExecutionRole) are left out: they are there
// for Lambda's pollers, and function code must not lean on them.
func (r *resolver) functionRole(id string) (*role, error) {
	res, ok := r.tpl.Resources[id]
	if !ok || (res.Type != samFunction && res.Type != "AWS::Lambda::Function") {
		return nil, fmt.Errorf("iam: template.yaml has no function %s", id)
	}
	if ok, err := r.exists(id); err != nil || !ok {
		return nil, errors.Join(fmt.Errorf("iam: function %s does not exist with these parameters (its Condition)", id), err)
	}
	var p functionProps
	if err := res.Properties.Decode(&p); err != nil {
		return nil, fmt.Errorf("iam: %s: %w", id, err)
	}
	var g functionProps
	if !r.tpl.Globals.Function.IsZero() {
		if err := r.tpl.Globals.Function.Decode(&g); err != nil {
			return nil, fmt.Errorf("iam: Globals.Function: %w", err)
		}
	}
	if !p.PermissionsBoundary.IsZero() || !g.PermissionsBoundary.IsZero() {
		return nil, fmt.Errorf("%w: %s: PermissionsBoundary", ErrUnsupported, id)
	}
	out := &role{}
	partition, account := Partition(r.env.region()), r.env.account()
	roleID := id + "Role"
	if p.Role.IsZero() {
		if res.Type != samFunction {
			return nil, fmt.Errorf("iam: %s: an AWS::Lambda::Function needs a Role", id)
		}
		out.arn = roleARN(partition, account, roleID)
		if err := r.samPolicies(id, &p.Policies, out); err != nil {
			return nil, err
		}
	} else {
		// Role: !GetAtt SomeRole.Arn — SAM then ignores Policies.
		fn, arg, ok := intrinsic(&p.Role)
		target, _, _ := strings.Cut(arg.Value, ".")
		if arg != nil && arg.Kind == yaml.SequenceNode && len(arg.Content) == 2 {
			target = arg.Content[0].Value
		}
		if !ok || fn != "Fn::GetAtt" || r.tpl.Resources[target].Type != "AWS::IAM::Role" {
			return nil, fmt.Errorf("%w: %s: Role must be !GetAtt <an AWS::IAM::Role of the template>.Arn", ErrUnsupported, id)
		}
		roleID = target
		if err := r.templateRole(target, out); err != nil {
			return nil, err
		}
	}
	// Policies of the template attached to the role by name.
	for _, pid := range sortedKeys(r.tpl.Resources) {
		pres := r.tpl.Resources[pid]
		if pres.Type != "AWS::IAM::Policy" && pres.Type != "AWS::IAM::ManagedPolicy" {
			continue
		}
		if ok, err := r.exists(pid); err != nil || !ok {
			if err != nil {
				return nil, fmt.Errorf("iam: %s: %w", pid, err)
			}
			continue
		}
		var pp struct {
			Roles          []yaml.Node `yaml:"Roles"`
			PolicyDocument yaml.Node   `yaml:"PolicyDocument"`
		}
		if err := pres.Properties.Decode(&pp); err != nil {
			return nil, fmt.Errorf("iam: %s: %w", pid, err)
		}
		if !slices.ContainsFunc(pp.Roles, func(n yaml.Node) bool { return refTarget(&n) == roleID }) {
			continue
		}
		if err := r.add(out, pid, &pp.PolicyDocument); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// samPolicies reads a SAM function's Policies: one entry or a list.
func (r *resolver) samPolicies(id string, n *yaml.Node, out *role) error {
	if n.IsZero() {
		return nil
	}
	entries := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode && n.Tag != "!If" {
		entries = n.Content
	}
	for i, e := range entries {
		name := fmt.Sprintf("%s Policies[%d]", id, i)
		if fn, _, isFn := intrinsic(e); e.Kind == yaml.MappingNode && !isFn {
			if stmts := child(e, "Statement"); stmts != nil {
				if err := r.add(out, name, e); err != nil {
					return err
				}
				continue
			}
			if len(e.Content) != 2 {
				return fmt.Errorf("iam: %s: neither a policy document (Statement) nor a SAM policy template", name)
			}
			if err := r.samTemplate(out, name, e.Content[0].Value, e.Content[1]); err != nil {
				return err
			}
			continue
		} else if isFn && fn == "Fn::If" {
			v, err := r.value(e)
			if err != nil {
				return fmt.Errorf("iam: %s: %w", name, err)
			}
			if _, drop := v.(noValue); drop {
				continue
			}
			return fmt.Errorf("%w: %s: !If around a policy other than AWS::NoValue", ErrUnsupported, name)
		}
		if err := r.managed(out, name, e); err != nil {
			return err
		}
	}
	return nil
}

// templateRole reads an AWS::IAM::Role of the template.
func (r *resolver) templateRole(id string, out *role) error {
	var p struct {
		RoleName          string      `yaml:"RoleName"`
		Policies          []yaml.Node `yaml:"Policies"`
		ManagedPolicyArns []yaml.Node `yaml:"ManagedPolicyArns"`
		PermissionsBound  yaml.Node   `yaml:"PermissionsBoundary"`
	}
	res := r.tpl.Resources[id]
	if err := res.Properties.Decode(&p); err != nil {
		return fmt.Errorf("iam: %s: %w", id, err)
	}
	if !p.PermissionsBound.IsZero() {
		return fmt.Errorf("%w: %s: PermissionsBoundary", ErrUnsupported, id)
	}
	name := id
	if p.RoleName != "" {
		name = p.RoleName
	}
	out.arn = roleARN(Partition(r.env.region()), r.env.account(), name)
	for i := range p.Policies {
		doc := child(&p.Policies[i], "PolicyDocument")
		if doc == nil {
			return fmt.Errorf("iam: %s Policies[%d] has no PolicyDocument", id, i)
		}
		if err := r.add(out, fmt.Sprintf("%s Policies[%d]", id, i), doc); err != nil {
			return err
		}
	}
	for i := range p.ManagedPolicyArns {
		if err := r.managed(out, fmt.Sprintf("%s ManagedPolicyArns[%d]", id, i), &p.ManagedPolicyArns[i]); err != nil {
			return err
		}
	}
	return nil
}

// managed adds a managed policy: a template AWS::IAM::ManagedPolicy by
// !Ref, or an AWS managed policy the check knows by name or ARN.
func (r *resolver) managed(out *role, name string, n *yaml.Node) error {
	if id := refTarget(n); id != "" && r.tpl.Resources[id].Type == "AWS::IAM::ManagedPolicy" {
		res := r.tpl.Resources[id]
		doc := child(&res.Properties, "PolicyDocument")
		if doc == nil {
			return fmt.Errorf("iam: %s has no PolicyDocument", id)
		}
		return r.add(out, id, doc)
	}
	s, err := r.str(n)
	if err != nil {
		return fmt.Errorf("iam: %s: %w", name, err)
	}
	short := s[strings.LastIndexByte(s, '/')+1:]
	doc, ok := awsManaged[short]
	if !ok {
		return fmt.Errorf("%w: %s: managed policy %s (the check knows %s; add its statements to awsManaged in infra/devkit/iam)",
			ErrUnsupported, name, s, strings.Join(sortedKeys(awsManaged), ", "))
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		return err
	}
	return r.add(out, short, node.Content[0])
}

// samTemplate expands a SAM policy template with its parameters.
func (r *resolver) samTemplate(out *role, name, template string, params *yaml.Node) error {
	def, ok := samTemplates[template]
	if !ok {
		return fmt.Errorf("%w: %s: SAM policy template %s (the check knows %s)", ErrUnsupported, name, template, strings.Join(sortedKeys(samTemplates), ", "))
	}
	pv, err := r.value(params)
	if err != nil {
		return fmt.Errorf("iam: %s: %s parameters: %w", name, template, err)
	}
	vars, _ := pv.(map[string]any)
	for _, want := range def.params {
		if _, ok := vars[want]; !ok {
			return fmt.Errorf("iam: %s: %s needs the parameter %s", name, template, want)
		}
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(def.doc), &node); err != nil {
		return err
	}
	inner := &resolver{tpl: r.tpl, env: r.env, vars: vars}
	return inner.add(out, name+" ("+template+")", node.Content[0])
}

// add resolves an identity policy document and adds it to out.
func (r *resolver) add(out *role, name string, doc *yaml.Node) error {
	p, notes, err := r.document(name, doc, false)
	if err != nil {
		return err
	}
	out.policies = append(out.policies, p)
	out.notes = append(out.notes, notes...)
	return nil
}

// document resolves a policy document. A reference that leads nowhere in
// this environment makes an Allow statement's resource match nothing (and
// is noted); in a Deny statement it is an error, since what the Deny
// covers cannot be known.
func (r *resolver) document(name string, doc *yaml.Node, resource bool) (Policy, []string, error) {
	p := Policy{Name: name, Resource: resource}
	stmts := child(doc, "Statement")
	if stmts == nil {
		return p, nil, fmt.Errorf("iam: %s: a policy document without Statement", name)
	}
	list := []*yaml.Node{stmts}
	if _, _, isFn := intrinsic(stmts); stmts.Kind == yaml.SequenceNode && !isFn {
		list = stmts.Content
	}
	var notes []string
	for i, sn := range list {
		s, sNotes, err := r.statement(sn)
		if err != nil {
			return p, nil, fmt.Errorf("iam: %s statement %d: %w", name, i, err)
		}
		for _, n := range sNotes {
			notes = append(notes, fmt.Sprintf("%s statement %s: %s", name, sidOr(s.Sid, i), n))
		}
		p.Statements = append(p.Statements, s)
	}
	return p, notes, nil
}

func (r *resolver) statement(n *yaml.Node) (Statement, []string, error) {
	var s Statement
	if _, _, isFn := intrinsic(n); isFn || n.Kind != yaml.MappingNode {
		return s, nil, fmt.Errorf("%w: a statement that is not a plain mapping", ErrUnsupported)
	}
	field := func(key string) *yaml.Node { return child(n, key) }
	var err error
	if f := field("Sid"); f != nil {
		s.Sid = f.Value
	}
	if s.Effect, err = r.str(orEmpty(field("Effect"))); err != nil {
		return s, nil, err
	}
	if field("NotPrincipal") != nil {
		return s, nil, fmt.Errorf("%w: NotPrincipal", ErrUnsupported)
	}
	var notes []string
	for key, dst := range map[string]*[]string{"Action": &s.Action, "NotAction": &s.NotAction, "Resource": &s.Resource, "NotResource": &s.NotResource} {
		f := field(key)
		if f == nil {
			continue
		}
		tolerant := s.Effect == Allow && (key == "Resource" || key == "NotResource")
		vals, missing, err := r.list(f, tolerant && key == "Resource")
		if err != nil {
			return s, nil, fmt.Errorf("%s: %w", key, err)
		}
		*dst = vals
		for _, m := range missing {
			notes = append(notes, m.Error())
		}
	}
	if f := field("Principal"); f != nil {
		v, err := r.value(f)
		if err != nil {
			return s, nil, fmt.Errorf("Principal: %w", err)
		}
		switch pv := v.(type) {
		case string:
			s.Principal = []string{pv}
		case map[string]any:
			// Service, Federated and CanonicalUser principals are never a
			// function's role: only AWS ones can match.
			aws, err := flat(pv["AWS"])
			if err != nil {
				return s, nil, fmt.Errorf("Principal: %w", err)
			}
			s.Principal = aws
		default:
			return s, nil, fmt.Errorf("Principal: want \"*\" or a mapping")
		}
	}
	if f := field("Condition"); f != nil {
		v, err := r.value(f)
		if err != nil {
			return s, nil, fmt.Errorf("Condition: %w", err)
		}
		ops, ok := v.(map[string]any)
		if !ok {
			return s, nil, errors.New("Condition: want a mapping")
		}
		for _, op := range sortedKeys(ops) {
			keys, ok := ops[op].(map[string]any)
			if !ok {
				return s, nil, fmt.Errorf("Condition %s: want a mapping of keys", op)
			}
			for _, key := range sortedKeys(keys) {
				vals, err := flat(keys[key])
				if err != nil {
					return s, nil, fmt.Errorf("Condition %s %s: %w", op, key, err)
				}
				s.Conditions = append(s.Conditions, Condition{Operator: op, Key: key, Values: vals})
			}
		}
	}
	for _, list := range [][]string{s.Resource, s.NotResource} {
		for _, v := range list {
			if strings.Contains(v, "${") {
				return s, nil, fmt.Errorf("%w: policy variable in %q", ErrUnsupported, v)
			}
		}
	}
	return s, notes, nil
}

// list resolves a string or a list of strings. With tolerant, an item
// that leads nowhere in this environment becomes a pattern that matches
// no ARN, and is returned in missing.
func (r *resolver) list(n *yaml.Node, tolerant bool) (vals []string, missing []error, err error) {
	if _, _, isFn := intrinsic(n); n.Kind == yaml.SequenceNode && !isFn {
		for _, c := range n.Content {
			v, err := r.value(c)
			var u *unresolved
			switch {
			case tolerant && errors.As(err, &u):
				vals = append(vals, "!unresolved "+u.what)
				missing = append(missing, u)
				continue
			case err != nil:
				return nil, nil, err
			}
			if _, drop := v.(noValue); drop {
				continue
			}
			more, err := flat(v)
			if err != nil {
				return nil, nil, err
			}
			vals = append(vals, more...)
		}
		return vals, missing, nil
	}
	v, err := r.value(n)
	var u *unresolved
	if tolerant && errors.As(err, &u) {
		return []string{"!unresolved " + u.what}, []error{u}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if _, drop := v.(noValue); drop {
		return nil, nil, nil
	}
	vals, err = flat(v)
	return vals, nil, err
}

// flat turns a resolved string or list of strings into a list.
func flat(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, it := range x {
			s, ok := it.(string)
			if !ok {
				return nil, fmt.Errorf("want strings, got %T", it)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a string or a list of strings, got %T", v)
}

// attached is a resource policy with the ARNs of the resources it is on.
type attached struct {
	resources []string
	policy    Policy
}

// resourcePolicies reads the template's resource policies the check
// applies: secrets' (AWS::SecretsManager::ResourcePolicy) and queues'
// (AWS::SQS::QueuePolicy). One on a resource this environment does not
// have is left out: it guards nothing here.
func (r *resolver) resourcePolicies() ([]attached, error) {
	var out []attached
	p, region := Partition(r.env.region()), r.env.region()
	for _, id := range sortedKeys(r.tpl.Resources) {
		res := r.tpl.Resources[id]
		if ok, err := r.exists(id); err != nil || !ok {
			if err != nil {
				return nil, fmt.Errorf("iam: %s: %w", id, err)
			}
			continue
		}
		var targets []string
		var doc *yaml.Node
		switch res.Type {
		case "AWS::SecretsManager::ResourcePolicy":
			secret, err := r.str(orEmpty(child(&res.Properties, "SecretId")))
			var u *unresolved
			if errors.As(err, &u) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("iam: %s SecretId: %w", id, err)
			}
			targets, doc = []string{secret}, child(&res.Properties, "ResourcePolicy")
		case "AWS::SQS::QueuePolicy":
			urls, _, err := r.list(orEmpty(child(&res.Properties, "Queues")), true)
			if err != nil {
				return nil, fmt.Errorf("iam: %s Queues: %w", id, err)
			}
			for _, u := range urls {
				if strings.HasPrefix(u, "!unresolved") {
					continue
				}
				arn, err := queueARN(u, p, region)
				if err != nil {
					return nil, err
				}
				targets = append(targets, arn)
			}
			doc = child(&res.Properties, "PolicyDocument")
		default:
			continue
		}
		if len(targets) == 0 {
			continue
		}
		if doc == nil {
			return nil, fmt.Errorf("iam: %s has no policy document", id)
		}
		pol, _, err := r.document(id, doc, true)
		if err != nil {
			return nil, err
		}
		out = append(out, attached{resources: targets, policy: pol})
	}
	return out, nil
}

// child is the value of key in mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func orEmpty(n *yaml.Node) *yaml.Node {
	if n == nil {
		return &yaml.Node{Kind: yaml.ScalarNode}
	}
	return n
}

// refTarget is the logical ID n refers to with !Ref, or "".
func refTarget(n *yaml.Node) string {
	if fn, arg, ok := intrinsic(n); ok && fn == "Ref" {
		return arg.Value
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
