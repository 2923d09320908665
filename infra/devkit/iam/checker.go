package iam

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Checker decides whether the AWS calls of a template's functions are
// ones their policies allow, in one environment. It is safe for
// concurrent use.
type Checker struct {
	tpl *Template
	env Env

	mu        sync.RWMutex
	roles     map[string]*role // admitted functions, by logical ID
	resources []attached
	tables    map[string]tableKeys // by table name
	secrets   map[string]string    // secret name -> ARN
}

// tableKeys are a table's partition key attribute and each index's.
type tableKeys struct {
	hash    string
	indexes map[string]string
}

// New is a checker for tpl's functions with references resolved by env.
func New(tpl *Template, env Env) *Checker {
	return &Checker{tpl: tpl, env: env, roles: map[string]*role{}, tables: map[string]tableKeys{}, secrets: map[string]string{}}
}

// Admit resolves the policies of function id (its logical ID) in the
// environment, and the template's tables, secrets and resource policies as
// they are now; from then on calls signed with Credentials(id) are held to
// them. Call it again after making more of the template's resources.
func (ch *Checker) Admit(id string) error {
	r := &resolver{tpl: ch.tpl, env: ch.env}
	ro, err := r.functionRole(id)
	if err != nil {
		return err
	}
	res, err := r.resourcePolicies()
	if err != nil {
		return err
	}
	tables := map[string]tableKeys{}
	secrets := map[string]string{}
	for _, rid := range sortedKeys(ch.tpl.Resources) {
		def := ch.tpl.Resources[rid]
		switch def.Type {
		case "AWS::DynamoDB::Table", "AWS::SecretsManager::Secret":
		default:
			continue
		}
		v, err := r.ref(rid)
		name, _ := v.(string)
		var u *unresolved
		if errors.As(err, &u) || name == "" {
			continue // not made here
		}
		if err != nil {
			return err
		}
		if def.Type == "AWS::SecretsManager::Secret" {
			secrets[secretName(name)] = name
			continue
		}
		keys, err := keysOf(&def.Properties)
		if err != nil {
			return fmt.Errorf("iam: %s: %w", rid, err)
		}
		tables[name] = keys
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.roles[id] = ro
	ch.resources = res
	for k, v := range tables {
		ch.tables[k] = v
	}
	for k, v := range secrets {
		ch.secrets[k] = v
	}
	return nil
}

func keysOf(props *yaml.Node) (tableKeys, error) {
	type keyElem struct {
		AttributeName string `yaml:"AttributeName"`
		KeyType       string `yaml:"KeyType"`
	}
	var p struct {
		KeySchema []keyElem `yaml:"KeySchema"`
		Indexes   []struct {
			IndexName string    `yaml:"IndexName"`
			KeySchema []keyElem `yaml:"KeySchema"`
		} `yaml:"GlobalSecondaryIndexes"`
		Local []struct {
			IndexName string    `yaml:"IndexName"`
			KeySchema []keyElem `yaml:"KeySchema"`
		} `yaml:"LocalSecondaryIndexes"`
	}
	if err := props.Decode(&p); err != nil {
		return tableKeys{}, err
	}
	hash := func(ks []keyElem) string {
		for _, k := range ks {
			if k.KeyType == "HASH" {
				return k.AttributeName
			}
		}
		return ""
	}
	out := tableKeys{hash: hash(p.KeySchema), indexes: map[string]string{}}
	if out.hash == "" {
		return out, errors.New("no HASH key in KeySchema")
	}
	for _, ix := range append(p.Indexes, p.Local...) {
		out.indexes[ix.IndexName] = hash(ix.KeySchema)
	}
	return out, nil
}

// secretName is the name in a secret's ARN, without the six random
// characters Secrets Manager appends.
func secretName(arn string) string {
	_, name, ok := strings.Cut(arn, ":secret:")
	if !ok {
		return arn
	}
	if i := len(name) - 7; i > 0 && name[i] == '-' {
		return name[:i]
	}
	return name
}

func (ch *Checker) schema(table string) (tableKeys, error) {
	ch.mu.RLock()
	defer ch.mu.RUnlock()
	k, ok := ch.tables[table]
	if !ok {
		return k, fmt.Errorf("iam: table %s is not one of the template's tables here, so its partition key (for dynamodb:LeadingKeys) is unknown", table)
	}
	return k, nil
}

// secretARN is the ARN of a SecretId: an ARN, a partial ARN or a name.
func (ch *Checker) secretARN(w where, id string) string {
	ch.mu.RLock()
	defer ch.mu.RUnlock()
	if prefix, rest, ok := strings.Cut(id, ":secret:"); ok && strings.HasPrefix(id, "arn:") {
		if secretName(id) != rest {
			return id // a complete ARN, with its random suffix
		}
		// A partial ARN: the secret of that name in the partition, region
		// and account it names, never one elsewhere.
		if arn, ok := ch.secrets[rest]; ok && strings.HasPrefix(arn, prefix+":secret:") {
			return arn
		}
		return id
	}
	if arn, ok := ch.secrets[id]; ok {
		return arn
	}
	return w.arn("secretsmanager", "secret:"+id)
}

// AccessKeyID is the access key id of function id's credentials: the
// check knows the caller by it (the SigV4 Credential of each request).
func AccessKeyID(function string) string { return keyPrefix + function }

const keyPrefix = "fn-"

// Denial is a call the check refused.
type Denial struct {
	Function  string
	Operation string // "dynamodb UpdateItem"
	// Action and Resource are the authorization that failed; empty when
	// the call could not be mapped at all.
	Action, Resource string
	// Message is what the caller gets: AWS's words, then the check's
	// reason.
	Message string
}

// Check decides one request (its body already read). It returns nil when
// the call is allowed.
func (ch *Checker) Check(r *http.Request, body []byte) *Denial {
	d, _ := ch.check(r, body)
	return d
}

// check is Check, with the call as the check read it.
func (ch *Checker) check(r *http.Request, body []byte) (*Denial, call) {
	c := identify(r, body)
	d := &Denial{Operation: strings.TrimSpace(c.service + " " + c.operation)}
	fn, ok := strings.CutPrefix(c.caller, keyPrefix)
	if !ok {
		d.Message = fmt.Sprintf("The security token included in the request is invalid [local IAM check: access key %q is not a function's (iam.AccessKeyID); only functions' calls come this way]", c.caller)
		return d, c
	}
	d.Function = fn
	ch.mu.RLock()
	ro := ch.roles[fn]
	ch.mu.RUnlock()
	if ro == nil {
		d.Message = fmt.Sprintf("The security token included in the request is invalid [local IAM check: function %s was not admitted (Checker.Admit)]", fn)
		return d, c
	}
	if err := ch.requests(&c, r, body); err != nil {
		d.Operation = strings.TrimSpace(c.service + " " + c.operation)
		d.Message = fmt.Sprintf("%s is not authorized to perform: %s [local IAM check: %v]", ch.session(ro, fn), d.Operation, err)
		return d, c
	}
	d.Operation = strings.TrimSpace(c.service + " " + c.operation)
	for _, req := range c.requests {
		ch.globals(req.Context, ro, c.region)
		policies := ro.policies
		ch.mu.RLock()
		for _, a := range ch.resources {
			for _, arn := range a.resources {
				if arn == req.Resource {
					policies = append(policies[:len(policies):len(policies)], a.policy)
				}
			}
		}
		ch.mu.RUnlock()
		dec := Evaluate(policies, ro.arn, ch.env.account(), req)
		if dec.Allowed {
			continue
		}
		d.Action, d.Resource = req.Action, req.Resource
		d.Message = ch.message(ro, fn, req, dec, policies)
		return d, c
	}
	return nil, c
}

// globals adds the global condition keys of every call.
func (ch *Checker) globals(ctx map[string][]string, ro *role, region string) {
	ctx["aws:principalarn"] = []string{ro.arn}
	ctx["aws:principalaccount"] = []string{ch.env.account()}
	ctx["aws:principaltype"] = []string{"AssumedRole"}
	ctx["aws:requestedregion"] = []string{region}
	ctx["aws:securetransport"] = []string{"true"} // Lambda calls AWS over TLS
}

// session is the caller as AWS names it in a denial: the function's role
// session.
func (ch *Checker) session(ro *role, fn string) string {
	name := ro.arn[strings.LastIndexByte(ro.arn, '/')+1:]
	return fmt.Sprintf("User: arn:%s:sts::%s:assumed-role/%s/%s", Partition(ch.env.region()), ch.env.account(), name, fn)
}

// message is AWS's AccessDenied message for req, then why the check
// denied it.
func (ch *Checker) message(ro *role, fn string, req Request, dec Decision, policies []Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is not authorized to perform: %s on resource: %s ", ch.session(ro, fn), req.Action, req.Resource)
	switch {
	case dec.Explicit && dec.ResourcePolicy:
		b.WriteString("with an explicit deny in a resource-based policy")
	case dec.Explicit:
		b.WriteString("with an explicit deny in an identity-based policy")
	default:
		fmt.Fprintf(&b, "because no identity-based policy allows the %s action", req.Action)
	}
	b.WriteString(" [local IAM check of template.yaml: ")
	switch {
	case dec.Err != nil:
		fmt.Fprintf(&b, "cannot evaluate: %v", dec.Err)
	case dec.Explicit:
		fmt.Fprintf(&b, "denied by %s statement %s", dec.Policy, dec.Sid)
	default:
		b.WriteString(ch.nearMiss(fn, req, policies))
	}
	for _, n := range ro.notes {
		fmt.Fprintf(&b, "; %s", n)
	}
	b.WriteString("]")
	return b.String()
}

// nearMiss says why no statement allows req: none names the action on the
// resource, or one does and its condition fails.
func (ch *Checker) nearMiss(fn string, req Request, policies []Policy) string {
	for _, p := range policies {
		for i, s := range p.Statements {
			if s.Effect != Allow || len(s.Conditions) == 0 {
				continue
			}
			bare := s
			bare.Conditions = nil
			if ok, _ := bare.applies(p.Resource, "", "", req); ok {
				return fmt.Sprintf("%s statement %s names %s on this resource, but its Condition does not hold for %s",
					p.Name, sidOr(s.Sid, i), req.Action, describe(req.Context))
			}
		}
	}
	return fmt.Sprintf("no statement of %s's policies allows %s on this resource", fn, req.Action)
}

// describe shows the call's dynamodb:LeadingKeys by their prefix only (up
// to the first #): the rest is a person's id.
func describe(ctx map[string][]string) string {
	keys := ctx[leadingKeys]
	if len(keys) == 0 {
		return "a call without keys"
	}
	shown := make([]string, len(keys))
	for i, k := range keys {
		if j := strings.IndexByte(k, '#'); j >= 0 {
			shown[i] = k[:j+1] + "…"
		} else {
			shown[i] = "…"
		}
	}
	return "dynamodb:LeadingKeys " + strings.Join(shown, ", ")
}
