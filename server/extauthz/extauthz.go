package extauthz

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/bearer"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/tokens"
)

// Default names of the headers injected for the upstream.
const (
	DefaultSubjectHeader = "x-latch-sub"
	DefaultSessionHeader = "x-latch-sid"
	DefaultRolesHeader   = "x-latch-roles"
)

// Server implements envoy.service.auth.v3.Authorization. It is safe for
// concurrent use.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	options
	v       *interceptors.Verifier
	policy  atomic.Pointer[Policy]
	aliases []string // other spellings of the three header names (see separatorAliases)
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// Option configures New.
type Option func(*options) error

type options struct {
	subH, sidH, rolesH string
	keepAuth           bool
	realm              string
	log                *slog.Logger
	metrics            *metrics // nil: none
}

// WithHeaderNames sets the names of the headers that carry the token's
// subject, session id and roles (comma-separated) to the upstream. Default
// x-latch-sub, x-latch-sid, x-latch-roles. Whatever the client sent under
// these names is overwritten or removed, so the upstream can trust them
// (provided every route to it passes through this check).
func WithHeaderNames(sub, sid, roles string) Option {
	return func(o *options) error {
		if err := CheckHeaderNames(sub, sid, roles); err != nil {
			return fmt.Errorf("WithHeaderNames: %w", err)
		}
		o.subH, o.sidH, o.rolesH = sub, sid, roles
		return nil
	}
}

// CheckHeaderNames reports whether sub, sid and roles can name the
// identity headers: distinct lower-case header names other than
// authorization, host and pseudo-headers.
func CheckHeaderNames(sub, sid, roles string) error {
	var errs []error
	for _, n := range []string{sub, sid, roles} {
		if !validHeaderName(n) {
			errs = append(errs, fmt.Errorf("header name %q must be lower-case letters, digits, '-', '_' or '.', and not authorization, host or a pseudo-header", n))
		}
	}
	if sub == sid || sid == roles || sub == roles {
		errs = append(errs, errors.New("the three header names must differ"))
	}
	return errors.Join(errs...)
}

// WithKeepAuthorization forwards the authorization header to the upstream.
// Default: it is removed from every allowed request, public ones included,
// so that the bearer token goes no further than the check (an upstream
// that relays the token needs it).
func WithKeepAuthorization(keep bool) Option {
	return func(o *options) error { o.keepAuth = keep; return nil }
}

// WithRealm sets the realm of the WWW-Authenticate challenge. Default
// "latch".
func WithRealm(realm string) Option {
	return func(o *options) error {
		if realm == "" || strings.ContainsAny(realm, "\"\\\r\n") {
			return errors.New("WithRealm: realm must be non-empty, without quotes, backslashes or line breaks")
		}
		o.realm = realm
		return nil
	}
}

// WithLogger sets the logger for decisions (denials at info, allowed
// requests at debug). Tokens are never logged. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		o.log = l
		return nil
	}
}

// New returns a Server that verifies with v and decides with p. v must
// accept the audiences p names and p's issuer (build it with
// interceptors.Config{Issuer: p.Issuer(), Audience: p.Audiences()}); its
// fail-open setting and revocation sources apply to every Check. Whatever v
// accepts, Check refuses a token that names Latch's own audience (p's
// issuer, or the token's iss).
func New(v *interceptors.Verifier, p *Policy, opts ...Option) (*Server, error) {
	o := options{subH: DefaultSubjectHeader, sidH: DefaultSessionHeader, rolesH: DefaultRolesHeader, realm: "latch",
		log: slog.New(slog.DiscardHandler)}
	var errs []error
	if v == nil || p == nil {
		errs = append(errs, errors.New("a verifier and a policy are required"))
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("extauthz: %w", err)
	}
	s := &Server{options: o, v: v}
	for _, n := range []string{o.subH, o.sidH, o.rolesH} {
		s.aliases = append(s.aliases, separatorAliases(n)...)
	}
	s.policy.Store(p)
	return s, nil
}

// SetPolicy replaces the route policy; checks that start afterwards use
// p. It refuses a policy whose audiences or issuer differ from the current
// one's: the Verifier was built for those.
func (s *Server) SetPolicy(p *Policy) error {
	if p == nil {
		return errors.New("extauthz: nil policy")
	}
	old := s.policy.Load()
	if !slices.Equal(old.audiences, p.audiences) {
		return fmt.Errorf("extauthz: the new policy's audiences %v differ from %v; restart to change them", p.audiences, old.audiences)
	}
	if old.issuer != p.issuer {
		return fmt.Errorf("extauthz: the new policy's issuer %q differs from %q; restart to change it", p.issuer, old.issuer)
	}
	s.policy.Store(p)
	return nil
}

// Register adds the Authorization service to r.
func (s *Server) Register(r grpc.ServiceRegistrar) { authv3.RegisterAuthorizationServer(r, s) }

// denial is a refusal: what Envoy answers the client, and why (log only).
type denial struct {
	http      typev3.StatusCode
	code      codes.Code
	errorCode string // RFC 6750 error code, "" for none
	body      string // error code in the JSON body when errorCode is ""
	challenge bool   // send WWW-Authenticate
	reason    string // fixed text for the log
}

var (
	denyBadPath     = denial{http: typev3.StatusCode_BadRequest, code: codes.InvalidArgument, errorCode: "invalid_request", reason: "non-canonical path"}
	denyNoHTTP      = denial{http: typev3.StatusCode_BadRequest, code: codes.InvalidArgument, errorCode: "invalid_request", reason: "no HTTP request attributes"}
	denyMissing     = denial{http: typev3.StatusCode_Unauthorized, code: codes.Unauthenticated, challenge: true, body: "unauthorized", reason: "no bearer token"}
	denyForbidden   = denial{http: typev3.StatusCode_Forbidden, code: codes.PermissionDenied, body: "forbidden", reason: "no policy rule admits the path"}
	denyMissingRole = denial{http: typev3.StatusCode_Forbidden, code: codes.PermissionDenied, errorCode: "insufficient_scope", challenge: true, reason: "token lacks a required role"}
)

func invalidToken(reason string) denial {
	return denial{http: typev3.StatusCode_Unauthorized, code: codes.Unauthenticated, errorCode: "invalid_token", challenge: true, reason: reason}
}

// unavailable is the refusal when Latch could not establish what it needs
// to decide: fail closed, worth a retry.
func unavailable(reason string) denial {
	return denial{http: typev3.StatusCode_ServiceUnavailable, code: codes.Unavailable, errorCode: "temporarily_unavailable", reason: reason}
}

// Fixed client-visible gRPC status messages, one per code.
var statusMessages = map[codes.Code]string{
	codes.InvalidArgument:  "request refused",
	codes.Unauthenticated:  "unauthenticated",
	codes.PermissionDenied: "permission denied",
	codes.Unavailable:      "authorization temporarily unavailable",
}

// Check implements envoy.service.auth.v3.AuthorizationServer. It never
// returns an error: every refusal is a DeniedHttpResponse, so Envoy's
// failure_mode_allow never turns a Latch decision into an allow.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	resp := s.check(ctx, req)
	if d := resp.GetDeniedResponse(); d != nil {
		s.metrics.observe(false, int(d.GetStatus().GetCode()), start)
	} else {
		s.metrics.observe(true, 200, start)
	}
	return resp, nil
}

// check decides one request.
func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) *authv3.CheckResponse {
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		return s.deny(ctx, h, denyNoHTTP, nil)
	}
	path, _, _ := strings.Cut(h.GetPath(), "?")
	if !CanonicalPath(path) || !pseudoPathAgrees(h) {
		return s.deny(ctx, h, denyBadPath, nil)
	}
	policy := s.policy.Load()
	r := policy.match(h.GetMethod(), path)
	if r != nil && r.public {
		return s.allow(ctx, h, nil)
	}
	tok, d := bearerToken(h)
	if d != nil {
		return s.deny(ctx, h, *d, nil)
	}
	claims, err := s.v.Verify(ctx, tok)
	if err != nil {
		return s.deny(ctx, h, verifyDenial(err), nil)
	}
	// Latch's own audience is its issuer. A token naming it can act on
	// Latch, so it is refused here whatever else it names and whatever the
	// Verifier was built to accept: an upstream must never receive one.
	if slices.Contains(claims.Audience, policy.issuer) || slices.Contains(claims.Audience, claims.Issuer) {
		return s.deny(ctx, h, invalidToken("token names Latch's own audience"), &claims)
	}
	switch {
	case r == nil && !policy.allowAuthenticated:
		return s.deny(ctx, h, denyForbidden, &claims)
	case r != nil:
		for _, role := range r.roles {
			if !claims.HasRole(role) {
				return s.deny(ctx, h, denyMissingRole, &claims)
			}
		}
	}
	// A role holding the separator would read as two roles upstream.
	if !headerSafe(claims.Subject) || !headerSafe(claims.SessionID) ||
		slices.ContainsFunc(claims.Roles, func(r string) bool { return r == "" || strings.Contains(r, ",") || !headerSafe(r) }) {
		return s.deny(ctx, h, invalidToken("claims not representable as headers"), &claims)
	}
	return s.allow(ctx, h, &claims)
}

// verifyDenial maps a Verify error: the state Latch could not establish
// is 503 (fail closed, worth a retry); anything about the token is 401.
func verifyDenial(err error) denial {
	switch {
	case errors.Is(err, interceptors.ErrStale):
		return unavailable("verifier stale (fail closed)")
	case errors.Is(err, verifier.ErrRevocationUnavailable):
		return unavailable("revocation state unavailable")
	case errors.Is(err, interceptors.ErrRevoked):
		return invalidToken("token revoked")
	}
	if r := tokens.Reason(err); r != nil {
		return invalidToken(r.Error())
	}
	// No reason: the key lookup failed (Latch's own key ring), not the token, as
	// in the interceptors' own mapping.
	return unavailable("signing keys unavailable")
}

// bearerToken reads the one "authorization: Bearer <token>" header. No
// header, or one of another scheme, presents no bearer token (RFC 6750
// §3.1: no error code); any other malformed value is an invalid token.
func bearerToken(h *authv3.AttributeContext_HttpRequest) (string, *denial) {
	tok, err := bearer.FromHeader(headerValues(h, "authorization")...)
	switch {
	case errors.Is(err, bearer.ErrMissing), errors.Is(err, bearer.ErrScheme):
		d := denyMissing
		return "", &d
	case err != nil:
		d := invalidToken(err.Error())
		return "", &d
	}
	return tok, nil
}

// headerValues returns the values of the header name (lower-case), from
// the headers map or, with Envoy's encode_raw_headers, the header map.
func headerValues(h *authv3.AttributeContext_HttpRequest, name string) []string {
	hm := h.GetHeaderMap().GetHeaders()
	if len(hm) == 0 {
		if v, ok := h.GetHeaders()[name]; ok {
			return []string{v}
		}
		return nil
	}
	var out []string
	for _, hv := range hm {
		if strings.EqualFold(hv.GetKey(), name) {
			v := string(hv.GetRawValue())
			if v == "" {
				v = hv.GetValue()
			}
			out = append(out, v)
		}
	}
	return out
}

// pseudoPathAgrees reports whether every :path header the attributes
// carry is the path field: the policy judges the one the upstream is
// routed by, and a caller that sent two different ones is refused rather
// than guessed at.
func pseudoPathAgrees(h *authv3.AttributeContext_HttpRequest) bool {
	return !slices.ContainsFunc(headerValues(h, ":path"), func(v string) bool { return v != h.GetPath() })
}

// allow answers OK. For a verified token the response also carries sub,
// sid, jti and roles as dynamic metadata, which Envoy files under the
// ext_authz filter's namespace (for access logs and RBAC).
func (s *Server) allow(ctx context.Context, h *authv3.AttributeContext_HttpRequest, c *tokens.Claims) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{}
	resp := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
	set := func(name, value string) { ok.Headers = append(ok.Headers, overwrite(name, value)) }
	// Client-sent headers that CGI-style upstreams (WSGI, Rack, PHP) read
	// as the identity headers ("x_latch_sub" and "x-latch-sub" are both
	// HTTP_X_LATCH_SUB there) are removed in every case.
	ok.HeadersToRemove = slices.Clone(s.aliases)
	if c == nil { // public: nothing vouched for, so nothing the client sent may pass as if it were
		ok.HeadersToRemove = append(ok.HeadersToRemove, s.subH, s.sidH, s.rolesH)
	} else {
		set(s.subH, c.Subject)
		set(s.sidH, c.SessionID)
		if len(c.Roles) > 0 {
			set(s.rolesH, strings.Join(c.Roles, ","))
		} else {
			ok.HeadersToRemove = append(ok.HeadersToRemove, s.rolesH)
		}
		roles := make([]any, len(c.Roles))
		for i, r := range c.Roles {
			roles[i] = r
		}
		if md, err := structpb.NewStruct(map[string]any{"sub": c.Subject, "sid": c.SessionID, "jti": c.ID, "roles": roles}); err == nil {
			resp.DynamicMetadata = md
		}
	}
	if !s.keepAuth { // public requests too: an upstream that is not to see tokens sees none
		ok.HeadersToRemove = append(ok.HeadersToRemove, "authorization")
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "request allowed", logAttrs(h, c, slog.String("event", "ext_authz_allowed"),
			slog.Bool("public", c == nil))...)
	}
	return resp
}

// logAttrs are the attributes of a decision's log record: first, the
// request's method, path (without its query) and id, and the token's
// user, session and jti when one verified. Never the token.
func logAttrs(h *authv3.AttributeContext_HttpRequest, c *tokens.Claims, first ...slog.Attr) []slog.Attr {
	attrs := append(first, slog.String("method", h.GetMethod()), slog.String("path", logPath(h.GetPath())),
		slog.String("request_id", h.GetId()))
	if c != nil {
		attrs = append(attrs, slog.String("user_id", c.Subject), slog.String("session_id", c.SessionID), slog.String("jti", c.ID))
	}
	return attrs
}

// overwrite sets header k to v, replacing what the client sent.
func overwrite(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

func (s *Server) deny(ctx context.Context, h *authv3.AttributeContext_HttpRequest, d denial, c *tokens.Claims) *authv3.CheckResponse {
	s.log.LogAttrs(ctx, slog.LevelInfo, "request denied", logAttrs(h, c, slog.String("event", "ext_authz_denied"),
		slog.String("reason", d.reason), slog.Int("http_status", int(d.http)))...)

	headers := []*corev3.HeaderValueOption{overwrite("content-type", "application/json"), overwrite("cache-control", "no-store")}
	if d.challenge {
		ch := `Bearer realm="` + s.realm + `"`
		if d.errorCode != "" {
			ch += `, error="` + d.errorCode + `"`
		}
		headers = append(headers, overwrite("www-authenticate", ch))
	}
	body := `{"error":"` + cmp.Or(d.errorCode, d.body) + `"}`
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(d.code), Message: statusMessages[d.code]},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: d.http}, Headers: headers, Body: body,
		}},
	}
}

// logPath is the path without its query (which may hold credentials),
// cut to 256 bytes.
func logPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	if len(p) > 256 {
		p = p[:256] + "…"
	}
	return p
}

// maxAliasSeparators bounds the separators of a header name whose every
// spelling is listed (2^n of them); past it only the all-"-" and all-"_"
// spellings are.
const maxAliasSeparators = 5

// separatorAliases returns the spellings of the header name n with each
// "-" or "_" replaced by the other, n excluded: the names a CGI-style
// upstream cannot tell from n.
func separatorAliases(n string) []string {
	var at []int
	for i := 0; i < len(n); i++ {
		if n[i] == '-' || n[i] == '_' {
			at = append(at, i)
		}
	}
	seen := map[string]bool{n: true}
	var out []string
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(at) > maxAliasSeparators {
		add(strings.ReplaceAll(n, "_", "-"))
		add(strings.ReplaceAll(n, "-", "_"))
		return out
	}
	b := []byte(n)
	for mask := 0; mask < 1<<len(at); mask++ {
		for j, i := range at {
			b[i] = '-'
			if mask&(1<<j) != 0 {
				b[i] = '_'
			}
		}
		add(string(b))
	}
	return out
}

// headerSafe reports whether v can be sent as a header value: visible
// ASCII and spaces only.
func headerSafe(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e })
}

// validHeaderName accepts lower-case RFC 9110 tokens other than
// authorization, host and pseudo-headers.
func validHeaderName(n string) bool {
	if n == "" || n == "authorization" || n == "host" || strings.HasPrefix(n, ":") {
		return false
	}
	return !strings.ContainsFunc(n, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	})
}
