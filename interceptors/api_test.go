package interceptors_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// exportedNames lists the exported top-level names and methods declared in
// the non-test files of the package in dir, as "Name" or "Type.Method".
func exportedNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv != nil {
					recv := d.Recv.List[0].Type
					if s, ok := recv.(*ast.StarExpr); ok {
						recv = s.X
					}
					names = append(names, recv.(*ast.Ident).Name+"."+d.Name.Name)
					continue
				}
				names = append(names, d.Name.Name)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							names = append(names, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								names = append(names, n.Name)
							}
						}
					}
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// TestPublicAPI pins the shape a sibling service sees: required settings in
// Config, an AuthFunc for its own middleware chain, one health service name
// and one status type, and nothing that lets it replace the keys or the
// revocation answers Latch publishes (those options are Latch's own, in an
// internal package), nor client credentials (their own package).
func TestPublicAPI(t *testing.T) {
	names := exportedNames(t, ".")
	for _, want := range []string{"Config", "NewVerifier", "Verifier.AuthFunc", "Verifier.UnaryServerInterceptor",
		"Verifier.StreamServerInterceptor", "Verifier.Status", "Status", "HealthService", "Policy", "ClaimsFromContext"} {
		if !slices.Contains(names, want) {
			t.Errorf("exported API lacks %s", want)
		}
	}
	for _, gone := range []string{
		"WithKeySource", "WithRevocationCheck", "EpochKeySource", "RevocationCheck", "ErrRevocationUnavailable", // Latch's own
		"WithIssuer", "WithAudience", "WithJWKSURL", "WithJWKSFromGRPC", "WithStaticJWKS", // required: Config
		"RefreshingCredentials", "NewRefreshingCredentials", "Login", "PasswordLogin", "LoginFunc", "CredentialsOption", // clientcreds
		"CredentialsHealthService", "Health", "Verifier.Health", // one health surface
	} {
		if slices.Contains(names, gone) {
			t.Errorf("exported API still has %s", gone)
		}
	}
	var options []string
	for _, n := range names {
		if strings.HasPrefix(n, "With") {
			options = append(options, n)
		}
	}
	if len(options) > 14 {
		t.Errorf("%d With… options, want at most 14: %v", len(options), options)
	}
}
