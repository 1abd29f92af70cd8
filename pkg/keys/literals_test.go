package keys_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestKeysAreSpelledOnlyHere: product code names etcd keys and Docker
// labels through this package, so the layout lives in one place. A string
// literal that starts with "/deis/" or "io.deis." elsewhere (outside tests,
// bench/ and e2e/) fails this test.
func TestKeysAreSpelledOnlyHere(t *testing.T) {
	root := filepath.Join("..", "..")
	var bad []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (rel == "bench" || rel == "e2e" || rel == filepath.Join("pkg", "keys") || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if _, ok := n.(*ast.ImportSpec); ok {
				return false // import paths are github.com/deis/...
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			// A literal that is a key or label, or the start of one
			// ("/deis/apps/" + app); prose that mentions a key is fine.
			if err == nil && (strings.HasPrefix(v, "/deis/") || strings.HasPrefix(v, "io.deis.")) {
				bad = append(bad, rel+": "+lit.Value)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("a key or label spelled outside pkg/keys: %s", b)
	}
}
