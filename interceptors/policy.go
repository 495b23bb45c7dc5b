package interceptors

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Policy maps gRPC methods to what a caller needs: nothing (Public) or a
// valid token carrying a set of roles (Require). Rules name a full method
// ("/pkg.Service/Method") or a service prefix ("/pkg.Service/").
//
// Exactly one rule decides each method, whatever it demands: the exact
// method's rule if there is one, else the longest prefix that matches, so
// an exact Require beats a public prefix and an exact Public beats a
// protected prefix (the same precedence as Latch's ext_authz policy).
// Each pattern holds one rule: a later Public or Require for the same
// pattern replaces the earlier one, so
// NewPolicy().Require("/grpc.health.v1.Health/", "ops") protects the
// health service that NewPolicy makes public. Methods no rule names are
// denied (fail closed) unless AllowAuthenticated is called.
//
// Build a Policy before serving; the interceptors take a snapshot of it, so
// later changes do not affect them. The builder methods panic on a
// malformed method pattern, a programming error like a bad http.ServeMux
// pattern.
type Policy struct {
	rules              map[string]rule // by pattern
	allowAuthenticated bool
}

// rule is what a pattern demands: nothing (public) or a token with roles.
type rule struct {
	public bool
	roles  []string
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
	p := &Policy{rules: map[string]rule{}}
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
	p.rules[method] = rule{roles: slices.Clone(roles)}
	return p
}

// Public lets anyone call the methods (or service prefixes), with or
// without a token. A token sent to a public method is not verified. A
// public prefix does not open a method that has an exact Require.
func (p *Policy) Public(methods ...string) *Policy {
	for _, m := range methods {
		checkPattern(m)
		p.rules[m] = rule{public: true}
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
	exact              map[string]rule
	prefixes           []prefixRule // longest first
	allowAuthenticated bool
}

type prefixRule struct {
	prefix string
	rule
}

func (p *Policy) compile() *compiledPolicy {
	if p == nil {
		p = NewPolicy()
	}
	c := &compiledPolicy{exact: map[string]rule{}, allowAuthenticated: p.allowAuthenticated}
	for m, r := range p.rules {
		r.roles = slices.Clone(r.roles)
		if strings.HasSuffix(m, "/") {
			c.prefixes = append(c.prefixes, prefixRule{m, r})
		} else {
			c.exact[m] = r
		}
	}
	slices.SortFunc(c.prefixes, func(a, b prefixRule) int {
		return cmp.Or(cmp.Compare(len(b.prefix), len(a.prefix)), strings.Compare(a.prefix, b.prefix))
	})
	return c
}

// match returns the one rule that decides method: the exact rule, else the
// longest matching prefix; ok is false when no rule names it.
func (c *compiledPolicy) match(method string) (r rule, ok bool) {
	if r, ok := c.exact[method]; ok {
		return r, true
	}
	for _, pr := range c.prefixes {
		if strings.HasPrefix(method, pr.prefix) {
			return pr.rule, true
		}
	}
	return rule{}, false
}

// isPublic reports whether method needs no token.
func (c *compiledPolicy) isPublic(method string) bool {
	r, ok := c.match(method)
	return ok && r.public
}

// required returns the roles method needs and whether a token may call it
// at all (a method no rule names only under AllowAuthenticated).
func (c *compiledPolicy) required(method string) ([]string, bool) {
	r, ok := c.match(method)
	return r.roles, ok || c.allowAuthenticated
}
