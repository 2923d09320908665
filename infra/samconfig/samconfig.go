// Package samconfig reads the SAM CLI's samconfig.toml the way `sam build`
// and `sam deploy --config-env` read it: environments of commands of
// options, a command's own table before the environment's global one, and
// parameter_overrides parsed as the CLI parses --parameter-overrides.
//
// It understands the part of TOML a samconfig uses (tables, strings, bools,
// numbers, arrays of strings, comments) and refuses anything else with the
// line, rather than read a file differently from the SAM CLI.
package samconfig

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// File is a parsed samconfig.toml.
type File struct {
	// tables maps "env.command.parameters" to its options, each a string,
	// a []string, a bool, or a number kept as its text.
	tables map[string]map[string]any
	order  []string // table names in file order
}

// Load reads and parses the file at path.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Environments lists the environments the file configures, in file order.
func (f *File) Environments() []string {
	var envs []string
	for _, t := range f.order {
		env, _, _ := strings.Cut(t, ".")
		if !slices.Contains(envs, env) {
			envs = append(envs, env)
		}
	}
	return envs
}

// Value returns option key as command cmd ("deploy", "build") sees it in
// env: from [env.cmd.parameters], else from [env.global.parameters].
func (f *File) Value(env, cmd, key string) (any, bool) {
	for _, t := range []string{env + "." + cmd + ".parameters", env + ".global.parameters"} {
		if v, ok := f.tables[t][key]; ok {
			return v, true
		}
	}
	return nil, false
}

// String returns a string option as command cmd sees it in env ("" when
// absent); an option of another type is an error.
func (f *File) String(env, cmd, key string) (string, error) {
	v, ok := f.Value(env, cmd, key)
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("[%s] %s: want a string, have %v", env, key, v)
	}
	return s, nil
}

// ParameterOverrides returns the template parameters env's
// parameter_overrides gives command cmd, whether it is one string of
// Key=Value pairs or a list of them. ok is false when env sets none.
func (f *File) ParameterOverrides(env, cmd string) (params map[string]string, ok bool, err error) {
	v, ok := f.Value(env, cmd, "parameter_overrides")
	if !ok {
		return map[string]string{}, false, nil
	}
	var items []string
	switch v := v.(type) {
	case string:
		items = []string{v}
	case []string:
		items = v
	default:
		return nil, true, fmt.Errorf("[%s] parameter_overrides: want a string or a list of strings, have %v", env, v)
	}
	params = map[string]string{}
	for _, item := range items {
		kv, err := ParseOverrides(item)
		if err != nil {
			return nil, true, fmt.Errorf("[%s] parameter_overrides: %w", env, err)
		}
		for _, p := range kv {
			if _, dup := params[p.Key]; dup {
				return nil, true, fmt.Errorf("[%s] parameter_overrides: %s is given twice", env, p.Key)
			}
			params[p.Key] = p.Value
		}
	}
	return params, true, nil
}

// Override is one Key=Value of a parameter_overrides string.
type Override struct{ Key, Value string }

// overrideRE is one Key=Value as the SAM CLI's CfnParameterOverridesType
// matches it: a key of letters, digits and quotes, then a double-quoted,
// single-quoted or bare value (no spaces or double quotes unless escaped).
var overrideRE = regexp.MustCompile(`^([A-Za-z0-9"']+)=("(?:\\.|[^"\\]+)*"|'(?:\\.|[^'\\]+)*'|(?:\\.|[^ "\\]+)+)`)

// longOverrideRE is the CLI's other form of one pair,
// ParameterKey=Key,ParameterValue=Value, which it prefers: a string with
// one such pair anywhere is read in that form only.
var longOverrideRE = regexp.MustCompile(`^ParameterKey=([A-Za-z0-9"']+),ParameterValue=("(?:\\.|[^"\\]+)*"|'(?:\\.|[^'\\]+)*'|(?:\\.|[^ "\\]+)+)`)

// ParseOverrides parses a --parameter-overrides string, "Key=Value
// Other=\"a value\"" (or "ParameterKey=Key,ParameterValue=Value ..."), as
// the SAM CLI does: wrapping quotes removed, "\ ", "\"" and "\'"
// unescaped. Where the CLI would silently skip what it cannot match (in a
// string of the long form, any Key=Value pair), this is an error, as is a
// key given twice.
func ParseOverrides(s string) ([]Override, error) {
	var out []Override
	seen := map[string]bool{}
	rest := strings.TrimSpace(s)
	re, form := overrideRE, "Key=Value pairs"
	if strings.Contains(rest, "ParameterKey=") && strings.Contains(rest, ",ParameterValue=") {
		re, form = longOverrideRE, "ParameterKey=Key,ParameterValue=Value pairs (the SAM CLI reads no Key=Value pair beside them)"
	}
	for rest != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil || (len(m[0]) < len(rest) && rest[len(m[0])] != ' ') {
			return nil, fmt.Errorf("cannot read %q: want %s separated by spaces, with \"double quotes\" around a value that has spaces", rest, form)
		}
		key := unquote(m[1])
		if seen[key] {
			return nil, fmt.Errorf("%s is given twice", key)
		}
		seen[key] = true
		out = append(out, Override{Key: key, Value: unquote(m[2])})
		rest = strings.TrimLeft(rest[len(m[0]):], " ")
	}
	return out, nil
}

// unquote is the SAM CLI's _unquote_wrapped_quotes.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	return strings.NewReplacer(`\ `, " ", `\"`, `"`, `\'`, "'").Replace(v)
}

// Parse parses samconfig TOML.
func Parse(src []byte) (*File, error) {
	if !utf8.Valid(src) {
		return nil, errors.New("not UTF-8")
	}
	p := &parser{src: string(src), line: 1}
	f := &File{tables: map[string]map[string]any{}}
	table := "" // the root table: version = 0.1
	f.tables[table] = map[string]any{}
	for {
		p.skipBlank()
		if p.eof() {
			return f, nil
		}
		if p.peek() == '[' {
			name, err := p.header()
			if err != nil {
				return nil, err
			}
			if _, dup := f.tables[name]; dup && slices.Contains(f.order, name) {
				return nil, p.errorf("table [%s] defined twice", name)
			}
			if _, ok := f.tables[name]; !ok {
				f.tables[name] = map[string]any{}
			}
			f.order = append(f.order, name)
			table = name
		} else {
			key, val, err := p.keyValue()
			if err != nil {
				return nil, err
			}
			if _, dup := f.tables[table][key]; dup {
				return nil, p.errorf("%s set twice in [%s]", key, table)
			}
			f.tables[table][key] = val
		}
		if err := p.endOfLine(); err != nil {
			return nil, err
		}
	}
}

type parser struct {
	src  string
	pos  int
	line int
}

func (p *parser) eof() bool  { return p.pos >= len(p.src) }
func (p *parser) peek() byte { return p.src[p.pos] }

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.line, fmt.Sprintf(format, args...))
}

// skipBlank skips spaces, newlines and comments.
func (p *parser) skipBlank() {
	for !p.eof() {
		switch c := p.peek(); {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '#':
			for !p.eof() && p.peek() != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

// skipSpace skips spaces within a line.
func (p *parser) skipSpace() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.pos++
	}
}

// endOfLine accepts what may follow a value or header: spaces, a comment,
// then a newline or the end.
func (p *parser) endOfLine() error {
	p.skipSpace()
	if !p.eof() && p.peek() == '#' {
		for !p.eof() && p.peek() != '\n' {
			p.pos++
		}
	}
	if !p.eof() && p.peek() == '\r' {
		p.pos++
	}
	if p.eof() {
		return nil
	}
	if p.peek() != '\n' {
		return p.errorf("unexpected %q after the value", p.rest())
	}
	return nil
}

func (p *parser) rest() string {
	end := strings.IndexByte(p.src[p.pos:], '\n')
	if end < 0 {
		return p.src[p.pos:]
	}
	return p.src[p.pos : p.pos+end]
}

func (p *parser) header() (string, error) {
	p.pos++ // [
	if !p.eof() && p.peek() == '[' {
		return "", p.errorf("arrays of tables ([[...]]) are not part of a samconfig")
	}
	end := strings.IndexByte(p.rest(), ']')
	if end < 0 {
		return "", p.errorf("table header without ]")
	}
	raw := p.src[p.pos : p.pos+end]
	p.pos += end + 1
	var parts []string
	for part := range strings.SplitSeq(raw, ".") {
		part = strings.TrimSpace(part)
		if !isBareKey(part) {
			return "", p.errorf("table name [%s]: only bare keys (letters, digits, _ and -) are read", raw)
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "."), nil
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (p *parser) keyValue() (string, any, error) {
	start := p.pos
	for !p.eof() && p.peek() != '=' && p.peek() != '\n' {
		p.pos++
	}
	key := strings.TrimSpace(p.src[start:p.pos])
	if p.eof() || p.peek() != '=' {
		return "", nil, p.errorf("want key = value, have %q", key)
	}
	if !isBareKey(key) {
		return "", nil, p.errorf("key %q: only bare keys (letters, digits, _ and -) are read", key)
	}
	p.pos++ // =
	p.skipSpace()
	v, err := p.value()
	return key, v, err
}

func (p *parser) value() (any, error) {
	if p.eof() {
		return nil, p.errorf("value missing")
	}
	switch c := p.peek(); {
	case c == '"' || c == '\'':
		return p.str()
	case c == '[':
		return p.array()
	default:
		start := p.pos
		for !p.eof() && !strings.ContainsRune(" \t\r\n#,]", rune(p.peek())) {
			p.pos++
		}
		word := p.src[start:p.pos]
		switch {
		case word == "true":
			return true, nil
		case word == "false":
			return false, nil
		case isNumber(word):
			return word, nil
		}
		return nil, p.errorf("cannot read the value %q (strings need quotes)", word)
	}
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	return err == nil
}

// str reads a basic ("...") or literal ('...') one-line string.
func (p *parser) str() (string, error) {
	q := p.peek()
	if strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3)) {
		return "", p.errorf("multi-line strings are not part of a samconfig")
	}
	p.pos++
	var b strings.Builder
	for {
		if p.eof() || p.peek() == '\n' {
			return "", p.errorf("string not closed on its line")
		}
		c := p.peek()
		p.pos++
		switch {
		case c == q:
			return b.String(), nil
		case c == '\\' && q == '"':
			if err := p.escape(&b); err != nil {
				return "", err
			}
		default:
			b.WriteByte(c)
		}
	}
}

func (p *parser) escape(b *strings.Builder) error {
	if p.eof() {
		return p.errorf("string not closed on its line")
	}
	c := p.peek()
	p.pos++
	simple := map[byte]string{'"': `"`, '\\': `\`, 'b': "\b", 't': "\t", 'n': "\n", 'f': "\f", 'r': "\r"}
	if s, ok := simple[c]; ok {
		b.WriteString(s)
		return nil
	}
	n := map[byte]int{'u': 4, 'U': 8}[c]
	if n == 0 || p.pos+n > len(p.src) {
		return p.errorf(`unknown escape \%c`, c)
	}
	r, err := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 32)
	if err != nil || !utf8.ValidRune(rune(r)) {
		return p.errorf(`bad escape \%c%s`, c, p.src[p.pos:p.pos+n])
	}
	p.pos += n
	b.WriteRune(rune(r))
	return nil
}

// array reads an array of strings, which may span lines and hold comments
// and a trailing comma.
func (p *parser) array() ([]string, error) {
	p.pos++ // [
	out := []string{}
	for {
		p.skipBlank()
		if p.eof() {
			return nil, p.errorf("array not closed")
		}
		if p.peek() == ']' {
			p.pos++
			return out, nil
		}
		if c := p.peek(); c != '"' && c != '\'' {
			return nil, p.errorf("arrays of strings only: cannot read %q", p.rest())
		}
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		p.skipBlank()
		if p.eof() {
			return nil, p.errorf("array not closed")
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
		default:
			return nil, p.errorf("want , or ] in the array, have %q", p.rest())
		}
	}
}
