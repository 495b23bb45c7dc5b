package extauthz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxPolicySize is the largest policy file LoadPolicy reads.
const MaxPolicySize = 1 << 20

// Policy maps request paths (HTTP paths, or gRPC full methods, which are
// the HTTP/2 paths of gRPC calls) to what a request needs: nothing (public)
// or a valid token carrying every one of a set of roles. It is immutable
// once parsed.
//
// Matching: an exact rule (path, or grpc with a method) beats a prefix rule
// (prefix, or grpc ending in "/"), and a longer prefix beats a shorter one;
// for the same pattern a rule listing the request's HTTP method beats one
// that lists none. A request no rule matches is denied (fail closed)
// unless the file says `default: authenticated`, which admits any valid
// token.
type Policy struct {
	audiences          []string
	allowAuthenticated bool
	exact              map[string][]*rule // by path, rules with methods first
	prefixes           []*rule            // longest first, rules with methods first
}

type rule struct {
	pattern string
	prefix  bool
	methods map[string]bool // nil: any method
	public  bool
	roles   []string
}

// Audiences returns the audiences a token must name (at least one).
func (p *Policy) Audiences() []string { return slices.Clone(p.audiences) }

// match returns the rule for a request, or nil.
func (p *Policy) match(method, path string) *rule {
	for _, r := range p.exact[path] {
		if r.methods == nil || r.methods[method] {
			return r
		}
	}
	for _, r := range p.prefixes {
		if strings.HasPrefix(path, r.pattern) && (r.methods == nil || r.methods[method]) {
			return r
		}
	}
	return nil
}

// The file format (YAML, or JSON, which YAML includes).
type policyFile struct {
	Audiences []string   `yaml:"audiences"`
	Default   string     `yaml:"default"`
	Rules     []ruleFile `yaml:"rules"`
}

type ruleFile struct {
	Path        string    `yaml:"path"`
	Prefix      string    `yaml:"prefix"`
	GRPC        string    `yaml:"grpc"`
	HTTPMethods []string  `yaml:"http_methods"`
	Roles       *[]string `yaml:"roles"`
	Public      bool      `yaml:"public"`
}

var httpMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true}

// LoadPolicy reads and validates the policy file at path (YAML or JSON).
// Every problem is reported at once, each with its rule and line.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("extauthz: policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("extauthz: policy %s: %w", path, err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("extauthz: policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses and validates a policy document:
//
//	audiences: [orders]          # required: a token must name one of them
//	default: deny                # or "authenticated"; deny when absent
//	rules:
//	  - prefix: /healthz         # public: no token needed
//	    public: true
//	  - prefix: /api/orders/     # any method under the prefix
//	    roles: [orders:read]
//	  - path: /api/orders/cancel # exact path, POST only
//	    http_methods: [POST]
//	    roles: [orders:write]
//	  - grpc: /orders.v1.Orders/          # every method of a gRPC service
//	    roles: [orders:read]
//	  - grpc: /orders.v1.Orders/GetOrder  # one gRPC method
//	    roles: []                         # any valid token
//
// Unknown fields, duplicate keys, malformed or non-canonical paths, rules
// that are both public and need roles, and rules that overlap are errors;
// all of them are reported at once.
func ParsePolicy(data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("larger than %d bytes", MaxPolicySize)
	}
	var doc policyFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var errs []error
	if err := dec.Decode(&doc); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) { // syntax error or empty document: nothing to check further
			if errors.Is(err, io.EOF) {
				return nil, errors.New("empty policy")
			}
			return nil, fmt.Errorf("parse: %w", err)
		}
		for _, e := range te.Errors {
			errs = append(errs, errors.New(e))
		}
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		errs = append(errs, errors.New("more than one YAML document"))
	}
	lines := ruleLines(data)

	p := &Policy{exact: map[string][]*rule{}}
	if len(doc.Audiences) == 0 {
		errs = append(errs, errors.New("audiences: at least one audience is required (the aud a token must name)"))
	}
	for i, a := range doc.Audiences {
		switch {
		case a == "":
			errs = append(errs, fmt.Errorf("audiences[%d]: empty", i))
		case slices.Index(doc.Audiences, a) != i:
			errs = append(errs, fmt.Errorf("audiences: %q listed twice", a))
		}
	}
	p.audiences = doc.Audiences
	switch doc.Default {
	case "", "deny":
	case "authenticated":
		p.allowAuthenticated = true
	default:
		errs = append(errs, fmt.Errorf("default: %q is not deny or authenticated", doc.Default))
	}
	if len(doc.Rules) == 0 && !p.allowAuthenticated {
		errs = append(errs, errors.New("rules: none given, so every request would be denied"))
	}
	var all []*rule
	for i, rf := range doc.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if i < len(lines) {
			where += fmt.Sprintf(" (line %d)", lines[i])
		}
		r, rerrs := compileRule(rf)
		for _, e := range rerrs {
			errs = append(errs, fmt.Errorf("%s: %w", where, e))
		}
		if r == nil {
			continue
		}
		for _, o := range all {
			if o.pattern == r.pattern && o.prefix == r.prefix && overlap(o.methods, r.methods) {
				errs = append(errs, fmt.Errorf("%s: %s %q overlaps an earlier rule with the same pattern and method(s)",
					where, kind(r), r.pattern))
				break
			}
		}
		all = append(all, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	withMethodsFirst := func(a, b *rule) bool { return a.methods != nil && b.methods == nil }
	for _, r := range all {
		if r.prefix {
			p.prefixes = append(p.prefixes, r)
		} else {
			p.exact[r.pattern] = append(p.exact[r.pattern], r)
		}
	}
	sort.SliceStable(p.prefixes, func(i, j int) bool {
		a, b := p.prefixes[i], p.prefixes[j]
		if len(a.pattern) != len(b.pattern) {
			return len(a.pattern) > len(b.pattern)
		}
		return withMethodsFirst(a, b)
	})
	for _, rs := range p.exact {
		sort.SliceStable(rs, func(i, j int) bool { return withMethodsFirst(rs[i], rs[j]) })
	}
	return p, nil
}

func kind(r *rule) string {
	if r.prefix {
		return "prefix"
	}
	return "path"
}

func overlap(a, b map[string]bool) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	for m := range a {
		if b[m] {
			return true
		}
	}
	return false
}

// compileRule checks one rule; r is nil when it cannot be used at all.
func compileRule(rf ruleFile) (*rule, []error) {
	var errs []error
	r := &rule{public: rf.Public}
	n := 0
	for _, s := range []string{rf.Path, rf.Prefix, rf.GRPC} {
		if s != "" {
			n++
		}
	}
	switch {
	case n != 1:
		errs = append(errs, errors.New("give exactly one of path, prefix or grpc"))
		r = nil
	case rf.GRPC != "":
		r.pattern, r.prefix = rf.GRPC, strings.HasSuffix(rf.GRPC, "/")
		if !validGRPC(rf.GRPC) {
			errs = append(errs, fmt.Errorf("grpc %q: want /package.Service/Method or /package.Service/", rf.GRPC))
		}
		if len(rf.HTTPMethods) > 0 {
			errs = append(errs, errors.New("http_methods do not apply to grpc rules (gRPC is always POST)"))
		}
	default:
		r.pattern, r.prefix = rf.Path, rf.Prefix != ""
		if r.prefix {
			r.pattern = rf.Prefix
		}
		if !CanonicalPath(r.pattern) {
			errs = append(errs, fmt.Errorf("%q: must start with / and hold no query, fragment, //, dot segments, "+
				"encoded / \\ or ., backslashes or control characters", r.pattern))
		}
	}
	for _, m := range rf.HTTPMethods {
		if !httpMethods[m] {
			errs = append(errs, fmt.Errorf("http_methods: %q is not an upper-case HTTP method", m))
			continue
		}
		if r != nil {
			if r.methods == nil {
				r.methods = map[string]bool{}
			}
			r.methods[m] = true
		}
	}
	switch {
	case rf.Public && rf.Roles != nil:
		errs = append(errs, errors.New("public: true and roles are exclusive"))
	case !rf.Public && rf.Roles == nil:
		errs = append(errs, errors.New("give roles (an empty list admits any valid token) or public: true"))
	case rf.Roles != nil:
		for j, role := range *rf.Roles {
			if strings.TrimSpace(role) == "" || strings.ContainsAny(role, ",\r\n") {
				errs = append(errs, fmt.Errorf("roles[%d]: %q is empty or holds a comma or line break", j, role))
			}
		}
		if r != nil {
			r.roles = slices.Clone(*rf.Roles)
		}
	}
	return r, errs
}

// validGRPC accepts "/pkg.Service/Method" and "/pkg.Service/".
func validGRPC(s string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(s, "/"), "/")
	return strings.HasPrefix(s, "/") && ok && svc != "" && !strings.Contains(method, "/") &&
		!strings.ContainsAny(s, " ?#%\\") && CanonicalPath(s)
}

// CanonicalPath reports whether p (a request path without its query) is
// in the one form the policy can judge safely: it starts with "/" and has
// no "//", no "." or ".." segment, no percent-encoded "/", "\" or ".", no
// backslash, "#", "?" or control character. A path in another form could
// be read differently by the upstream than by the policy (a public prefix
// followed by "/../admin"), so Check refuses it (400); configure Envoy to
// normalize paths (normalize_path, merge_slashes,
// path_with_escaped_slashes_action) so that such paths never reach it.
func CanonicalPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c == 0x7f || c == '\\' || c == '#' || c == '?' {
			return false
		}
		if c == '%' && i+2 < len(p) {
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2f", "5c", "2e":
				return false
			}
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// ruleLines returns the line of each entry of the top-level rules list,
// for error messages (best effort: nil if the document does not parse).
func ruleLines(data []byte) []int {
	var doc struct {
		Rules []yaml.Node `yaml:"rules"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	lines := make([]int, len(doc.Rules))
	for i, n := range doc.Rules {
		lines[i] = n.Line
	}
	return lines
}
