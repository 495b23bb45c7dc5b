package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/latchauth/latch/internal/password"
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

// loginCharge is one bucket a login attempt is counted against.
type loginCharge struct {
	ratelimit.Charge
	limiter string // the limiter's name in metrics and logs
	// shared marks a per-account bucket that every replica on the store
	// counts against together (see takeLogin).
	shared bool
}

// loginCharges are the buckets one login attempt is counted against.
type loginCharges struct {
	all    []loginCharge
	refund int // index in all of the bucket a right password gives back
}

// loginCharges builds the charges for an attempt on email (user is the
// stored account, zero for an unknown email; device the id of a device
// proof that verified for that account, or ""). An unknown email is charged
// exactly as a person's account is, so that the answers cannot tell them
// apart. The buckets of a stored account and of a device proof Latch issued
// are kept (ratelimit.Charge.Keep): their number is bounded by the users
// and the logins, not by what an attacker sends, so no flood of other keys
// can make the table forget a victim's spent budget. On a store that
// several replicas share (storage.SharedLimits), the per-account buckets
// (failures per account or device proof, and the login rate) live in the
// store, unknown emails' too, so that N replicas do not give a guesser N
// budgets; the address's bucket stays in this process.
func (s *Server) loginCharges(email string, user storage.User, device string, addr clientAddress) loginCharges {
	lim := s.accountLimits(user)
	known := user.ID != ""
	shared := s.sharedLimits != nil
	var lc loginCharges
	add := func(key, limiter string, r ratelimit.Rule, keep, sharedBucket bool) {
		lc.all = append(lc.all, loginCharge{Charge: ratelimit.Charge{Key: key, Rule: r, Keep: keep}, limiter: limiter, shared: sharedBucket})
	}
	add(bucketAddress+addr.bucket(), LimiterLoginAddress, ratelimit.Rule{Burst: s.cfg.AddressBurst, Refill: s.cfg.AddressRefill}, false, false)
	lc.refund = len(lc.all)
	if device != "" {
		add(bucketDevice+device, LimiterLoginDevice, ratelimit.Rule{Burst: s.cfg.DeviceBurst, Refill: s.cfg.DeviceRefill}, true, shared)
	} else {
		add(bucketAccount+email, LimiterLoginAccount, ratelimit.Rule{Burst: lim.FailureBurst, Refill: lim.FailureRefill}, known, shared)
	}
	add(bucketRate+email, LimiterLoginRate, ratelimit.Rule{Burst: lim.LoginBurst, Refill: lim.LoginRefill}, known, shared)
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

// loginTicket is what takeLogin took, so that a right password can give
// back its failure token.
type loginTicket struct {
	local  ratelimit.Ticket
	charge loginCharge    // the bucket refund gives back to
	slot   *password.Slot // the hashing slot the password is checked in
}

// refund gives back the token the attempt took from the account's (or
// device's) failure budget. A shared budget is given back even if the
// client has gone meanwhile (the password was right; the store bounds the
// call); one that cannot be reached keeps the token (logged): the login
// itself has succeeded, and a person loses at most one guess until the
// bucket refills.
func (s *Server) refund(ctx context.Context, t loginTicket) {
	if !t.charge.shared {
		t.local.Refund(t.charge.Key)
		return
	}
	if err := s.sharedLimits.ReturnToken(context.WithoutCancel(ctx), s.now(), sharedBucket(t.charge)); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "failure token not given back", slog.String("event", "login_refund_failed"),
			slog.String("limit", t.charge.limiter), slog.String("error", err.Error()))
	}
}

// sharedBucket is c as a bucket of the store.
func sharedBucket(c loginCharge) storage.Bucket {
	return storage.Bucket{Key: c.Key, Burst: c.Rule.Burst, Refill: c.Rule.Refill}
}

// takeLogin takes a token from every bucket of lc before the password is
// checked. When one is empty it takes nothing, records which limit refused,
// and returns the client error: the same status, message and retry hint
// whatever the email, password or device proof.
//
// The buckets kept in this process are taken first and the shared ones
// after, in one store transaction; if the store refuses or cannot be
// reached, the local tokens are given back. That order keeps a flood that
// the address's budget stops away from the store. A store that cannot be
// reached, or does not answer within sharedChargeTimeout, fails the
// attempt (UNAVAILABLE) and gives its hashing slot back: the password is
// never checked without its limits.
func (s *Server) takeLogin(ctx context.Context, lc loginCharges, addr clientAddress) (loginTicket, error) {
	var local []ratelimit.Charge
	var shared []storage.Bucket
	for _, c := range lc.all {
		if c.shared {
			shared = append(shared, sharedBucket(c))
		} else {
			local = append(local, c.Charge)
		}
	}
	t, wait, ok := s.limits.Take(local...)
	if !ok {
		for _, c := range lc.all {
			if !c.shared && s.limits.Wait(c.Key) > 0 {
				s.loginLimited(ctx, c.limiter, addr)
			}
		}
		return loginTicket{}, rateLimited(wait)
	}
	// The hashing slot is reserved before the shared budgets are charged,
	// so that the store's writes for login attempts are bounded by how fast
	// this process checks passwords, not by how fast clients send them: a
	// flood of attempts on fresh emails from many addresses cannot fill
	// etcd with bucket rows faster than it is hashed.
	slot, err := s.hasher.Reserve(ctx)
	if err != nil {
		for _, c := range local {
			t.Refund(c.Key)
		}
		return loginTicket{}, fmt.Errorf("reserve a hashing slot: %w", err)
	}
	ticket := loginTicket{local: t, charge: lc.all[lc.refund], slot: slot}
	if len(shared) == 0 {
		return ticket, nil
	}
	refused, wait, err := s.takeShared(ctx, shared)
	if err == nil && len(refused) == 0 {
		return ticket, nil
	}
	slot.Release()
	for _, c := range local {
		t.Refund(c.Key)
	}
	if err != nil {
		return loginTicket{}, fmt.Errorf("take shared login budget: %w", err)
	}
	for _, c := range lc.all {
		if c.shared && slices.Contains(refused, c.Key) {
			s.loginLimited(ctx, c.limiter, addr)
		}
	}
	return loginTicket{}, rateLimited(wait)
}

// sharedChargeTimeout bounds the charge of the shared login budgets. The
// charge runs while the attempt holds a hashing slot, and the attempts
// queued for a slot give up after the hasher's queue timeout (2 s) as busy
// (RESOURCE_EXHAUSTED). Without this bound a stalled store (a frozen etcd
// member, a lost quorum) would hold every slot for the store's whole op
// timeout, and the logins and password changes queued behind would be shed
// as busy when the fault is the store's. Ending the charge well inside the
// queue timeout gives the slot back in time, and each attempt is answered
// UNAVAILABLE with a retry hint, as every storage outage is. A healthy
// store answers in milliseconds.
const sharedChargeTimeout = time.Second

// errSharedChargeTimeout is the cause of a shared charge that ran out of
// sharedChargeTimeout: the store did not answer, so it is unavailable.
var errSharedChargeTimeout = fmt.Errorf("no answer within %v: %w", sharedChargeTimeout, storage.ErrUnavailable)

// takeShared takes a token from each of bs in the store, within
// sharedChargeTimeout. A charge that runs out of that bound while the
// client still waits fails with storage.ErrUnavailable, not with the
// deadline of its own context: the client set no such deadline.
func (s *Server) takeShared(ctx context.Context, bs []storage.Bucket) ([]string, time.Duration, error) {
	cctx, cancel := context.WithTimeoutCause(ctx, sharedChargeTimeout, errSharedChargeTimeout)
	defer cancel()
	refused, wait, err := s.sharedLimits.TakeTokens(cctx, s.now(), bs...)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), errSharedChargeTimeout) {
		return nil, 0, fmt.Errorf("%w (%v)", errSharedChargeTimeout, err)
	}
	return refused, wait, err
}

// loginLimited records a login refused by limiter.
func (s *Server) loginLimited(ctx context.Context, limiter string, addr clientAddress) {
	s.metrics.limited(limiter)
	s.log.LogAttrs(ctx, slog.LevelWarn, "login refused", slog.String("event", "login_rate_limited"),
		slog.String("limit", limiter), slog.String("peer", addr.String()))
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
