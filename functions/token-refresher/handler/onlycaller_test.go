package handler

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"wxbridge/infra/devkit/gosrc"
)

// mayCallTokenEndpoints are the only directories whose non-test code may
// call WeChat's token endpoints: the client that wraps them, the sandbox
// that plays them, the shared test environment (development only: it fills
// the token secrets from the sandbox as the refresher would, and no Lambda
// links infra/devkit), and this function. Everything else, in particular
// shared/tokens with the refresher's rules, gets tokens through the token
// secrets, so that only the refresher's egress IP must be whitelisted and
// no second caller can invalidate the stored token.
var mayCallTokenEndpoints = []string{
	"shared/wechat",
	"infra/devkit/sandbox",
	"infra/devkit/testenv",
	"functions/token-refresher",
	"functions/token-refresher/handler",
}

// tokenEndpointCalls lists, as "file:line: what", every place in the non-test
// Go files under root that calls a token endpoint: a method call named
// StableToken, a call of wechat.Client.Token's shape (a Token method with
// three arguments; TokenSource.Token takes two), or a string naming either
// endpoint's path.
func tokenEndpointCalls(root string, allowed []string) ([]string, error) {
	fset := token.NewFileSet()
	files, err := gosrc.Files(fset, root, 0, func(dir string) bool { return !slices.Contains(allowed, dir) })
	if err != nil {
		return nil, err
	}
	var found []string
	for _, f := range files {
		ast.Inspect(f.AST, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					break
				}
				if name := sel.Sel.Name; name == "StableToken" || (name == "Token" && len(n.Args) == 3) {
					found = append(found, fmt.Sprintf("%s: calls %s", fset.Position(n.Pos()), name))
				}
			case *ast.BasicLit:
				if n.Kind != token.STRING {
					break
				}
				if s, err := strconv.Unquote(n.Value); err == nil && (strings.Contains(s, "cgi-bin/token") || strings.Contains(s, "cgi-bin/stable_token")) {
					found = append(found, fmt.Sprintf("%s: names %s", fset.Position(n.Pos()), s))
				}
			}
			return true
		})
	}
	return found, nil
}

func TestOnlyTheRefresherCallsTokenEndpoints(t *testing.T) {
	found, err := tokenEndpointCalls(gosrc.Root(t), mayCallTokenEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Fatalf("only the token-refresher may call WeChat's token endpoints; use shared/tokens instead:\n%s", strings.Join(found, "\n"))
	}
}

// The check itself finds each kind of call, and lets the allowed
// directories and tests through.
func TestTokenEndpointCallsCheck(t *testing.T) {
	root := t.TempDir()
	write := func(rel, src string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("functions/send/a.go", `package send
func f(c C, s S) {
	c.StableToken(ctx, "wx", "secret", false)
	c.Token(ctx, "wx", "secret")
	s.Token(ctx, "wx") // a TokenSource: fine
}`)
	write("functions/push/b.go", "package push\nconst u = `https://api.weixin.qq.com/cgi-bin/stable_token`\nvar v = \"/cgi-bin/token?grant_type=client_credential\"\n")
	write("functions/push/b_test.go", "package push\nvar w = \"/cgi-bin/token\"\n")
	write("functions/token-refresher/handler/h.go", "package handler\nfunc g(c C) { c.StableToken(ctx, a, s, true) }\n")
	found, err := tokenEndpointCalls(root, mayCallTokenEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"push/b.go:2:11: names", "push/b.go:3:9: names", "send/a.go:3:2: calls StableToken", "send/a.go:4:2: calls Token"} // in walk order
	if len(found) != len(want) {
		t.Fatalf("found %d:\n%s", len(found), strings.Join(found, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(found[i], w) {
			t.Errorf("finding %d = %q, want it to contain %q", i, found[i], w)
		}
	}
	write("functions/broken/c.go", "package broken\nfunc {")
	if _, err := tokenEndpointCalls(root, mayCallTokenEndpoints); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an unparsable file must fail the check, got %v", err)
	}
}

// The allow-list above trusts infra/devkit because no Lambda links it: no
// non-test file under functions/ or shared/ imports anything under infra/.
func TestLambdasDoNotLinkTheDevKit(t *testing.T) {
	fset := token.NewFileSet()
	files, err := gosrc.Files(fset, gosrc.Root(t), parser.ImportsOnly, gosrc.Under("functions", "shared"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, imp := range f.AST.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, "wxbridge/infra/") {
				t.Errorf("%s imports %s: Lambdas must not link development code", fset.Position(imp.Pos()), p)
			}
		}
	}
}
