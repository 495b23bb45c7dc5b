package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/storagetest"
)

var prefixes atomic.Int64

// openStore opens a store on a fresh prefix of srv, closed at cleanup.
func openStore(t testing.TB, srv *etcdtest.Server, opts ...etcd.Option) *etcd.Store {
	t.Helper()
	return openStoreAt(t, []string{srv.Endpoint}, opts...)
}

// openStoreAt opens a store with the client endpoints on a fresh prefix,
// closed at cleanup.
func openStoreAt(t testing.TB, endpoints []string, opts ...etcd.Option) *etcd.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := fmt.Sprintf("/latch-test-%d/", prefixes.Add(1))
	s, err := etcd.Open(ctx, etcd.Config{Endpoints: endpoints, Prefix: prefix}, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	conformance(t, []string{srv.Endpoint})
}

// TestConformanceCluster runs the same suite against a three-member
// cluster, the store given every member's endpoint: quorum reads and
// writes, watches and leases must behave as they do on one member.
func TestConformanceCluster(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	conformance(t, c.Endpoints())
}

func conformance(t *testing.T, endpoints []string) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return openStoreAt(t, endpoints) },
		storagetest.WithFootprint(func(t *testing.T, s storage.Store) int {
			es := s.(*etcd.Store)
			resp, err := es.Client().Get(ctxT(t), es.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatalf("count keys: %v", err)
			}
			return int(resp.Count)
		}),
		// Leases run on real time: a retention of a few seconds, no
		// slack and one-second buckets, so that the revoked sessions'
		// keys are gone a few seconds after their revocation.
		storagetest.WithRetention(storagetest.Retention{
			Retention: 4 * time.Second,
			Open: func(t *testing.T) storage.Store {
				return openStoreAt(t, endpoints, etcd.WithRevokedSessionRetention(4*time.Second),
					etcd.WithLeaseSlack(0), etcd.WithLeaseBucket(time.Second))
			},
			Patience: 20 * time.Second,
		}))
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var base = time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)

func newSession(t testing.TB, s storage.Store, id, user string, now time.Time) storage.Session {
	t.Helper()
	sess := storage.Session{ID: id, UserID: user, Audience: "orders", CurrentHash: storagetest.Digest(t),
		CreatedAt: now, LastRotatedAt: now, IdleExpiresAt: now.Add(7 * 24 * time.Hour), AbsoluteExpiresAt: now.Add(30 * 24 * time.Hour)}
	storagetest.EnsureUser(t, s, user)
	if err := s.CreateSession(ctxT(t), sess); err != nil {
		t.Fatalf("CreateSession(%s): %v", id, err)
	}
	return sess
}

// openPeers opens n stores on one prefix, each with its own etcd client, as
// n Latch processes would.
func openPeers(t testing.TB, srv *etcdtest.Server, n int, opts ...etcd.Option) []*etcd.Store {
	t.Helper()
	prefix := fmt.Sprintf("/latch-peers-%d/", prefixes.Add(1))
	var out []*etcd.Store
	for range n {
		s, err := etcd.Open(ctxT(t), etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: prefix}, opts...)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}

// TestRotationRaceAcrossClients is invariant 1 across processes: 64
// rotations of one token through three independent clients, exactly one
// wins and the family ends revoked for reuse.
func TestRotationRaceAcrossClients(t *testing.T) {
	srv := etcdtest.Start(t)
	peers := openPeers(t, srv, 3)
	for round := range 3 {
		sess := newSession(t, peers[0], fmt.Sprintf("race-%d", round), "u1", base)
		const n = 64
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			next := storagetest.Digest(t)
			wg.Go(func() {
				<-start
				_, errs[i] = peers[i%len(peers)].RotateRefreshToken(ctxT(t), storage.Rotation{SessionID: sess.ID,
					Presented: sess.CurrentHash, Next: next, Now: base.Add(time.Second), IdleTTL: time.Hour})
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, storage.ErrRefreshTokenReused), errors.Is(err, storage.ErrSessionRevoked):
			default:
				t.Errorf("caller %d: %v", i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d of %d rotations won, want exactly 1", round, wins, n)
		}
		for _, p := range peers {
			got, err := p.GetSession(ctxT(t), sess.ID)
			if err != nil || !got.Revoked() || got.RevokeReason != storage.ReasonReuse {
				t.Fatalf("round %d: session on a peer = %+v, %v; want revoked for reuse", round, got, err)
			}
		}
	}
}

// TestRevocationFeed: a revocation committed through one client reaches the
// feed of another, for sessions (revoked directly and by reuse) and jtis;
// expiry deletions and rotations are not reported.
func TestRevocationFeed(t *testing.T) {
	srv := etcdtest.Start(t)
	peers := openPeers(t, srv, 2)
	got := make(chan storage.Revocation, 16)
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- peers[0].WatchRevocations(ctx, func() { close(ready) }, func(r storage.Revocation) { got <- r })
	}()
	<-ready
	sess := newSession(t, peers[1], "s1", "u1", base)
	if _, _, err := peers[1].RevokeSession(ctxT(t), "s1", storage.ReasonAdmin, base); err != nil {
		t.Fatal(err)
	}
	want := func(w storage.Revocation) {
		t.Helper()
		for {
			select {
			case r := <-got:
				if r.JTI == w.JTI && r.SessionID == w.SessionID {
					if !r.ExpiresAt.Equal(w.ExpiresAt) {
						t.Fatalf("revocation %+v, want expiry %v", r, w.ExpiresAt)
					}
					return
				}
				t.Fatalf("unexpected revocation %+v while waiting for %+v", r, w)
			case <-ctx.Done():
				t.Fatalf("no revocation %+v", w)
			}
		}
	}
	want(storage.Revocation{SessionID: "s1", ExpiresAt: sess.ExpiresAt()})

	s2 := newSession(t, peers[1], "s2", "u1", base)
	next := storagetest.Digest(t)
	if _, err := peers[1].RotateRefreshToken(ctxT(t), storage.Rotation{SessionID: "s2", Presented: s2.CurrentHash, Next: next, Now: base, IdleTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := peers[1].RotateRefreshToken(ctxT(t), storage.Rotation{SessionID: "s2", Presented: s2.CurrentHash, Next: storagetest.Digest(t), Now: base, IdleTTL: time.Hour}); !errors.Is(err, storage.ErrRefreshTokenReused) {
		t.Fatalf("reuse: %v", err)
	}
	want(storage.Revocation{SessionID: "s2", ExpiresAt: base.Add(time.Hour)})
	if _, err := peers[1].DenyAccessToken(ctxT(t), "jti-1", base.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	want(storage.Revocation{JTI: "jti-1", ExpiresAt: base.Add(15 * time.Minute)})
	select {
	case r := <-got:
		t.Fatalf("unexpected extra revocation %+v", r)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WatchRevocations returned %v, want context.Canceled", err)
	}
}

// TestLeaseTTLFollowsTheRowsClock: a session created on a fake clock years
// in the past gets a lease for its remaining life judged by that clock
// (seven days and the slack), not one that already ended by the wall clock;
// a jti whose expiry passed is still kept for the slack.
func TestLeaseTTLFollowsTheRowsClock(t *testing.T) {
	srv := etcdtest.Start(t)
	slack, bucket := 10*time.Minute, time.Minute
	s := openStore(t, srv, etcd.WithLeaseSlack(slack), etcd.WithLeaseBucket(bucket))
	newSession(t, s, "s1", "u1", base)
	ttl := func(key string) time.Duration {
		t.Helper()
		resp, err := s.Client().Get(ctxT(t), key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("Get(%s) = %v, %v", key, resp, err)
		}
		if resp.Kvs[0].Lease == 0 {
			t.Fatalf("%s has no lease", key)
		}
		l, err := s.Client().TimeToLive(ctxT(t), clientv3.LeaseID(resp.Kvs[0].Lease))
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(l.TTL) * time.Second
	}
	prefix := s.Prefix()
	if got, lo, hi := ttl(prefix+"sessions/s1"), 7*24*time.Hour+slack-time.Minute, 7*24*time.Hour+slack+bucket+time.Minute; got < lo || got > hi {
		t.Errorf("session lease TTL %v, want in [%v, %v]", got, lo, hi)
	}
	if _, err := s.DenyAccessToken(ctxT(t), "old-jti", base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, lo, hi := ttl(prefix+"revocations/jti/old-jti"), slack-time.Minute, slack+bucket+time.Minute; got < lo || got > hi {
		t.Errorf("expired jti lease TTL %v, want in [%v, %v]", got, lo, hi)
	}
}

// TestLeaseDeletesExpiredRows: with no slack, a denied jti's row is deleted
// by etcd itself once its lease ends; no sweeper runs.
func TestLeaseDeletesExpiredRows(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv, etcd.WithLeaseSlack(0), etcd.WithLeaseBucket(time.Second))
	if _, err := s.DenyAccessToken(ctxT(t), "short", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	key := s.Prefix() + "revocations/jti/short"
	for {
		resp, err := s.Client().Get(ctxT(t), key, clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == 0 {
			return
		}
		select {
		case <-ctxT(t).Done():
			t.Fatal("the lease never deleted the row")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestUnavailable: with etcd gone, a request fails within the op timeout
// with storage.ErrUnavailable (not the caller's deadline), and the error
// names no endpoint's secret (there is none to name, but no value either).
func TestUnavailable(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv, etcd.WithOpTimeout(time.Second))
	if err := s.CreateUser(ctxT(t), storage.User{ID: "u1", Email: "a@example.com", PasswordHash: "$argon2id$secret-hash"}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err := s.GetUser(context.Background(), "u1")
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("GetUser with etcd stopped = %v, want ErrUnavailable", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the store's timeout must not look like the caller's deadline: %v", err)
	}
	if strings.Contains(err.Error(), "secret-hash") {
		t.Fatalf("error leaks a stored value: %v", err)
	}
	// The caller's own deadline stays the caller's.
	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.GetUser(c, "u1")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("GetUser with a short caller deadline = %v, want the caller's DeadlineExceeded", err)
	}
}

// TestOpenRefusesForeignPrefix: a prefix with keys but no Latch schema is
// not adopted, and a schema of another version is refused with an error
// that names both versions.
func TestOpenRefusesForeignPrefix(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv)
	if _, err := s.Client().Put(ctxT(t), "/someone-else/config", "x"); err != nil {
		t.Fatal(err)
	}
	_, err := etcd.Open(ctxT(t), etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: "/someone-else/"})
	if err == nil || !strings.Contains(err.Error(), "no Latch schema marker") {
		t.Fatalf("Open on a foreign prefix = %v, want a refusal", err)
	}
	// 1 and 2 are the unreleased layouts whose records this build does not
	// read; 4 and 99 are later ones.
	for _, v := range []string{"1", "2", "4", "99"} {
		if _, err := s.Client().Put(ctxT(t), s.Prefix()+"meta/schema", v); err != nil {
			t.Fatal(err)
		}
		_, err = etcd.Open(ctxT(t), etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: s.Prefix()})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf(`schema version %q is not "3"`, v)) || !strings.Contains(err.Error(), "on a new prefix") {
			t.Fatalf("Open on schema version %s = %v, want a refusal naming both versions and the way out", v, err)
		}
	}
	if _, err := etcd.Open(ctxT(t), etcd.Config{Prefix: "/x/"}); err == nil {
		t.Fatal("Open without endpoints succeeded")
	}
}

// TestRevocationsSurviveEtcdCrash is invariant 2 on etcd: once a
// revocation, a reuse detection or a deny has returned, killing etcd with
// SIGKILL and restarting it does not bring the session or token back.
func TestRevocationsSurviveEtcdCrash(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv)
	c := ctxT(t)
	newSession(t, s, "revoked", "u1", base)
	newSession(t, s, "live", "u1", base)
	reused := newSession(t, s, "reused", "u1", base)
	next := storagetest.Digest(t)
	if _, _, err := s.RevokeSession(c, "revoked", storage.ReasonRevoked, base); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateRefreshToken(c, storage.Rotation{SessionID: "reused", Presented: reused.CurrentHash, Next: next, Now: base, IdleTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateRefreshToken(c, storage.Rotation{SessionID: "reused", Presented: reused.CurrentHash, Next: storagetest.Digest(t), Now: base, IdleTTL: time.Hour}); !errors.Is(err, storage.ErrRefreshTokenReused) {
		t.Fatal(err)
	}
	if _, err := s.DenyAccessToken(c, "denied", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	srv.Crash()
	srv.Restart(t)
	for _, sid := range []string{"revoked", "reused"} {
		if revoked, err := s.AccessTokenRevoked(c, "j", sid, base.Add(time.Minute)); err != nil || !revoked {
			t.Fatalf("session %s after an etcd crash: revoked=%v, %v", sid, revoked, err)
		}
	}
	if _, err := s.RotateRefreshToken(c, storage.Rotation{SessionID: "reused", Generation: 1, Presented: next, Next: storagetest.Digest(t), Now: base.Add(time.Minute), IdleTTL: time.Hour}); !errors.Is(err, storage.ErrSessionRevoked) {
		t.Fatalf("rotation of the reused family after an etcd crash = %v, want ErrSessionRevoked", err)
	}
	if revoked, err := s.AccessTokenRevoked(c, "denied", "live", base); err != nil || !revoked {
		t.Fatalf("denied jti after an etcd crash: %v, %v", revoked, err)
	}
	if revoked, err := s.AccessTokenRevoked(c, "other", "live", base); err != nil || revoked {
		t.Fatalf("a live session's other token after an etcd crash: revoked=%v, %v", revoked, err)
	}
}

// TestFeedEndsWhenStoreCloses: closing the store under a running feed ends
// it with an error instead of retrying forever.
func TestFeedEndsWhenStoreCloses(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := etcd.Open(ctxT(t), etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: "/closing/"})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.WatchRevocations(ctxT(t), func() { close(ready) }, func(storage.Revocation) {}) }()
	<-ready
	s.Close()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WatchRevocations after Close = %v, want the closed-store error", err)
		}
	case <-ctxT(t).Done():
		t.Fatal("WatchRevocations kept running after the store was closed")
	}
}

// TestClusterMemberFailures: on a three-member cluster, a store given every
// endpoint keeps its data and keeps serving through the loss of the leader
// (killed, then restarted on its data) and through a follower frozen for
// longer than an election timeout.
func TestClusterMemberFailures(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	s := openStoreAt(t, c.Endpoints(), etcd.WithOpTimeout(5*time.Second))
	ctx := ctxT(t)
	// A request the client sends to a frozen member fails with
	// ErrUnavailable at the op timeout, until the client drops that member;
	// like any client, put retries that (a retried CreateUser of the same
	// user that had committed answers ErrAlreadyExists).
	put := func(id string) {
		t.Helper()
		for {
			err := s.CreateUser(ctx, storage.User{ID: id, Email: id + "@example.com", PasswordHash: "h"})
			switch {
			case err == nil, errors.Is(err, storage.ErrAlreadyExists):
				return
			case errors.Is(err, storage.ErrUnavailable) && ctx.Err() == nil:
				t.Logf("CreateUser %s: %v; retrying", id, err)
			default:
				t.Fatalf("CreateUser %s: %v", id, err)
			}
		}
	}
	get := func(id string) {
		t.Helper()
		if _, err := s.GetUser(ctx, id); err != nil {
			t.Fatalf("GetUser %s: %v", id, err)
		}
	}
	put("before")

	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Members[leader].Crash()
	next, err := c.WaitLeader(ctx, leader)
	if err != nil {
		t.Fatal(err)
	}
	put("after-leader-loss")
	get("before")
	c.Members[leader].Restart(t)

	follower := (next + 1) % 3
	c.Members[follower].Pause()
	time.Sleep(2 * time.Second) // longer than etcd's default 1 s election timeout
	put("while-paused")
	c.Members[follower].Resume()
	if _, err := c.WaitLeader(ctx, -1); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"before", "after-leader-loss", "while-paused"} {
		get(id)
	}
}
