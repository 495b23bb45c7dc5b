package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// schemaVersion is the layout this package reads and writes.
const schemaVersion = "3"

// DefaultPrefix is the key prefix used when Config.Prefix is empty.
const DefaultPrefix = "/latch/"

// maxRetries bounds how often a read-modify-write starts again after losing
// a race. Every failed compare means another writer committed, so the bound
// is only reached under pathological contention.
const maxRetries = 1000

// maxLeaseLife caps a lease's TTL (etcd refuses more than about 285 years).
const maxLeaseLife = 10 * 365 * 24 * time.Hour

// DefaultMaxTxnOps is etcd's default --max-txn-ops: the most operations
// (and, separately, compares) one Txn may carry.
const DefaultMaxTxnOps = 128

// opsPerRevokedSession is what revoking one session costs in a Txn: the
// record, the state row, the revocation row and the user index entry, all
// moved to the lease of the session's retention (and one compare).
const opsPerRevokedSession = 4

// keepAliveTime and keepAliveTimeout decide how soon the client stops
// sending requests to a member that accepts them but answers nothing (a
// frozen process, a hung host, a partition that drops packets): it pings a
// member it has heard nothing from for keepAliveTime (gRPC's least) and
// drops the connection when no answer comes within keepAliveTimeout, so
// requests move to the other members within about 25 s (the ping waits for
// keepAliveTime of silence, checked every keepAliveTime). Until then the
// requests that land on it fail with the op timeout.
const (
	keepAliveTime    = 10 * time.Second
	keepAliveTimeout = 3 * time.Second
)

// errOpTimeout is the cause of a request context that ran out of the
// store's op timeout (as opposed to the caller's own deadline).
var errOpTimeout = errors.New("no answer within the op timeout")

// errContention reports a read-modify-write that kept losing races: the
// store could not serve the write now, so it is storage.ErrUnavailable
// (UNAVAILABLE, worth a retry), not an internal fault.
var errContention = fmt.Errorf("too much write contention; gave up: %w", storage.ErrUnavailable)

// Config says where the etcd cluster is and how to reach it.
type Config struct {
	// Endpoints are the cluster's client URLs, e.g. "https://10.0.0.1:2379".
	Endpoints []string
	// Prefix is prepended to every key (default DefaultPrefix). Two Latch
	// deployments on one cluster need different prefixes.
	Prefix string
	// DialTimeout bounds the first connection (default 5s).
	DialTimeout time.Duration
	// TLS, when set, is used for every connection to etcd (server
	// verification and, with a certificate, client authentication).
	TLS *tls.Config
	// Username and Password authenticate to etcd when its auth is enabled.
	Username, Password string
}

// Store is a storage.Store on etcd. It is safe for concurrent use, by any
// number of goroutines and processes sharing one prefix.
type Store struct {
	cli    *clientv3.Client
	p      string // key prefix, ending in "/"
	leases *leaseCache
	// bucketLocks queue this process's charges of one shared bucket
	// (limits.go).
	bucketLocks *stripes
	options

	// testHookBeforeBatch, when set (by tests only), runs before each
	// partial revocation Txn of RevokeUserSessions and DeleteUser.
	testHookBeforeBatch func()
}

var (
	_ storage.Store          = (*Store)(nil)
	_ storage.RevocationFeed = (*Store)(nil)
	_ storage.SpaceChecker   = (*Store)(nil)
)

// Option configures Open.
type Option func(*options)

type options struct {
	opTimeout   time.Duration
	leaseSlack  time.Duration
	leaseBucket time.Duration
	maxTxnOps   int
	log         *slog.Logger
	// retention is how long a revoked session is kept after its
	// revocation (WithRevokedSessionRetention); 0 keeps it to its expiry.
	retention time.Duration
}

// WithMaxTxnOps sets the most operations the store puts in one Txn (default
// DefaultMaxTxnOps, etcd's default); set it to the cluster's --max-txn-ops
// when that differs. It decides whether RevokeUserSessions and DeleteUser
// fit in one Txn (see the package documentation). At least 16.
func WithMaxTxnOps(n int) Option { return func(o *options) { o.maxTxnOps = n } }

// WithLogger sets the logger for what happens outside any request: the
// revocation feed's interruptions and resyncs. Default: discard. Nothing
// secret is logged (keys are logged without their prefix, values never).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithOpTimeout bounds each call of the store (default 5s; a caller's
// earlier deadline wins), so that a lost cluster fails requests instead of
// hanging them for as long as the client is willing to wait. A call that
// runs out of it fails with storage.ErrUnavailable. Calls that scan every
// row of a kind get 12 times as long.
func WithOpTimeout(d time.Duration) Option { return func(o *options) { o.opTimeout = d } }

// WithRevokedSessionRetention makes a revocation move the revoked
// session's keys (record, state row, revocation row, user index entry) to
// a lease that ends d after RevokedAt (or at the session's expiry, if that
// comes first), plus the lease slack, whichever call revoked it; see
// "Revoked sessions" in package storage. d must be at least the longest
// access-token lifetime plus leeway ever used with the prefix
// (server.Config.RevokedSessionRetention). Default 0: a revoked session is
// kept until its own expiry. Each process applies its own setting to the
// revocations it commits, so give every process of a prefix the same.
func WithRevokedSessionRetention(d time.Duration) Option {
	return func(o *options) { o.retention = d }
}

// Open connects to etcd, checks that the prefix holds Latch data of this
// schema version (or nothing, in which case it writes the schema marker) and
// returns the Store. ctx bounds the connection and the check.
func Open(ctx context.Context, cfg Config, opts ...Option) (*Store, error) {
	o := options{log: slog.New(slog.DiscardHandler), opTimeout: 5 * time.Second, leaseSlack: 5 * time.Minute, leaseBucket: 5 * time.Minute,
		maxTxnOps: DefaultMaxTxnOps}
	for _, opt := range opts {
		opt(&o)
	}
	prefix, err := normalisePrefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: at least one endpoint is required")
	}
	if o.opTimeout <= 0 || o.leaseSlack < 0 || o.leaseBucket < time.Second || o.maxTxnOps < 16 || o.retention < 0 {
		return nil, errors.New("etcd: op timeout must be positive, lease slack and revoked-session retention not negative, lease bucket at least 1s and max txn ops at least 16")
	}
	dial := cfg.DialTimeout
	if dial <= 0 {
		dial = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          dial,
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		TLS:                  cfg.TLS,
		Username:             cfg.Username,
		Password:             cfg.Password,
		Logger:               zap.NewNop(), // failures surface as errors, logged by the caller
		Context:              context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	s := &Store{cli: cli, p: prefix, options: o,
		leases: &leaseCache{byEnd: map[int64]clientv3.LeaseID{}}, bucketLocks: newStripes()}
	checkCtx, cancel := context.WithTimeout(ctx, dial)
	defer cancel()
	if err := s.initSchema(checkCtx); err != nil {
		cli.Close()
		if checkCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: no answer within %v (is etcd running and reachable, and are the TLS settings right?)", storage.ErrUnavailable, dial)
		}
		return nil, fmt.Errorf("etcd: open %s (prefix %q): %w", strings.Join(cfg.Endpoints, ","), prefix, err)
	}
	return s, nil
}

func normalisePrefix(p string) (string, error) {
	if p == "" {
		p = DefaultPrefix
	}
	if strings.ContainsRune(p, 0) {
		return "", errors.New("etcd: prefix must not contain NUL")
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}

// initSchema writes the schema marker on an empty prefix and checks it
// otherwise. A prefix holding keys but no marker belongs to something else
// and is refused rather than mixed with.
func (s *Store) initSchema(ctx context.Context) error {
	key := s.p + "meta/schema"
	var foreign int64
	for range 3 {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return wrapErr(ctx, "read schema", err)
		}
		if len(resp.Kvs) == 1 {
			if v := string(resp.Kvs[0].Value); v != schemaVersion {
				return fmt.Errorf("schema version %q is not %q: the data was written by another version of Latch, whose layout this one does not read; start this version on a new prefix", v, schemaVersion)
			}
			return nil
		}
		keys, err := s.cli.Get(ctx, s.p, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return wrapErr(ctx, "read prefix", err)
		}
		if foreign = keys.Count; foreign > 0 {
			// Either another program's data, or another replica that has
			// just written the marker: read the marker again.
			continue
		}
		txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, schemaVersion)).Commit()
		if err != nil {
			return wrapErr(ctx, "write schema", err)
		}
		if txn.Succeeded {
			return nil
		}
		// Another process initialised it first: read it again.
	}
	if foreign > 0 {
		return fmt.Errorf("the prefix holds %d keys but no Latch schema marker; refusing to use it (choose another prefix)", foreign)
	}
	return errContention
}

// Close releases the connection to etcd. Data stays in etcd.
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", err)
	}
	return nil
}

// Client returns the underlying etcd client, for health checks.
func (s *Store) Client() *clientv3.Client { return s.cli }

// opCtx bounds a call by the store's op timeout, or by ctx's own deadline
// when that comes first. A call that runs out of the op timeout fails with
// storage.ErrUnavailable; one that runs out of the caller's deadline with
// the caller's context error.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return s.boundedCtx(ctx, s.opTimeout)
}

func (s *Store) boundedCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx) // the caller's deadline comes first
	}
	return context.WithTimeoutCause(ctx, d, errOpTimeout)
}

// run calls fn with ctx bounded by the op timeout, and prefixes its error
// with "etcd: " and op. A done ctx fails at once.
func (s *Store) run(ctx context.Context, op string, fn func(context.Context) error) error {
	return s.runFor(ctx, op, s.opTimeout, fn)
}

// runScan is run for the calls that read every row of a kind
// (ListRevocations, CountLiveSessions, DeleteExpired): their bound is
// scanTimeouts op timeouts.
func (s *Store) runScan(ctx context.Context, op string, fn func(context.Context) error) error {
	return s.runFor(ctx, op, scanTimeouts*s.opTimeout, fn)
}

func (s *Store) runFor(ctx context.Context, op string, d time.Duration, fn func(context.Context) error) error {
	err := ctx.Err()
	if err == nil {
		c, cancel := s.boundedCtx(ctx, d)
		defer cancel()
		err = fn(c)
	}
	if err != nil {
		return fmt.Errorf("etcd: %s: %w", op, err)
	}
	return nil
}

// invalid is the error of a refused argument: what op requires.
func invalid(op, required string) error {
	return fmt.Errorf("etcd: %s: %s: %w", op, required, storage.ErrInvalidArgument)
}

// scanTimeouts is how many op timeouts a scanning call may take.
const scanTimeouts = 12

// wrapErr is clientErr(ctx, err) prefixed with what failed.
func wrapErr(ctx context.Context, what string, err error) error {
	return fmt.Errorf("%s: %w", what, clientErr(ctx, err))
}

// clientErr maps an error of the etcd client. When the caller's own
// context ended, that is the error; otherwise every failure of the cluster
// or of the way to it (no leader, a leader change, a member's timeout, a
// lost or closing connection, the store's op timeout, a refusal for lack
// of space or of permission) is storage.ErrUnavailable, which clients see
// as UNAVAILABLE with a retry hint. Only what etcd refuses as a malformed
// request stays as it is: that is a fault of the caller, and retrying it
// cannot help.
func clientErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(context.Cause(ctx), errOpTimeout) {
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, errOpTimeout)
		}
		return cerr
	}
	if noSpace(err) {
		return fmt.Errorf("%w: %w: %v", storage.ErrUnavailable, storage.ErrNoSpace, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %v", storage.ErrUnavailable, err)
	}
	return err
}

// noSpace reports whether err is etcd refusing a write under its NOSPACE
// alarm (the backend reached --quota-backend-bytes).
func noSpace(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee == rpctypes.ErrNoSpace
	}
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted && st.Message() == rpctypes.ErrNoSpace.Error()
}

// CheckSpace implements storage.SpaceChecker: it lists the cluster's
// alarms and returns an error wrapping storage.ErrNoSpace while a member
// has raised NOSPACE, under which etcd refuses every write until an
// operator frees space and disarms the alarm.
func (s *Store) CheckSpace(ctx context.Context) error {
	return s.run(ctx, "check space", func(ctx context.Context) error {
		resp, err := s.cli.AlarmList(ctx)
		if err != nil {
			return clientErr(ctx, err)
		}
		for _, a := range resp.Alarms {
			if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
				return fmt.Errorf("%w: member %x raised the NOSPACE alarm", storage.ErrNoSpace, a.MemberID)
			}
		}
		return nil
	})
}

// unavailable reports whether err means the cluster could not serve the
// request, which is every failure but a malformed request's (a fault of
// the request itself, which no retry can help): a member that cannot serve
// it (a learner, a stopped or unhealthy member), a revision compacted away
// under a paged read, a lease gone with an election, and every failure of
// the connection are all answered by a retry.
func unavailable(err error) bool {
	var ee rpctypes.EtcdError
	if !errors.As(err, &ee) {
		if st, ok := status.FromError(err); ok {
			ee, _ = rpctypes.Error(st.Err()).(rpctypes.EtcdError)
		}
	}
	switch error(ee) {
	case rpctypes.ErrEmptyKey, rpctypes.ErrValueProvided, rpctypes.ErrLeaseProvided, rpctypes.ErrTooManyOps,
		rpctypes.ErrDuplicateKey, rpctypes.ErrRequestTooLarge, rpctypes.ErrLeaseTTLTooLarge:
		return false
	}
	return true
}

// --- keys ---

func (s *Store) userKey(id string) string    { return s.p + "users/" + id }
func (s *Store) emailKey(e string) string    { return s.p + "emails/" + e }
func (s *Store) sessionKey(id string) string { return s.p + "sessions/" + id }
func (s *Store) sessStateKey(id string) string {
	return s.p + "sessstate/" + id
}
func (s *Store) userSessionKey(uid, sid string) string {
	return s.p + "usersessions/" + uid + "\x00" + sid
}
func (s *Store) userSessionPrefix(uid string) string { return s.p + "usersessions/" + uid + "\x00" }
func (s *Store) revPrefix() string                   { return s.p + "revocations/" }
func (s *Store) revSessionKey(sid string) string     { return s.p + "revocations/session/" + sid }
func (s *Store) revJTIKey(jti string) string         { return s.p + "revocations/jti/" + jti }
func (s *Store) keyKey(id string) string             { return s.p + "keys/" + id }
func (s *Store) keysetKey() string                   { return s.p + "meta/keyset" }
func (s *Store) refreshKeyKey(id string) string      { return s.p + "refreshkeys/" + id }
func (s *Store) refreshKeysetKey() string            { return s.p + "meta/refreshkeyset" }
func (s *Store) userFenceKey(uid string) string      { return s.p + "userfences/" + uid }

func encodeTime(t time.Time) string { return string(record.EncodeTime(t)) }

// --- leases ---

// leaseCache hands out leases that end after a given moment, shared by all
// rows whose leases end in the same bucket.
type leaseCache struct {
	mu    sync.Mutex
	byEnd map[int64]clientv3.LeaseID // bucket end (unix seconds, real time) → lease
}

// lease returns a lease that outlives a row expiring at expiresAt, judged
// against ref, the time of the operation (in the caller's clock). The row's
// remaining life is carried over to real time at the moment of the call, so
// a caller's clock decides how long, never when.
func (s *Store) lease(ctx context.Context, expiresAt, ref time.Time) (clientv3.LeaseID, error) {
	// Capped well below etcd's maximum lease TTL; no Latch row lives that long.
	remaining := min(max(expiresAt.Sub(ref), 0), maxLeaseLife)
	lc := s.leases
	realNow := time.Now()
	end := realNow.Add(remaining + s.leaseSlack).Truncate(s.leaseBucket).Add(s.leaseBucket)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if id, ok := lc.byEnd[end.Unix()]; ok {
		return id, nil
	}
	// Forget leases that have ended.
	maps.DeleteFunc(lc.byEnd, func(ended int64, _ clientv3.LeaseID) bool { return ended <= realNow.Unix() })
	ttl := int64(end.Sub(realNow)/time.Second) + 1
	resp, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, wrapErr(ctx, "grant lease", err)
	}
	lc.byEnd[end.Unix()] = resp.ID
	return resp.ID, nil
}

// forgetLeases drops every cached lease (after etcd reported one missing,
// e.g. revoked by an operator).
func (s *Store) forgetLeases() {
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	clear(s.leases.byEnd)
}

// commit runs a Txn built by build (which may ask for leases), and retries
// once with fresh leases if etcd no longer knows a cached one.
func (s *Store) commit(ctx context.Context, op string, build func() (clientv3.Txn, error)) (*clientv3.TxnResponse, error) {
	for attempt := 0; ; attempt++ {
		txn, err := build()
		if err != nil {
			return nil, err
		}
		resp, err := txn.Commit()
		if err != nil && attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.forgetLeases()
			continue
		}
		if err != nil {
			return nil, wrapErr(ctx, op, err)
		}
		return resp, nil
	}
}

// OpTimeout returns the bound on each call (WithOpTimeout).
func (s *Store) OpTimeout() time.Duration { return s.opTimeout }

// Prefix returns the key prefix, ending in "/".
func (s *Store) Prefix() string { return s.p }
