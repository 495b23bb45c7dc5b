package extauthz

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testIssuer is the issuer the policies of these tests are parsed for.
const testIssuer = "https://latch.test"

func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(doc), testIssuer)
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

// TestPolicyMatching: exact beats prefix, longer prefix beats shorter, a
// rule naming the method beats one that does not, unmatched is nil.
func TestPolicyMatching(t *testing.T) {
	p, err := LoadPolicy("testdata/policy.yaml", testIssuer)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path string
		public       bool
		roles        string // joined; "-" for no match
	}{
		{"GET", "/healthz", true, ""},
		{"GET", "/healthz/x", false, "-"},
		{"GET", "/public/a/b", true, ""},
		{"GET", "/api/orders/1", false, "orders:read"},
		{"HEAD", "/api/orders/1", false, "orders:read"},
		{"POST", "/api/orders/1", false, "orders:write"},
		{"DELETE", "/api/orders/", false, "orders:write"},
		{"GET", "/api/orders", false, "orders:read"}, // the prefix without its slash
		{"delete", "/api/orders", false, "orders:write"},
		{"GET", "/healthz/", false, "-"}, // public rules are not widened
		{"GET", "/api/me/", false, ""},
		{"POST", "/orders.v1.Orders/GetOrder", false, "orders:read"},
		{"POST", "/orders.v1.Orders/CancelOrder", false, "orders:write"},
		{"POST", "/orders.v1.OrdersAdmin/Drop", false, "-"},
		{"POST", "/grpc.health.v1.Health/Watch", true, ""},
		{"GET", "/api/me", false, ""},
		{"GET", "/", false, "-"},
	}
	for _, c := range cases {
		r := p.match(c.method, c.path)
		switch {
		case c.roles == "-" && r != nil:
			t.Errorf("%s %s matched %q, want no rule", c.method, c.path, r.pattern)
		case c.roles == "-":
		case r == nil:
			t.Errorf("%s %s: no rule, want roles %q", c.method, c.path, c.roles)
		case r.public != c.public || strings.Join(r.roles, ",") != c.roles:
			t.Errorf("%s %s: public=%v roles=%v, want public=%v roles=%q", c.method, c.path, r.public, r.roles, c.public, c.roles)
		}
	}
	if got := p.Audiences(); len(got) != 1 || got[0] != "orders" {
		t.Errorf("Audiences = %v", got)
	}
}

func TestPolicyJSONAndDefaultAuthenticated(t *testing.T) {
	p := mustParse(t, `{"audiences":["orders"],"default":"authenticated","rules":[{"prefix":"/admin/","roles":["admin"]}]}`)
	if !p.allowAuthenticated || p.match("GET", "/x") != nil || p.match("GET", "/admin/x") == nil {
		t.Fatalf("policy = %+v", p)
	}
}

// TestPolicyErrorsAllAtOnce: one file with many mistakes reports each,
// with its rule and line.
func TestPolicyErrorsAllAtOnce(t *testing.T) {
	doc := `audiences: [orders, "", orders]
default: maybe
rules:
  - prefix: /api/
    roles: [read]
    colour: blue
  - path: api/no-slash
    roles: [read]
  - path: /x
    prefix: /y
    roles: [read]
  - grpc: /orders.v1.Orders
    roles: [read]
  - grpc: /orders.v1.Orders/
    http_methods: [GET]
    roles: [read]
  - path: /public/../admin
    public: true
  - path: /both
    public: true
    roles: [read]
  - path: /neither
  - path: /m
    http_methods: [get]
    roles: [""]
  - prefix: /api/
    roles: [write]
`
	_, err := ParsePolicy([]byte(doc), testIssuer)
	if err == nil {
		t.Fatal("ParsePolicy accepted a broken policy")
	}
	msg := err.Error()
	for _, want := range []string{
		"field colour not found",
		`audiences[1]: empty`,
		`audiences: "orders" listed twice`,
		`default: "maybe"`,
		`rules[1] (line 7): "api/no-slash": must start with /`,
		`rules[2] (line 9): give exactly one of path, prefix or grpc`,
		`rules[3] (line 12): grpc "/orders.v1.Orders"`,
		`rules[4] (line 14): http_methods do not apply to grpc rules`,
		`rules[5] (line 17): "/public/../admin"`,
		`rules[6] (line 19): public: true and roles are exclusive`,
		`rules[7] (line 22): give roles`,
		`rules[8] (line 23): http_methods: "get"`,
		`rules[8] (line 23): roles[0]`,
		`rules[9] (line 26): prefix "/api/" overlaps an earlier rule`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not report %q\nfull error:\n%s", want, msg)
		}
	}
}

func TestPolicyRefusals(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          ``,
		"syntax":         `audiences: [orders`,
		"no audiences":   `rules: [{path: /x, roles: []}]`,
		"no rules":       `audiences: [orders]`,
		"duplicate key":  "audiences: [a]\naudiences: [b]\nrules: [{path: /x, roles: []}]",
		"two documents":  "audiences: [a]\nrules: [{path: /x, roles: []}]\n---\naudiences: [b]\n",
		"wrong type":     `{"audiences": "orders", "rules": [{"path": "/x", "roles": []}]}`,
		"same exact":     "audiences: [a]\nrules: [{path: /x, roles: []}, {grpc: /x.Y/Z, roles: []}, {path: /x.Y/Z, public: true}]",
		"method overlap": "audiences: [a]\nrules: [{path: /x, http_methods: [GET, POST], roles: []}, {path: /x, http_methods: [POST], roles: [b]}]",
		"too large":      "audiences: [a]\n#" + strings.Repeat("x", MaxPolicySize),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := ParsePolicy([]byte(doc), testIssuer); err == nil {
				t.Fatalf("accepted: %+v", p)
			}
		})
	}
	if _, err := LoadPolicy(filepath.Join(t.TempDir(), "missing.yaml"), testIssuer); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
	// Different methods on one pattern are fine.
	mustParse(t, "audiences: [a]\nrules: [{path: /x, http_methods: [GET], roles: []}, {path: /x, http_methods: [POST], roles: [b]}, {path: /x, roles: [c]}]")
}

func TestCanonicalPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a/b": true, "/a%20b": true, "/orders.v1.Orders/Get": true, "/a/.well-known/x": true, "/a/..b": true,
		"": false, "a": false, "//a": false, "/a//b": false, "/a/./b": false, "/a/../b": false, "/a/..": false, "/.": false,
		"/a%2fb": false, "/a%2Fb": false, "/a%5Cb": false, "/a%2e%2e/b": false, "/a\\b": false, "/a#b": false,
		"/a?b": false, "/a\x00b": false, "/a\nb": false, "/a\x7fb": false,
		"/a;b": false, "/a/..;/b": false, "/a%3bb": false, "/a%3Bb": false, "/%61": false, "/a%7E": false, "/a%2D": false,
		"/a%30": false, "/a%25": false, "/a%zz": false, "/a%4": false, "/a%": false, "/a%C3%A9": true, "/a%3A": true, "/a%40b": true, "/a%00": false, "/a%1f": false, "/a%7F": false, "/a%20": true,
	} {
		if got := CanonicalPath(p); got != want {
			t.Errorf("CanonicalPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	seed, _ := os.ReadFile("testdata/policy.yaml")
	f.Add(seed)
	f.Add([]byte(`{"audiences":["a"],"rules":[{"prefix":"/","roles":[]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data, testIssuer)
		if err != nil {
			return
		}
		// Whatever parses must have an audience, never Latch's own, and
		// match without panicking.
		if len(p.Audiences()) == 0 || slices.Contains(p.Audiences(), testIssuer) {
			t.Fatalf("parsed policy with audiences %v", p.Audiences())
		}
		p.match("GET", "/api/orders/1")
	})
}

// TestSetPolicyAudiencesAsASet: a reload whose file lists the same
// audiences in another order is accepted (the Verifier accepts a set, so
// nothing needs a restart); one that adds or drops an audience is refused.
func TestSetPolicyAudiencesAsASet(t *testing.T) {
	s := &Server{}
	s.policy.Store(mustParse(t, "audiences: [orders, billing]\nrules: [{path: /a, roles: []}]"))
	reordered := mustParse(t, "audiences: [billing, orders]\nrules: [{path: /b, roles: []}]")
	if err := s.SetPolicy(reordered); err != nil {
		t.Fatalf("SetPolicy with the same audiences reordered: %v", err)
	}
	if s.policy.Load() != reordered {
		t.Fatal("the reordered policy was not installed")
	}
	for _, doc := range []string{
		"audiences: [orders]\nrules: [{path: /c, roles: []}]",
		"audiences: [orders, billing, admin]\nrules: [{path: /c, roles: []}]",
	} {
		if err := s.SetPolicy(mustParse(t, doc)); err == nil || !strings.Contains(err.Error(), "audiences") {
			t.Errorf("SetPolicy(%q) = %v, want a refusal naming audiences", doc, err)
		}
	}
}

// TestPolicyRefusesPublicFormOfProtectedRule: a public rule whose pattern
// is another form of a rule that needs a token (letter case, or an exact
// path's trailing "/"), for a method both cover, is refused: the request
// in the public form would match the public rule first, and an upstream
// that serves both forms alike would serve the protected resource. The
// check names both rules.
func TestPolicyRefusesPublicFormOfProtectedRule(t *testing.T) {
	for name, rules := range map[string]string{
		"exact, letter case":       `[{path: /admin, roles: [admin]}, {path: /Admin, public: true}]`,
		"exact, trailing slash":    `[{path: /admin/, public: true}, {path: /admin, roles: []}]`,
		"exact, any method vs GET": `[{path: /admin, http_methods: [GET], roles: [admin]}, {path: /ADMIN/, public: true}]`,
		"prefix, letter case":      `[{prefix: /ops/, roles: [admin]}, {prefix: /OPS/, http_methods: [POST], public: true}]`,
		"grpc, letter case":        `[{grpc: /a.B/C, roles: [admin]}, {grpc: /a.b/c, public: true}]`,
	} {
		t.Run(name, func(t *testing.T) {
			p, err := ParsePolicy([]byte("audiences: [a]\nrules: "+rules), testIssuer)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !strings.Contains(err.Error(), "public") || !strings.Contains(err.Error(), "line") && !strings.Contains(err.Error(), "rules[1]") {
				t.Errorf("error %q does not say which rules clash", err)
			}
		})
	}
	// Other methods, or both public, or both protected, are fine.
	mustParse(t, "audiences: [a]\nrules: [{path: /admin, http_methods: [POST], roles: [admin]}, {path: /Admin, http_methods: [GET], public: true}]")
	mustParse(t, "audiences: [a]\nrules: [{path: /admin, public: true}, {path: /Admin, public: true}]")
	mustParse(t, "audiences: [a]\nrules: [{path: /admin, roles: [a]}, {path: /Admin/, roles: [b]}]")
	mustParse(t, "audiences: [a]\nrules: [{prefix: /ops/, roles: [admin]}, {prefix: /ops/public/, public: true}]")
}

// TestPolicyRefusesLatchAudience: Latch's own audience is its issuer URL,
// so a policy that names it as an audience is refused when it is parsed
// or loaded, with a message that says why; an issuer must be given.
func TestPolicyRefusesLatchAudience(t *testing.T) {
	for name, doc := range map[string]string{
		"alone":               "audiences: [\"https://latch.test\"]\nrules: [{prefix: /, roles: []}]",
		"next to another":     "audiences: [orders, \"https://latch.test\"]\nrules: [{prefix: /, roles: []}]",
		"JSON":                `{"audiences": ["https://latch.test"], "default": "authenticated"}`,
		"with other problems": "audiences: [\"https://latch.test\", \"\"]\nrules: [{prefix: /, roles: []}]",
	} {
		t.Run(name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(doc), testIssuer)
			if err == nil {
				t.Fatalf("accepted a policy naming the issuer as an audience: %+v", p)
			}
			for _, want := range []string{`"https://latch.test" is Latch's issuer`, "Latch's own audience", "act on Latch"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("audiences: [\"https://latch.test\"]\nrules: [{prefix: /, roles: []}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicy(file, testIssuer); err == nil || !strings.Contains(err.Error(), "Latch's own audience") {
		t.Errorf("LoadPolicy = %v, want a refusal naming Latch's own audience", err)
	}
	// The same document is fine for a Latch with another issuer, and an
	// audience that merely resembles the issuer is another audience.
	if p, err := ParsePolicy([]byte("audiences: [\"https://latch.test\"]\nrules: [{prefix: /, roles: []}]"), "https://other.test"); err != nil || p.Issuer() != "https://other.test" {
		t.Errorf("other issuer: %v, %v", p, err)
	}
	mustParse(t, "audiences: [\"https://latch.test/orders\"]\nrules: [{prefix: /, roles: []}]")
	if _, err := ParsePolicy([]byte("audiences: [orders]\nrules: [{prefix: /, roles: []}]"), ""); err == nil || !strings.Contains(err.Error(), "no issuer") {
		t.Errorf("empty issuer: %v, want a refusal", err)
	}
}

// TestSetPolicyKeepsIssuer: a policy parsed for another issuer is refused
// by SetPolicy (the Verifier pins the issuer) and the current one stays.
func TestSetPolicyKeepsIssuer(t *testing.T) {
	s := &Server{}
	cur := mustParse(t, "audiences: [orders]\nrules: [{path: /a, roles: []}]")
	s.policy.Store(cur)
	other, err := ParsePolicy([]byte("audiences: [orders]\nrules: [{path: /a, roles: []}]"), "https://other.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(other); err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Errorf("SetPolicy with another issuer = %v, want a refusal naming the issuer", err)
	}
	if s.policy.Load() != cur {
		t.Error("a refused policy replaced the current one")
	}
}
