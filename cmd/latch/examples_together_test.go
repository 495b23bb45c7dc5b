package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	ordersv1 "github.com/latchauth/latch/gen/latch/example/orders/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
)

// ordersMethodPath checks that path, a gRPC rule or policy prefix of the
// form /package.Service/ or /package.Service/Method, names the example
// orders service and, when it names a method, one the service has.
func ordersMethodPath(t *testing.T, where, path string) {
	t.Helper()
	sd := ordersv1.File_latch_example_orders_v1_orders_proto.Services().ByName("OrdersService")
	service, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !strings.HasPrefix(path, "/") || !ok {
		t.Errorf("%s: %q is not /package.Service/ or /package.Service/Method", where, path)
		return
	}
	if service != string(sd.FullName()) {
		t.Errorf("%s: %q names service %s; the example orders service is %s", where, path, service, sd.FullName())
		return
	}
	if method != "" && sd.Methods().ByName(protoreflect.Name(method)) == nil {
		t.Errorf("%s: %q names method %s, which %s does not have", where, path, method, sd.FullName())
	}
}

// TestDocsExamplesMatchOrdersService: the interceptors snippet in
// docs/interceptors.md and the ext_authz policy example in
// docs/service-mesh.md name the example orders service's real methods and
// require the same role, so that copied together they admit the same
// calls.
func TestDocsExamplesMatchOrdersService(t *testing.T) {
	doc, err := os.ReadFile("../../docs/interceptors.md")
	if err != nil {
		t.Fatal(err)
	}
	requires := regexp.MustCompile(`Require\("([^"]+)",\s*"([^"]+)"\)`).FindAllStringSubmatch(string(doc), -1)
	if len(requires) == 0 {
		t.Fatal("docs/interceptors.md: no interceptors.NewPolicy().Require(...) in the snippet")
	}
	snippetRoles := map[string]bool{}
	for _, m := range requires {
		ordersMethodPath(t, "docs/interceptors.md Require", m[1])
		snippetRoles[m[2]] = true
	}

	var policy struct {
		Rules []struct {
			GRPC  string   `yaml:"grpc"`
			Roles []string `yaml:"roles"`
		} `yaml:"rules"`
	}
	if err := yaml.Unmarshal([]byte(readmeExamples(t)["latch-policy"]), &policy); err != nil {
		t.Fatalf("latch-policy example: %v", err)
	}
	grpcRules := 0
	for _, r := range policy.Rules {
		if r.GRPC == "" {
			continue
		}
		grpcRules++
		ordersMethodPath(t, "docs/service-mesh.md latch-policy grpc rule", r.GRPC)
		if strings.HasSuffix(r.GRPC, "/") && !slices.ContainsFunc(r.Roles, func(role string) bool { return snippetRoles[role] }) {
			t.Errorf("policy rule %s requires %v; the interceptors snippet requires %v", r.GRPC, r.Roles, snippetRoles)
		}
	}
	if grpcRules == 0 {
		t.Error("latch-policy example has no grpc rule for the orders service")
	}
}

// TestBuiltBinariesIgnored: every binary the docs build (`go build -o X`,
// and `go build` of a command without -o) is in .gitignore and
// .dockerignore, so it is neither committed nor copied into the image's
// build context.
func TestBuiltBinariesIgnored(t *testing.T) {
	bins := map[string]bool{"latch-example-orders": true, "latch": true} // plain `go build ./cmd/...` names
	for _, f := range []string{"../../README.md", "../../docs/getting-started.md", "../../docs/interceptors.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`go build -o (\S+)`).FindAllStringSubmatch(string(b), -1) {
			bins[m[1]] = true
		}
	}
	for _, f := range []string{"../../.gitignore", "../../.dockerignore"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for bin := range bins {
			if !slices.Contains(lines, "/"+bin) {
				t.Errorf("%s does not ignore /%s, a binary the docs build", f, bin)
			}
		}
	}
}

// TestDocsExampleUsersDistinct: the users the walkthrough and the orders
// example add are different accounts, so both can be followed in one
// directory without "already exists".
func TestDocsExampleUsersDistinct(t *testing.T) {
	emails := func(f string) map[string]bool {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, m := range regexp.MustCompile(`latch user add --email (\S+)`).FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		if len(out) == 0 {
			t.Fatalf("%s adds no users", f)
		}
		return out
	}
	walkthrough := emails("../../docs/getting-started.md")
	for e := range emails("../../docs/interceptors.md") {
		if walkthrough[e] {
			t.Errorf("%s is added by both the walkthrough and the orders example", e)
		}
	}
}
