package observe

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/printer"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"wxbridge/infra/devkit/gosrc"
)

var update = flag.Bool("update", false, "rewrite docs/operations.md's metrics table from the catalogue")

const (
	catalogueFile = "shared/observe/catalogue.go"
	operationsDoc = "docs/operations.md"
	updateCommand = "go test ./shared/observe -run TestOperationsMetricsTable -update"
	tableBegin    = "<!-- metrics table: generated from " + catalogueFile + " by `" + updateCommand + "`; edit the catalogue, not this table -->"
	tableEnd      = "<!-- end of the metrics table -->"
	modulePath    = "wxbridge"
)

// write is one Metrics.Count or Metrics.Value call found in the code.
type write struct {
	pos        string // file:line, relative to the repository
	dir        string // the package's directory, relative to the repository
	call       string // the call as written, for messages
	name, unit string
	dims       []string
}

// TestCatalogueHoldsEveryMetricTheCodeWrites walks every non-test Go file
// of the repository and holds each Metrics.Count and Metrics.Value call to
// the catalogue: its name is catalogued, its unit and dimension set are the
// catalogued ones, and a call in functions/<name>/ is by a catalogued
// writer. Every entry and dimension set must also be written by some code,
// so the catalogue (and the table made from it) never lists a metric that
// no longer exists.
func TestCatalogueHoldsEveryMetricTheCodeWrites(t *testing.T) {
	root := gosrc.Root(t)
	writes, imports, problems := findWrites(t, root)
	linkers := func(dir string) []string { return linkedBy(imports, dir) }
	for _, p := range problems {
		t.Error(p)
	}
	if len(writes) < 30 {
		t.Fatalf("found only %d metric writes: the Metrics calls have changed shape and this test must learn it", len(writes))
	}

	written := map[string]map[string]bool{} // name -> dimension set keys written
	unknown := map[string][]write{}
	var unknownOrder []string
	for _, w := range writes {
		m, ok := Lookup(w.name)
		if !ok {
			if unknown[w.name] == nil {
				unknownOrder = append(unknownOrder, w.name)
			}
			unknown[w.name] = append(unknown[w.name], w)
			continue
		}
		if written[w.name] == nil {
			written[w.name] = map[string]bool{}
		}
		written[w.name][setKey(w.dims)] = true
		if w.unit != m.Unit {
			t.Errorf("%s: %s writes %s in unit %q; the catalogue says %q. One metric has one unit: fix the call, or Unit of %q in %s (and run %s)",
				w.pos, w.call, w.name, w.unit, m.Unit, w.name, catalogueFile, updateCommand)
		}
		if !hasSet(m.Dimensions, w.dims) {
			t.Errorf("%s: %s writes %s with dimensions %s; the catalogue lists %s. CloudWatch keeps each dimension set as a separate metric, "+
				"so alarms and queries on the listed set miss these writes: use a listed set in the call, or change Dimensions of %q in %s to %s "+
				"(and check template.yaml's alarms on %s; then run %s)",
				w.pos, w.call, w.name, setString(w.dims), setsString(m.Dimensions), w.name, catalogueFile, dimsLiteral(w.dims), w.name, updateCommand)
		}
		if fn, ok := functionOf(w.dir); ok && !slices.Contains(m.Writers, fn) {
			t.Errorf("%s: %s is written by %s, which is not among its Writers %v: add %s to Writers of %q in %s (and run %s)",
				w.pos, w.name, fn, m.Writers, constFor(fn), w.name, catalogueFile, updateCommand)
		}
	}
	for _, name := range unknownOrder {
		ws := unknown[name]
		var at, fns []string
		dimSets := map[string][]string{}
		var setOrder []string
		for _, w := range ws {
			at = append(at, w.pos+": "+w.call)
			for _, fn := range linkers(w.dir) {
				if !slices.Contains(fns, fn) {
					fns = append(fns, fn)
				}
			}
			if _, ok := dimSets[setKey(w.dims)]; !ok {
				dimSets[setKey(w.dims)] = w.dims
				setOrder = append(setOrder, setKey(w.dims))
			}
		}
		dl := dimsLiteral(ws[0].dims)
		if len(setOrder) > 1 {
			var lits []string
			for _, k := range setOrder {
				lits = append(lits, fmt.Sprintf("%#v", dimSets[k]))
			}
			dl = "[][]string{" + strings.Join(lits, ", ") + "} /* better: one set */"
		}
		var consts []string
		for _, fn := range fns {
			consts = append(consts, constFor(fn))
		}
		t.Errorf("metric %q is written but not catalogued:\n\t%s\nAdd it to Catalogue in %s:\n"+
			"\t{Name: %q, Unit: %q, Dimensions: %s, Writers: []string{%s},\n\t\tCounts: \"<what one data point means, with the values each dimension takes>\"},\n"+
			"then regenerate %s's table: %s",
			name, strings.Join(at, "\n\t"), catalogueFile, name, ws[0].unit, dl, strings.Join(consts, ", "), operationsDoc, updateCommand)
	}

	seen := map[string]bool{}
	for _, m := range Catalogue {
		switch {
		case seen[m.Name]:
			t.Errorf("%s: %q is catalogued twice", catalogueFile, m.Name)
		case m.Unit == "" || m.Counts == "" || len(m.Writers) == 0:
			t.Errorf("%s: %q needs a Unit, Writers and what it Counts", catalogueFile, m.Name)
		case written[m.Name] == nil:
			t.Errorf("%s: %q is catalogued but no code writes it: remove it from Catalogue (and run %s)", catalogueFile, m.Name, updateCommand)
		}
		seen[m.Name] = true
		sets := m.Dimensions
		if len(sets) == 0 {
			sets = [][]string{nil}
		}
		for _, s := range sets {
			if written[m.Name] != nil && !written[m.Name][setKey(s)] {
				t.Errorf("%s: %q lists the dimension set %s, which no code writes: remove it (and run %s)", catalogueFile, m.Name, setString(s), updateCommand)
			}
		}
		var could []string // the functions that link code writing m
		for _, w := range writes {
			if w.name == m.Name {
				could = append(could, linkers(w.dir)...)
			}
		}
		for _, fn := range m.Writers {
			if !slices.Contains(Functions, fn) {
				t.Errorf("%s: %q names writer %q, which is not a function", catalogueFile, m.Name, fn)
			} else if written[m.Name] != nil && !slices.Contains(could, fn) {
				t.Errorf("%s: %q names writer %s, which links none of the code that writes it: remove it from Writers (and run %s)", catalogueFile, m.Name, fn, updateCommand)
			}
		}
	}

	mains, _ := filepath.Glob(filepath.Join(root, "functions", "*", "main.go"))
	var dirs []string
	for _, m := range mains {
		dirs = append(dirs, filepath.Base(filepath.Dir(m)))
	}
	if !slices.Equal(slices.Sorted(slices.Values(dirs)), slices.Sorted(slices.Values(Functions))) {
		t.Errorf("Functions in %s = %v, but functions/ holds %v", catalogueFile, Functions, dirs)
	}
}

// TestOperationsMetricsTable holds docs/operations.md's metrics table to
// the catalogue; with -update it rewrites the table.
func TestOperationsMetricsTable(t *testing.T) {
	file := filepath.Join(gosrc.Root(t), operationsDoc)
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := bytes.Index(doc, []byte(tableBegin)), bytes.Index(doc, []byte(tableEnd))
	if begin < 0 || end < begin {
		t.Fatalf("%s has no metrics table between the lines\n%s\n%s\n(put them, on lines of their own, where the table goes, and run %s)", operationsDoc, tableBegin, tableEnd, updateCommand)
	}
	from := begin + len(tableBegin)
	want := "\n" + MarkdownTable() + "\n"
	if got := string(doc[from:end]); got != want {
		if *update {
			out := slices.Concat(doc[:from:from], []byte(want), doc[end:])
			if err := os.WriteFile(file, out, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote the metrics table of %s", operationsDoc)
			return
		}
		t.Errorf("%s's metrics table differs from the catalogue in %s: edit the catalogue, not the table, then run\n\t%s\nwant:\n%s", operationsDoc, catalogueFile, updateCommand, want)
	}
}

// MarkdownTable is docs/operations.md's metrics table.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| metric | unit | dimensions | written by | counts |\n|---|---|---|---|---|\n")
	for _, m := range Catalogue {
		var sets []string
		for _, s := range m.Dimensions {
			if len(s) == 0 {
				sets = append(sets, "none")
				continue
			}
			sets = append(sets, "`"+strings.Join(s, "`, `")+"`")
		}
		if len(sets) == 0 {
			sets = []string{"none"}
		}
		writers := strings.Join(m.Writers, ", ")
		if slices.Equal(m.Writers, Functions) {
			writers = "every function"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", m.Name, m.Unit, strings.Join(sets, "; or "), writers, m.Counts)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// findWrites parses every non-test Go file under functions/, shared/ and
// infra/ and returns its metric writes and what it could not check.
//
// A metric write is a Count or Value call on an expression named metrics
// or Metrics (h.Metrics, s.metrics, metrics); the check below holds every
// *observe.Metrics and wechat.Counter to that naming, so no write escapes
// by being called on something named otherwise.
func findWrites(t *testing.T, root string) ([]write, map[string][]string, []string) {
	t.Helper()
	type file struct {
		dir string
		f   *ast.File
	}
	var (
		files    []file
		fset     = token.NewFileSet()
		consts   = map[string]map[string]string{} // dir -> const name -> value
		writes   []write
		problems []string
		imported = map[string][]string{} // dir -> the repository's directories it imports
	)
	parsed, err := gosrc.Files(fset, root, 0, gosrc.Under("functions", "shared", "infra"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pf := range parsed {
		dir, f := pf.Dir, pf.AST
		files = append(files, file{dir, f})
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i]); ok {
							if consts[dir] == nil {
								consts[dir] = map[string]string{}
							}
							consts[dir][n.Name] = s
						}
					}
				}
			}
		}
	}

	for _, fl := range files {
		imports := map[string]string{} // local name -> directory in the repository
		for _, im := range fl.f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if !strings.HasPrefix(p, modulePath+"/") {
				continue
			}
			name := path.Base(p)
			if im.Name != nil {
				name = im.Name.Name
			}
			imports[name] = strings.TrimPrefix(p, modulePath+"/")
			if !slices.Contains(imported[fl.dir], imports[name]) {
				imported[fl.dir] = append(imported[fl.dir], imports[name])
			}
		}
		// resolve is the string value of a literal or a constant.
		resolve := func(e ast.Expr) (string, bool) {
			switch e := e.(type) {
			case *ast.BasicLit:
				return stringLit(e)
			case *ast.Ident:
				s, ok := consts[fl.dir][e.Name]
				return s, ok
			case *ast.SelectorExpr:
				if pkg, ok := e.X.(*ast.Ident); ok && imports[pkg.Name] != "" {
					s, ok := consts[imports[pkg.Name]][e.Sel.Name]
					return s, ok
				}
			}
			return "", false
		}
		ast.Inspect(fl.f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				if isMetricsType(n.Type, fl.dir) {
					for _, name := range n.Names {
						if !isMetricsName(name.Name) && fl.dir != "shared/observe" {
							problems = append(problems, fmt.Sprintf("%s: %s holds metrics but is named %q: name it metrics or Metrics, so that the catalogue test sees its writes", pos(fset, root, name), name.Name, name.Name))
						}
					}
				}
			case *ast.AssignStmt:
				for i, rhs := range n.Rhs {
					if c, ok := rhs.(*ast.CallExpr); ok && isNewMetrics(c.Fun) && i < len(n.Lhs) {
						if id, ok := n.Lhs[i].(*ast.Ident); ok && !isMetricsName(id.Name) {
							problems = append(problems, fmt.Sprintf("%s: %s holds metrics but is named %q: name it metrics, so that the catalogue test sees its writes", pos(fset, root, id), id.Name, id.Name))
						}
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Count" && sel.Sel.Name != "Value") || !isMetricsName(lastName(sel.X)) {
					return true
				}
				w := write{pos: pos(fset, root, n), dir: fl.dir, call: "Metrics." + sel.Sel.Name + "(" + argsString(fset, n.Args) + ")", unit: "Count"}
				first := 1 // Count(name, key, value, ...)
				if sel.Sel.Name == "Value" {
					first = 3 // Value(name, unit, v, key, value, ...)
				}
				if len(n.Args) < first {
					problems = append(problems, w.pos+": "+w.call+": too few arguments for a metric write")
					return true
				}
				var ok1 bool
				if w.name, ok1 = resolve(n.Args[0]); !ok1 {
					problems = append(problems, w.pos+": "+w.call+": the metric name must be a string literal or a constant, so that the catalogue test can check it")
					return true
				}
				if sel.Sel.Name == "Value" {
					if w.unit, ok1 = resolve(n.Args[1]); !ok1 {
						problems = append(problems, w.pos+": "+w.call+": the unit must be a string literal or a constant")
						return true
					}
				}
				if n.Ellipsis.IsValid() || (len(n.Args)-first)%2 != 0 {
					problems = append(problems, w.pos+": "+w.call+": pass the dimensions as key, value pairs written out, so that the catalogue test can check their keys")
					return true
				}
				for i := first; i < len(n.Args); i += 2 {
					k, ok := resolve(n.Args[i])
					if !ok {
						problems = append(problems, w.pos+": "+w.call+": a dimension name must be a string literal or a constant")
						return true
					}
					w.dims = append(w.dims, k)
				}
				writes = append(writes, w)
			}
			return true
		})
	}
	return writes, imported, problems
}

// linkedBy is the functions whose binary links the package in dir: those
// whose functions/<name> package imports it, directly or not.
func linkedBy(imported map[string][]string, dir string) []string {
	var out []string
	for _, fn := range Functions {
		seen := map[string]bool{}
		todo := []string{"functions/" + fn}
		for len(todo) > 0 {
			d := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if seen[d] {
				continue
			}
			seen[d] = true
			todo = append(todo, imported[d]...)
		}
		if seen[dir] {
			out = append(out, fn)
		}
	}
	return out
}

// isMetricsType reports whether e is *observe.Metrics or wechat.Counter,
// as written in directory dir.
func isMetricsType(e ast.Expr, dir string) bool {
	if st, ok := e.(*ast.StarExpr); ok {
		e = st.X
	}
	switch e := e.(type) {
	case *ast.SelectorExpr:
		pkg, ok := e.X.(*ast.Ident)
		return ok && (pkg.Name == "observe" && e.Sel.Name == "Metrics" || pkg.Name == "wechat" && e.Sel.Name == "Counter")
	case *ast.Ident:
		return dir == "shared/wechat" && e.Name == "Counter"
	}
	return false
}

func isNewMetrics(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "observe" && sel.Sel.Name == "NewMetrics"
}

func isMetricsName(s string) bool { return s == "metrics" || s == "Metrics" }

// lastName is the last identifier of x, y.x or f().x.
func lastName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

func pos(fset *token.FileSet, root string, n ast.Node) string {
	p := fset.Position(n.Pos())
	rel, err := filepath.Rel(root, p.Filename)
	if err != nil {
		rel = p.Filename
	}
	return fmt.Sprintf("%s:%d", filepath.ToSlash(rel), p.Line)
}

func argsString(fset *token.FileSet, args []ast.Expr) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteString(", ")
		}
		if err := printer.Fprint(&b, fset, a); err != nil {
			b.WriteString("?")
		}
	}
	return b.String()
}

// functionOf is the function whose own directory dir is in.
func functionOf(dir string) (string, bool) {
	parts := strings.Split(dir, "/")
	if len(parts) >= 2 && parts[0] == "functions" {
		return parts[1], true
	}
	return "", false
}

func constFor(fn string) string {
	for _, c := range []struct{ name, fn string }{
		{"fnLogin", fnLogin}, {"fnOAuthCallback", fnOAuthCallback}, {"fnFollowEvent", fnFollowEvent},
		{"fnSendWorker", fnSendWorker}, {"fnTokenRefresher", fnTokenRefresher}, {"fnFollowerSync", fnFollowerSync},
	} {
		if c.fn == fn {
			return c.name
		}
	}
	return strconv.Quote(fn)
}

func dimsLiteral(d []string) string {
	if len(d) == 0 {
		return "none"
	}
	q := make([]string, len(d))
	for i, s := range d {
		q[i] = strconv.Quote(s)
	}
	return "dims(" + strings.Join(q, ", ") + ")"
}

func setKey(d []string) string { return strings.Join(slices.Sorted(slices.Values(d)), ",") }

func hasSet(sets [][]string, d []string) bool {
	if len(sets) == 0 {
		return len(d) == 0
	}
	for _, s := range sets {
		if setKey(s) == setKey(d) {
			return true
		}
	}
	return false
}

func setString(d []string) string {
	if len(d) == 0 {
		return "none (function only)"
	}
	return "[" + strings.Join(d, " ") + "]"
}

func setsString(sets [][]string) string {
	if len(sets) == 0 {
		return setString(nil)
	}
	var out []string
	for _, s := range sets {
		out = append(out, setString(s))
	}
	return strings.Join(out, " or ")
}
