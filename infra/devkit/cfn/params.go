package cfn

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrParameters reports parameter values the template refuses.
var ErrParameters = errors.New("cfn: parameter values refused")

// CheckParameters reports every value the template's Parameters would
// refuse, as CloudFormation checks them when a stack is deployed: a name
// the template does not declare (listing those it does), a Number that is
// not one or is out of MinValue/MaxValue, a String out of
// MinLength/MaxLength, a value (each element of a list) outside
// AllowedValues or not matching AllowedPattern, with the parameter's
// ConstraintDescription.
func (t *Template) CheckParameters(values map[string]string) error {
	var bad []string
	for _, name := range slices.Sorted(maps.Keys(values)) {
		v := values[name]
		p, ok := t.Parameters[name]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is not a parameter of template.yaml (it has %s)", name, strings.Join(slices.Sorted(maps.Keys(t.Parameters)), ", ")))
			continue
		}
		if err := p.check(v); err != nil {
			why := err.Error()
			if p.ConstraintDescription != "" {
				why += " (" + p.ConstraintDescription + ")"
			}
			bad = append(bad, fmt.Sprintf("%s=%q: %s", name, v, why))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrParameters, strings.Join(bad, "; "))
	}
	return nil
}

func (p Parameter) check(v string) error {
	switch {
	case p.Type == "Number":
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number")
		}
		if p.MinValue != nil && n < *p.MinValue {
			return fmt.Errorf("less than MinValue %v", *p.MinValue)
		}
		if p.MaxValue != nil && n > *p.MaxValue {
			return fmt.Errorf("more than MaxValue %v", *p.MaxValue)
		}
		return p.allowed(v)
	case p.Type == "CommaDelimitedList" || strings.HasPrefix(p.Type, "List<"):
		if v == "" {
			return nil
		}
		for _, e := range strings.Split(v, ",") {
			if err := p.allowed(strings.TrimSpace(e)); err != nil {
				return fmt.Errorf("element %q: %w", e, err)
			}
		}
		return nil
	case p.Type == "String":
		n := utf8.RuneCountInString(v)
		if p.MinLength != nil && n < *p.MinLength {
			return fmt.Errorf("shorter than MinLength %d", *p.MinLength)
		}
		if p.MaxLength != nil && n > *p.MaxLength {
			return fmt.Errorf("longer than MaxLength %d", *p.MaxLength)
		}
		return p.allowed(v)
	}
	return nil // AWS-specific and SSM types: checked against an account, not here
}

func (p Parameter) allowed(v string) error {
	if len(p.AllowedValues) > 0 && !slices.Contains(p.AllowedValues, v) {
		return fmt.Errorf("not one of AllowedValues %s", strings.Join(p.AllowedValues, ", "))
	}
	if p.AllowedPattern != "" {
		// CloudFormation matches the whole value.
		re, err := regexp.Compile(`^(?:` + p.AllowedPattern + `)$`)
		if err != nil {
			return fmt.Errorf("AllowedPattern %q does not compile here: %v", p.AllowedPattern, err)
		}
		if !re.MatchString(v) {
			return fmt.Errorf("does not match AllowedPattern %s", p.AllowedPattern)
		}
	}
	return nil
}
