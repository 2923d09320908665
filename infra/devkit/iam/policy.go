package iam

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Effects of a statement.
const (
	Allow = "Allow"
	Deny  = "Deny"
)

// Policy is one policy document with its statements resolved to plain
// strings: an identity policy of a function's role, or a resource policy
// (a secret's, a queue's).
type Policy struct {
	// Name says where the policy comes from, for messages:
	// "LoginFunction Policies[0]" or "MiniProgramTokenSecretPolicy".
	Name string
	// Resource is true for a resource-based policy: its statements name
	// principals.
	Resource   bool
	Statements []Statement
}

// Statement is one statement of a policy.
type Statement struct {
	Sid    string
	Effect string // Allow or Deny
	// Principal lists the principals of a resource policy's statement:
	// "*", role or account ARNs, account ids. Service principals are left
	// out: they never match a function's role.
	Principal             []string
	Action, NotAction     []string
	Resource, NotResource []string
	Conditions            []Condition
}

// Condition is one operator, key and values of a statement's Condition
// block: {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["P#*"]}} is
// one Condition with three parts.
type Condition struct {
	Operator string
	Key      string
	Values   []string
}

// Request is one authorization IAM makes for an API call: an action on a
// resource with the request's condition keys. A call may need several
// (BatchWriteItem: one per item).
type Request struct {
	Action   string // "dynamodb:PutItem"
	Resource string // an ARN
	// Context holds the condition keys the call supplies, by lower-case
	// name. A key present with no values is absent from the call (a Scan
	// has no dynamodb:LeadingKeys); a key not in the map is one the check
	// does not know for this call, and a condition on it cannot be
	// evaluated.
	Context map[string][]string
}

// Decision is the outcome of evaluating a request against policies.
type Decision struct {
	Allowed bool
	// Explicit is true when a Deny statement matched; Policy and Sid name
	// the deciding statement (the Deny, or the first Allow).
	Explicit    bool
	Policy, Sid string
	// ResourcePolicy is true when the deciding statement is in a resource
	// policy.
	ResourcePolicy bool
	// Err says why the policies could not be evaluated (an operator or a
	// condition key the check does not know); the request is denied.
	Err error
}

// ErrUnsupported reports a policy the check cannot evaluate faithfully.
var ErrUnsupported = errors.New("iam: not supported by the local IAM check")

// Evaluate decides req for principal (the role's ARN) and its account
// under AWS's rules for one account: an explicit Deny in any policy wins;
// otherwise an Allow in an identity policy, or in a resource policy that
// names the principal, allows; otherwise the request is denied. A policy
// the check cannot evaluate denies, never allows.
func Evaluate(policies []Policy, principal, account string, req Request) Decision {
	var allow *Decision
	for _, p := range policies {
		for i := range p.Statements {
			s := &p.Statements[i]
			ok, err := s.applies(p.Resource, principal, account, req)
			if err != nil {
				return Decision{Policy: p.Name, Sid: s.Sid, ResourcePolicy: p.Resource,
					Err: fmt.Errorf("%s statement %s: %w", p.Name, sidOr(s.Sid, i), err)}
			}
			if !ok {
				continue
			}
			if s.Effect == Deny {
				return Decision{Explicit: true, Policy: p.Name, Sid: s.Sid, ResourcePolicy: p.Resource}
			}
			if allow == nil {
				allow = &Decision{Allowed: true, Policy: p.Name, Sid: s.Sid, ResourcePolicy: p.Resource}
			}
		}
	}
	if allow != nil {
		return *allow
	}
	return Decision{}
}

func sidOr(sid string, i int) string {
	if sid != "" {
		return sid
	}
	return fmt.Sprintf("#%d", i)
}

// applies reports whether s covers req.
func (s *Statement) applies(resourcePolicy bool, principal, account string, req Request) (bool, error) {
	if s.Effect != Allow && s.Effect != Deny {
		return false, fmt.Errorf("%w: Effect %q", ErrUnsupported, s.Effect)
	}
	if resourcePolicy && !s.names(principal, account) {
		return false, nil
	}
	switch {
	case len(s.Action) > 0 && !anyMatch(s.Action, req.Action, true):
		return false, nil
	case len(s.NotAction) > 0 && anyMatch(s.NotAction, req.Action, true):
		return false, nil
	case len(s.Action) == 0 && len(s.NotAction) == 0:
		return false, fmt.Errorf("%w: a statement without Action or NotAction", ErrUnsupported)
	case len(s.Resource) > 0 && !anyMatch(s.Resource, req.Resource, false):
		return false, nil
	case len(s.NotResource) > 0 && anyMatch(s.NotResource, req.Resource, false):
		return false, nil
	case len(s.Resource) == 0 && len(s.NotResource) == 0 && !resourcePolicy:
		return false, fmt.Errorf("%w: a statement without Resource or NotResource", ErrUnsupported)
	}
	for _, c := range s.Conditions {
		ok, err := c.holds(req.Context)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// names reports whether a resource policy's statement covers the
// principal. An Allow naming the account itself only delegates to the
// account's identity policies (which are evaluated anyway); a Deny naming
// it covers everyone in it.
func (s *Statement) names(principal, account string) bool {
	for _, p := range s.Principal {
		switch {
		case p == "*", p == principal:
			return true
		case s.Effect == Deny && (p == account || strings.HasSuffix(p, ":"+account+":root")):
			return true
		}
	}
	return false
}

func anyMatch(patterns []string, value string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			if glob(strings.ToLower(p), strings.ToLower(value)) {
				return true
			}
		} else if glob(p, value) {
			return true
		}
	}
	return false
}

// glob matches value against an IAM pattern: * any run of characters
// (separators included), ? one character.
func glob(pattern, value string) bool {
	// Iterative matcher with one backtrack point: linear for the patterns
	// policies use.
	p, v := 0, 0
	star, mark := -1, 0
	for v < len(value) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == value[v]):
			p++
			v++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, v
			p++
		case star >= 0:
			p = star + 1
			mark++
			v = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// holds evaluates one condition against the request's keys.
func (c Condition) holds(ctx map[string][]string) (bool, error) {
	op := c.Operator
	set := ""
	if q, rest, ok := strings.Cut(op, ":"); ok {
		if q != "ForAllValues" && q != "ForAnyValue" {
			return false, fmt.Errorf("%w: condition operator %q", ErrUnsupported, c.Operator)
		}
		set, op = q, rest
	}
	ifExists := false
	if base, ok := strings.CutSuffix(op, "IfExists"); ok {
		op, ifExists = base, true
	}
	values, known := ctx[strings.ToLower(c.Key)]
	if !known {
		return false, fmt.Errorf("%w: condition key %s for this call", ErrUnsupported, c.Key)
	}
	present := len(values) > 0
	if op == "Null" {
		if set != "" || ifExists || len(c.Values) == 0 {
			return false, fmt.Errorf("%w: condition operator %q", ErrUnsupported, c.Operator)
		}
		want, err := strconv.ParseBool(c.Values[0])
		if err != nil {
			return false, fmt.Errorf("%w: Null takes true or false, not %q", ErrUnsupported, c.Values[0])
		}
		return want == !present, nil
	}
	match, negated, err := matcher(op)
	if err != nil {
		return false, fmt.Errorf("%w: condition operator %q", err, c.Operator)
	}
	// one is the operator's verdict for one request value: for a negated
	// operator, that the value matches none of the policy's values.
	one := func(v string) (bool, error) {
		for _, p := range c.Values {
			ok, err := match(p, v)
			if err != nil {
				return false, err
			}
			if ok {
				return !negated, nil
			}
		}
		return negated, nil
	}
	switch {
	case set == "ForAllValues":
		// Every value of the request matches; true when it has none (a
		// Scan's dynamodb:LeadingKeys), as in AWS.
		for _, v := range values {
			if ok, err := one(v); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case set == "ForAnyValue":
		for _, v := range values {
			if ok, err := one(v); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case !present:
		// A key the request lacks matches nothing: a positive operator
		// fails, a negated one holds, ...IfExists holds.
		return ifExists || negated, nil
	case negated:
		for _, v := range values {
			if ok, err := one(v); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	default:
		for _, v := range values {
			if ok, err := one(v); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
}

// matcher returns the comparison of an operator (without its set prefix
// and IfExists) and whether the operator is its negation.
func matcher(op string) (func(policy, value string) (bool, error), bool, error) {
	switch op {
	case "StringEquals", "StringNotEquals":
		return func(p, v string) (bool, error) { return p == v, nil }, op == "StringNotEquals", nil
	case "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase":
		return func(p, v string) (bool, error) { return strings.EqualFold(p, v), nil }, op == "StringNotEqualsIgnoreCase", nil
	case "StringLike", "StringNotLike":
		return func(p, v string) (bool, error) { return glob(p, v), nil }, op == "StringNotLike", nil
	case "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike":
		return arnMatch, strings.Contains(op, "Not"), nil
	case "Bool":
		return func(p, v string) (bool, error) { return strings.EqualFold(p, v), nil }, false, nil
	case "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals":
		return numeric(op), op == "NumericNotEquals", nil
	}
	return nil, false, ErrUnsupported
}

// arnMatch compares ARNs component by component (the six colon-separated
// parts), wildcards within a part, as ArnLike and ArnEquals do.
func arnMatch(p, v string) (bool, error) {
	pp, vp := strings.SplitN(p, ":", 6), strings.SplitN(v, ":", 6)
	if len(pp) != 6 || len(vp) != 6 {
		return false, nil
	}
	for i := range pp {
		if !glob(pp[i], vp[i]) {
			return false, nil
		}
	}
	return true, nil
}

func numeric(op string) func(p, v string) (bool, error) {
	return func(p, v string) (bool, error) {
		a, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return false, nil // a value that is not a number matches nothing
		}
		b, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return false, fmt.Errorf("%w: %s takes numbers, not %q", ErrUnsupported, op, p)
		}
		switch op {
		case "NumericLessThan":
			return a < b, nil
		case "NumericLessThanEquals":
			return a <= b, nil
		case "NumericGreaterThan":
			return a > b, nil
		case "NumericGreaterThanEquals":
			return a >= b, nil
		}
		return a == b, nil // Equals, and NotEquals negated by the caller
	}
}
