package interceptors

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Policy maps gRPC methods to the roles a caller's token must carry. Rules
// name a full method ("/pkg.Service/Method") or a service prefix
// ("/pkg.Service/"); the exact method wins over a prefix and a longer prefix
// over a shorter one. Methods no rule names are denied (fail closed) unless
// AllowAuthenticated is called.
//
// Build a Policy before serving; the interceptors take a snapshot of it, so
// later changes do not affect them. The builder methods panic on a
// malformed method pattern, a programming error like a bad http.ServeMux
// pattern.
type Policy struct {
	rules              map[string][]string
	public             map[string]bool
	allowAuthenticated bool
}

// Methods that are public in every NewPolicy: health checks and server
// reflection.
var defaultPublic = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// NewPolicy returns a policy in which only health checks and server
// reflection are public and every other method is denied.
func NewPolicy() *Policy {
	p := &Policy{rules: map[string][]string{}, public: map[string]bool{}}
	return p.Public(defaultPublic...)
}

func checkPattern(m string) {
	if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 || len(m) < 3 {
		panic(fmt.Sprintf("interceptors: method pattern %q must be \"/pkg.Service/Method\" or \"/pkg.Service/\"", m))
	}
}

// Require lets callers whose token carries every one of roles call the
// method (or every method of the service prefix). With no roles, any valid
// token may call it.
func (p *Policy) Require(method string, roles ...string) *Policy {
	checkPattern(method)
	p.rules[method] = slices.Clone(roles)
	return p
}

// Public lets anyone call the methods (or service prefixes), with or
// without a token. A token sent to a public method is not verified.
func (p *Policy) Public(methods ...string) *Policy {
	for _, m := range methods {
		checkPattern(m)
		p.public[m] = true
	}
	return p
}

// AllowAuthenticated flips the default: methods no rule names may be
// called with any valid token instead of being denied.
func (p *Policy) AllowAuthenticated() *Policy {
	p.allowAuthenticated = true
	return p
}

// compiledPolicy is the immutable snapshot the interceptors use.
type compiledPolicy struct {
	exact              map[string][]string
	prefixes           []prefixRule // longest first
	public             map[string]bool
	publicPrefixes     []string
	allowAuthenticated bool
}

type prefixRule struct {
	prefix string
	roles  []string
}

func (p *Policy) compile() *compiledPolicy {
	if p == nil {
		p = NewPolicy()
	}
	c := &compiledPolicy{exact: map[string][]string{}, public: map[string]bool{}, allowAuthenticated: p.allowAuthenticated}
	for m, roles := range p.rules {
		if strings.HasSuffix(m, "/") {
			c.prefixes = append(c.prefixes, prefixRule{m, slices.Clone(roles)})
		} else {
			c.exact[m] = slices.Clone(roles)
		}
	}
	sort.Slice(c.prefixes, func(i, j int) bool { return len(c.prefixes[i].prefix) > len(c.prefixes[j].prefix) })
	for m := range p.public {
		if strings.HasSuffix(m, "/") {
			c.publicPrefixes = append(c.publicPrefixes, m)
		} else {
			c.public[m] = true
		}
	}
	return c
}

func (c *compiledPolicy) isPublic(method string) bool {
	if c.public[method] {
		return true
	}
	for _, p := range c.publicPrefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// required returns the roles method needs and whether any rule allows it.
func (c *compiledPolicy) required(method string) ([]string, bool) {
	if roles, ok := c.exact[method]; ok {
		return roles, true
	}
	for _, r := range c.prefixes {
		if strings.HasPrefix(method, r.prefix) {
			return r.roles, true
		}
	}
	return nil, c.allowAuthenticated
}
