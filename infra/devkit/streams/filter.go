package streams

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrPattern reports a filter pattern the emulator cannot apply: it is
// refused rather than passed over, so that a pattern Lambda would read
// differently never lets records through unnoticed.
var ErrPattern = errors.New("streams: filter pattern")

// pattern is one compiled FilterCriteria pattern: an EventBridge event
// pattern over the record as Lambda sends it ({"eventName": ...,
// "dynamodb": {"Keys": ..., "NewImage": {"pk": {"S": ...}}}}), as the
// list of its leaves.
type pattern []leaf

// leaf is what a pattern asks of the values at one path: that one of its
// matchers accepts one of them.
type leaf struct {
	path     []string
	matchers []matcher
}

// matcher accepts a value, or its absence (present false).
type matcher func(v any, present bool) bool

// compile reads a pattern's JSON text. It understands the subset of
// EventBridge patterns a template's FilterCriteria can use here: exact
// values (strings, numbers, booleans, null), prefix, suffix,
// equals-ignore-case, anything-but (values, or a prefix or suffix) and
// exists.
func compile(text string) (pattern, error) {
	var raw map[string]any
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("%w %s: not a JSON object: %v", ErrPattern, text, err)
	}
	p, err := compileObject(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrPattern, text, err)
	}
	return p, nil
}

func compileObject(raw map[string]any, path []string) (pattern, error) {
	var p pattern
	for k, v := range raw {
		at := append(slices.Clip(path), k)
		if strings.HasPrefix(k, "$") {
			return nil, fmt.Errorf("%s: %s is not supported", strings.Join(at, "."), k)
		}
		switch v := v.(type) {
		case map[string]any:
			sub, err := compileObject(v, at)
			if err != nil {
				return nil, err
			}
			p = append(p, sub...)
		case []any:
			if len(v) == 0 {
				return nil, fmt.Errorf("%s: an empty list matches nothing", strings.Join(at, "."))
			}
			l := leaf{path: at}
			for _, e := range v {
				m, err := compileMatcher(e, strings.Join(at, "."))
				if err != nil {
					return nil, err
				}
				l.matchers = append(l.matchers, m)
			}
			p = append(p, l)
		default:
			return nil, fmt.Errorf("%s: a pattern value must be an object or a list, not %v", strings.Join(at, "."), v)
		}
	}
	return p, nil
}

func compileMatcher(e any, at string) (matcher, error) {
	op, ok := e.(map[string]any)
	if !ok {
		if _, isList := e.([]any); isList {
			return nil, fmt.Errorf("%s: a list inside a list", at)
		}
		return func(v any, present bool) bool { return present && v == e }, nil
	}
	if len(op) != 1 {
		return nil, fmt.Errorf("%s: a matcher object has exactly one operator", at)
	}
	for name, arg := range op {
		switch name {
		case "prefix", "suffix", "equals-ignore-case":
			s, ok := arg.(string)
			if !ok {
				return nil, fmt.Errorf("%s: %s takes a string (nested matchers are not supported)", at, name)
			}
			test := stringTest(name, s)
			return func(v any, present bool) bool {
				str, ok := v.(string)
				return present && ok && test(str)
			}, nil
		case "exists":
			want, ok := arg.(bool)
			if !ok {
				return nil, fmt.Errorf("%s: exists takes true or false", at)
			}
			return func(v any, present bool) bool {
				if !present {
					return !want
				}
				_, isObject := v.(map[string]any)
				return !isObject == want
			}, nil
		case "anything-but":
			return anythingBut(arg, at)
		default:
			return nil, fmt.Errorf("%s: operator %q is not supported (exact values, prefix, suffix, equals-ignore-case, anything-but and exists are)", at, name)
		}
	}
	panic("unreachable")
}

func stringTest(op, s string) func(string) bool {
	switch op {
	case "prefix":
		return func(v string) bool { return strings.HasPrefix(v, s) }
	case "suffix":
		return func(v string) bool { return strings.HasSuffix(v, s) }
	}
	return func(v string) bool { return strings.EqualFold(v, s) }
}

// anythingBut matches a present value that is none of arg's: one value, a
// list of them, or {"prefix": p} / {"suffix": s}.
func anythingBut(arg any, at string) (matcher, error) {
	var excluded []any
	switch a := arg.(type) {
	case map[string]any:
		if len(a) == 1 {
			for name, v := range a {
				s, ok := v.(string)
				if (name == "prefix" || name == "suffix") && ok {
					test := stringTest(name, s)
					return func(v any, present bool) bool {
						str, ok := v.(string)
						return present && !(ok && test(str))
					}, nil
				}
			}
		}
		return nil, fmt.Errorf("%s: anything-but takes values, a list of them, or one prefix or suffix", at)
	case []any:
		excluded = a
	default:
		excluded = []any{a}
	}
	for _, e := range excluded {
		switch e.(type) {
		case map[string]any, []any:
			return nil, fmt.Errorf("%s: anything-but lists only plain values", at)
		}
	}
	return func(v any, present bool) bool {
		if !present {
			return false
		}
		if _, isObject := v.(map[string]any); isObject {
			return false
		}
		return !slices.Contains(excluded, v)
	}, nil
}

// match reports whether event (the record decoded from JSON) matches p:
// every leaf accepts one of the values at its path.
func (p pattern) match(event map[string]any) bool {
	for _, l := range p {
		values := collect(event, l.path)
		if !l.accepts(values) {
			return false
		}
	}
	return true
}

func (l leaf) accepts(values []any) bool {
	for _, m := range l.matchers {
		if len(values) == 0 && m(nil, false) {
			return true
		}
		for _, v := range values {
			if m(v, true) {
				return true
			}
		}
	}
	return false
}

// collect is the values at path in v. As EventBridge flattens an event,
// a list on the way (or at the end) stands for each of its elements.
func collect(v any, path []string) []any {
	switch v := v.(type) {
	case []any:
		var out []any
		for _, e := range v {
			out = append(out, collect(e, path)...)
		}
		return out
	case map[string]any:
		if len(path) == 0 {
			return []any{v}
		}
		child, ok := v[path[0]]
		if !ok {
			return nil
		}
		return collect(child, path[1:])
	}
	if len(path) == 0 {
		return []any{v}
	}
	return nil
}
