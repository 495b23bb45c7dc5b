package extauthz

import (
	"bytes"
	"cmp"
	"encoding/hex"
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
//
// So that a request cannot slip past a rule in a form the upstream serves
// the same way, a rule that needs a token also governs: the request's
// method in any letter case; HEAD when it lists GET but not HEAD (servers
// answer HEAD with the GET handler); its path in any letter case; for an
// exact path, the same path with or without a trailing "/"; for a prefix
// ending in "/", the prefix without it ("/admin/" governs "/admin" and
// "/ADMIN"). Only rules that need a token match these other forms (public
// rules are never widened so): an exact rule's after the exact rules of the
// path as sent and before any prefix rule, a prefix rule's in its place in
// the longest-first order.
type Policy struct {
	issuer             string   // Latch's issuer, which is Latch's own audience
	audiences          []string // sorted
	allowAuthenticated bool
	exact              map[string][]*rule // by path, rules with methods first
	exactFold          map[string][]*rule // the same by lower-case path
	prefixes           []prefixGroup      // longest first
}

// prefixGroup is the rules of one prefix, rules with methods first.
type prefixGroup struct {
	pattern, folded string // folded: lower-case
	rules           []*rule
}

type rule struct {
	pattern string
	prefix  bool
	methods map[string]bool // nil: any method
	public  bool
	roles   []string
}

// Audiences returns the audiences a token must name (at least one), sorted.
func (p *Policy) Audiences() []string { return slices.Clone(p.audiences) }

// Issuer returns the issuer the policy was parsed for: the iss of the
// tokens it admits, and Latch's own audience, which it never admits.
func (p *Policy) Issuer() string { return p.issuer }

// match returns the rule for a request, or nil.
func (p *Policy) match(method, path string) *rule {
	method = strings.ToUpper(method)
	if r := pick(p.exact[path], method, false); r != nil {
		return r
	}
	lower := strings.ToLower(path)
	alias := lower + "/"
	if strings.HasSuffix(lower, "/") && lower != "/" {
		alias = strings.TrimSuffix(lower, "/")
	}
	for _, form := range []string{lower, alias} {
		if r := pick(p.exactFold[form], method, true); r != nil {
			return r
		}
	}
	for _, g := range p.prefixes {
		switch {
		case strings.HasPrefix(path, g.pattern):
			if r := pick(g.rules, method, false); r != nil {
				return r
			}
		case strings.HasPrefix(lower, g.folded) || lower+"/" == g.folded:
			if r := pick(g.rules, method, true); r != nil {
				return r
			}
		}
	}
	return nil
}

// pick returns the rule of rs (rules of one pattern, with methods first)
// for method (upper-case): the one listing it, for HEAD the one listing
// GET, else the one listing no method; only among rules that need a token
// when needsToken (the request is another form of the pattern).
func pick(rs []*rule, method string, needsToken bool) *rule {
	var best *rule
	bestRank := 0
	for _, r := range rs {
		rank := 0
		switch {
		case needsToken && r.public:
		case r.methods[method]:
			rank = 3
		case method == "HEAD" && r.methods["GET"]:
			rank = 2
		case r.methods == nil:
			rank = 1
		}
		if rank > bestRank {
			best, bestRank = r, rank
		}
	}
	return best
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

// LoadPolicy reads and validates the policy file at path (YAML or JSON)
// for the Latch whose issuer (iss) is issuer, as ParsePolicy does. Every
// problem is reported at once, each with its rule and line.
func LoadPolicy(path, issuer string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("extauthz: policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("extauthz: policy %s: %w", path, err)
	}
	p, err := ParsePolicy(data, issuer)
	if err != nil {
		return nil, fmt.Errorf("extauthz: policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses and validates a policy document for the Latch whose
// issuer (iss) is issuer:
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
// The issuer is Latch's own audience: Latch's own APIs accept the tokens
// minted for it, so a token for it must never reach an upstream (which,
// with WithKeepAuthorization, receives the token itself). An audience
// equal to issuer is an error, and so is an empty issuer.
//
// Unknown fields, duplicate keys, malformed or non-canonical paths, rules
// that are both public and need roles, rules that overlap, and a public
// rule whose pattern differs from a protected one's (for a method both
// cover) only in letter case or an exact path's trailing "/" are errors;
// all of them are reported at once.
func ParsePolicy(data []byte, issuer string) (*Policy, error) {
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

	p := &Policy{issuer: issuer, exact: map[string][]*rule{}, exactFold: map[string][]*rule{}}
	if issuer == "" {
		errs = append(errs, errors.New("no issuer given: a policy is checked against Latch's issuer, its own audience, which it may not admit"))
	}
	if len(doc.Audiences) == 0 {
		errs = append(errs, errors.New("audiences: at least one audience is required (the aud a token must name)"))
	}
	for i, a := range doc.Audiences {
		switch {
		case a == "":
			errs = append(errs, fmt.Errorf("audiences[%d]: empty", i))
		case slices.Index(doc.Audiences, a) != i:
			errs = append(errs, fmt.Errorf("audiences: %q listed twice", a))
		case a == issuer:
			errs = append(errs, fmt.Errorf("audiences: %q is Latch's issuer, which is Latch's own audience: a token for it can act on Latch, "+
				"so it may not be given to an upstream; name the upstream's own audience instead", a))
		}
	}
	p.audiences = slices.Sorted(slices.Values(doc.Audiences)) // sorted: SetPolicy compares them as a set
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
			if o.public != r.public && o.prefix == r.prefix && form(o) == form(r) && (o.methods == nil || r.methods == nil ||
				overlap(o.methods, r.methods)) {
				errs = append(errs, fmt.Errorf("%s: %s %q and an earlier rule's %q differ only in letter case or a trailing /, "+
					"which an upstream may serve alike, yet only one of them is public", where, kind(r), r.pattern, o.pattern))
				break
			}
		}
		all = append(all, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Within each pattern, rules listing methods come before those that
	// list none; otherwise in file order, so that patterns differing in
	// case only are tried in it.
	sort.SliceStable(all, func(i, j int) bool { return all[i].methods != nil && all[j].methods == nil })
	prefixes := map[string][]*rule{}
	for _, r := range all {
		if r.prefix {
			prefixes[r.pattern] = append(prefixes[r.pattern], r)
			continue
		}
		p.exact[r.pattern] = append(p.exact[r.pattern], r)
		f := strings.ToLower(r.pattern)
		p.exactFold[f] = append(p.exactFold[f], r)
	}
	for pattern, rs := range prefixes {
		p.prefixes = append(p.prefixes, prefixGroup{pattern: pattern, folded: strings.ToLower(pattern), rules: rs})
	}
	slices.SortFunc(p.prefixes, func(a, b prefixGroup) int {
		return cmp.Or(cmp.Compare(len(b.pattern), len(a.pattern)), strings.Compare(a.pattern, b.pattern))
	})
	return p, nil
}

func kind(r *rule) string {
	if r.prefix {
		return "prefix"
	}
	return "path"
}

// form is the pattern as match folds a request into it: lower-case, and
// for an exact rule without a trailing "/". A public rule and a rule that
// needs a token must not share one, or the request in the public rule's
// form would reach the protected resource (the path as sent is matched
// before its other forms).
func form(r *rule) string {
	f := strings.ToLower(r.pattern)
	if !r.prefix && f != "/" {
		f = strings.TrimSuffix(f, "/")
	}
	return f
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
	given := slices.DeleteFunc([]string{rf.Path, rf.Prefix, rf.GRPC}, func(s string) bool { return s == "" })
	switch {
	case len(given) != 1:
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
			errs = append(errs, fmt.Errorf("%q: must start with / and hold no query, fragment, //, dot segments, ;, "+
				"encoded / \\ ; %% or unreserved characters, backslashes or control characters", r.pattern))
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
// no "//", no "." or ".." segment, no ";" (path parameters: Tomcat and
// Spring serve "/public/..;/admin" as "/admin" and "/admin;x" as
// "/admin"), no backslash, "#", "?" or control character, and no
// percent-encoding other than a well-formed one of a character that must
// be encoded: none of "/", "\", ";", "%", a control character (a C
// upstream ends "/admin%00x" at the NUL) or an unreserved character
// (letter, digit, "-", ".", "_", "~"), which an upstream decodes into a
// path the policy did not see ("/%61dmin" is "/admin"). A path in another
// form could be read differently by the upstream than by the policy (a
// public prefix followed by "/../admin"), so Check refuses it (400);
// configure Envoy to normalize paths (normalize_path, merge_slashes,
// path_with_escaped_slashes_action) so that such paths never reach it.
func CanonicalPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c == 0x7f || c == '\\' || c == '#' || c == '?' || c == ';' {
			return false
		}
		if c == '%' {
			b, err := hex.DecodeString(p[i+1 : min(i+3, len(p))])
			if len(b) != 1 || err != nil {
				return false // malformed escape: no telling how the upstream reads it
			}
			d := b[0]
			if d == '/' || d == '\\' || d == ';' || d == '%' || d < 0x20 || d == 0x7f || unreserved(d) {
				return false
			}
		}
	}
	return !slices.ContainsFunc(strings.Split(p, "/"), func(seg string) bool { return seg == "." || seg == ".." })
}

// unreserved reports RFC 3986 unreserved characters, which percent-encoding
// must not change the meaning of (§2.3), so upstreams decode them.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
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
