package server

import (
	"context"
	"log/slog"
	"slices"

	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/storage"
)

// Bucket key prefixes: one Limiter holds every bucket, so that one attempt
// can take from several of them atomically.
const (
	bucketAccount = "acct:"  // failed logins per account, clients without a device proof
	bucketDevice  = "dev:"   // failed logins per device proof
	bucketAddress = "addr:"  // login attempts per client address
	bucketRate    = "login:" // login attempts per account, right or wrong
	bucketRefresh = "refresh:"
	bucketCaller  = "caller:"
	bucketInspect = "introspect:"
)

// loginCharges are the buckets one login attempt is counted against.
type loginCharges struct {
	all     []ratelimit.Charge
	refund  string // the bucket a right password gives back
	limiter []string
}

// loginCharges builds the charges for an attempt on email (user is the
// stored account, zero for an unknown email; device the id of a device
// proof that verified for that account, or ""). An unknown email is charged
// exactly as a person's account is, so that the answers cannot tell them
// apart. The buckets of a stored account and of a device proof Latch issued
// are kept (ratelimit.Charge.Keep): their number is bounded by the users
// and the logins, not by what an attacker sends, so no flood of other keys
// can make the table forget a victim's spent budget.
func (s *Server) loginCharges(email string, user storage.User, device string, addr clientAddress) loginCharges {
	lim := s.accountLimits(user)
	known := user.ID != ""
	var lc loginCharges
	add := func(key, limiter string, r ratelimit.Rule, keep bool) {
		lc.all = append(lc.all, ratelimit.Charge{Key: key, Rule: r, Keep: keep})
		lc.limiter = append(lc.limiter, limiter)
	}
	add(bucketAddress+addr.bucket(), LimiterLoginAddress, ratelimit.Rule{Burst: s.cfg.AddressBurst, Refill: s.cfg.AddressRefill}, false)
	if device != "" {
		lc.refund = bucketDevice + device
		add(lc.refund, LimiterLoginDevice, ratelimit.Rule{Burst: s.cfg.DeviceBurst, Refill: s.cfg.DeviceRefill}, true)
	} else {
		lc.refund = bucketAccount + email
		add(lc.refund, LimiterLoginAccount, ratelimit.Rule{Burst: lim.FailureBurst, Refill: lim.FailureRefill}, known)
	}
	add(bucketRate+email, LimiterLoginRate, ratelimit.Rule{Burst: lim.LoginBurst, Refill: lim.LoginRefill}, known)
	return lc
}

// accountLimits returns the limits for user's class: service accounts hold
// one of Config.ServiceRoles; everyone else, unknown emails included, is a
// person.
func (s *Server) accountLimits(user storage.User) AccountLimits {
	if slices.ContainsFunc(user.Roles, func(r string) bool { return slices.Contains(s.cfg.ServiceRoles, r) }) {
		return s.cfg.ServiceLimits
	}
	return s.cfg.PersonLimits
}

// takeLogin takes a token from every bucket of lc before the password is
// checked. When one is empty it takes nothing, records which limit refused,
// and returns the client error: the same status, message and retry hint
// whatever the email, password or device proof.
func (s *Server) takeLogin(ctx context.Context, lc loginCharges, addr clientAddress) (ratelimit.Ticket, error) {
	t, wait, ok := s.limits.Take(lc.all...)
	if ok {
		return t, nil
	}
	for i, c := range lc.all {
		if s.limits.Wait(c.Key) > 0 {
			s.metrics.limited(lc.limiter[i])
			s.log.LogAttrs(ctx, slog.LevelWarn, "login refused", slog.String("event", "login_rate_limited"),
				slog.String("limit", lc.limiter[i]), slog.String("peer", addr.String()))
		}
	}
	return ratelimit.Ticket{}, rateLimited(wait)
}

// probeRule is the shape of every failure budget.
func (s *Server) probeRule() ratelimit.Rule {
	return ratelimit.Rule{Burst: s.cfg.ProbeBurst, Refill: s.cfg.ProbeRefill}
}

// chargeFailure charges one failed credential (a refresh token, a caller's
// bearer token, an inactive answer to an unauthenticated introspection) to
// the client address's budget named by prefix, after the request was
// checked. It returns the error to answer with: failed unchanged while the
// budget lasts, RESOURCE_EXHAUSTED once it is spent. Only failing requests
// are charged and only they are refused, so a valid credential is never
// turned away because of what other clients behind the same address did.
func (s *Server) chargeFailure(ctx context.Context, prefix, limiter string, failed error) error {
	addr := s.clientAddr(ctx)
	if _, wait, ok := s.limits.Take(ratelimit.Charge{Key: prefix + addr.bucket(), Rule: s.probeRule()}); !ok {
		s.metrics.limited(limiter)
		s.log.LogAttrs(ctx, slog.LevelWarn, "token probing refused", slog.String("event", "probe_rate_limited"),
			slog.String("limit", limiter), slog.String("peer", addr.String()))
		return probeLimited(wait)
	}
	return failed
}
