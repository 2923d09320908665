// Package gosrc finds and parses the repository's own Go source, for the
// tests that hold a rule across every package (which code may call
// WeChat's token endpoints, which metrics the code writes, what a Lambda
// links).
package gosrc

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Root is the directory holding go.mod, found from the test's working
// directory (its package directory) upwards.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("gosrc: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// File is one parsed non-test Go file.
type File struct {
	// Dir is the file's directory relative to the root, slash-separated
	// ("shared/observe").
	Dir string
	AST *ast.File
}

// Files parses, in walk order, the non-test .go files below root whose
// directory (relative to root, slash-separated) keep accepts; nil keeps
// all. Hidden directories, testdata, build and node_modules are never
// entered: the go tool builds none of them. Positions in fset carry the
// files' full paths. A file that does not parse (someone's file mid-edit)
// is an error, so that a check never passes over it unread.
func Files(fset *token.FileSet, root string, mode parser.Mode, keep func(dir string) bool) ([]File, error) {
	var files []File
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "build" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		if keep != nil && !keep(dir) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, mode|parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("cannot check %s: %w", rel, err)
		}
		files = append(files, File{Dir: dir, AST: f})
		return nil
	})
	return files, err
}

// Under is a keep for Files: the directories at or below any of tops.
func Under(tops ...string) func(dir string) bool {
	return func(dir string) bool {
		for _, top := range tops {
			if dir == top || strings.HasPrefix(dir, top+"/") {
				return true
			}
		}
		return false
	}
}
