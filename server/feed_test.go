package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unavailableStore fails user lookups as an unreachable shared backend does.
type unavailableStore struct {
	storage.Store
	fail bool
}

func (u *unavailableStore) GetUserByEmail(ctx context.Context, email string) (storage.User, error) {
	if u.fail {
		return storage.User{}, fmt.Errorf("etcd: get user by email: %w: dial tcp 10.9.8.7:2379: connection refused", storage.ErrUnavailable)
	}
	return u.Store.GetUserByEmail(ctx, email)
}

// TestStorageUnavailableIsUnavailable: a backend that cannot be reached is
// answered UNAVAILABLE with the fixed message and a retry hint (RetryInfo;
// no endpoint or inner error), and the detail is logged.
func TestStorageUnavailableIsUnavailable(t *testing.T) {
	us := &unavailableStore{}
	e := newEnv(t, baseConfig(), func(s storage.Store) storage.Store { us.Store = s; return us })
	e.addUser("alice@example.com", "alice-password")
	us.fail = true
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	wantStatus(t, err, codes.Unavailable, "service unavailable; retry later")
	if !answerOf(err).retry {
		t.Errorf("UNAVAILABLE carries no retry hint: %v", status.Convert(err).Details())
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"event":"storage_unavailable"`) || !strings.Contains(logs, "10.9.8.7") {
		t.Errorf("unavailability not logged with its detail:\n%s", logs)
	}
}

// TestFollowRevocationsWithoutFeed: on a store that is not shared (bbolt),
// FollowRevocations has nothing to follow: it reports ready and returns.
func TestFollowRevocationsWithoutFeed(t *testing.T) {
	e := newEnv(t, baseConfig())
	ready := false
	if err := e.srv.FollowRevocations(ctxT(t), func() { ready = true }); err != nil || !ready {
		t.Fatalf("FollowRevocations on bbolt = %v, ready %v; want nil, ready", err, ready)
	}
}

// TestFollowRevocationsFromAnotherProcess: a server on etcd relays to its
// WatchRevocations streams a session revoked through another client of the
// same etcd (another replica), and its Introspect reports that session's
// token inactive although the token sits in its verified-token cache.
func TestFollowRevocationsFromAnotherProcess(t *testing.T) {
	srv := etcdtest.Start(t)
	open := func() storage.Store {
		s, err := etcd.Open(ctxT(t), etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: "/follow/"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other := open() // the other replica
	defer other.Close()
	e := newEnv(t, baseConfig(), func(b storage.Store) storage.Store { b.Close(); return open() })
	feedCtx, stopFeed := context.WithCancel(ctxT(t))
	feedDone := make(chan error, 1)
	ready := make(chan struct{})
	go func() { feedDone <- e.srv.FollowRevocations(feedCtx, func() { close(ready) }) }()

	svc := e.introspector()
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	if !e.introspect(svc, tp.GetAccessToken()).GetActive() { // verified and cached
		t.Fatal("fresh token inactive")
	}
	stream, err := e.client.WatchRevocations(svc, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *latchv1.RevocationEvent, 64)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- ev
		}
	}()
	<-ready // every revocation committed from now on reaches the streams
	if _, _, err := other.RevokeSession(ctxT(t), tp.GetSessionId(), storage.ReasonAdmin, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if !waitSession(t, events, tp.GetSessionId(), time.Minute) {
		t.Fatal("the stream never reported the session revoked by the other replica")
	}
	if e.introspect(svc, tp.GetAccessToken()).GetActive() {
		t.Fatal("Introspect: a token of a session revoked by another replica is active")
	}
	stopFeed()
	if err := <-feedDone; err != nil {
		t.Fatalf("FollowRevocations after cancel = %v, want nil", err)
	}
}

// waitSession reports whether events delivers a revocation of session id
// within d (a poll bound, not a performance threshold).
func waitSession(t *testing.T, events <-chan *latchv1.RevocationEvent, id string, d time.Duration) bool {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("WatchRevocations stream ended")
			}
			if ev.GetSessionId() == id {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// TestReplicasStartingTogetherAgreeOnKeys: three servers starting at once
// on an empty etcd prefix create one key set between them: the same JWKS
// everywhere and exactly one active key stored.
func TestReplicasStartingTogetherAgreeOnKeys(t *testing.T) {
	srv := etcdtest.Start(t)
	hasher, err := password.NewHasher(fastParams(), 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	stores := make([]storage.Store, n)
	servers := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			st, err := etcd.Open(ctxT(t), etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: "/together/"})
			if err != nil {
				errs[i] = err
				return
			}
			stores[i] = st
			servers[i], errs[i] = server.New(ctxT(t), st, hasher, baseConfig())
		})
	}
	wg.Wait()
	for i := range n {
		if stores[i] != nil {
			defer stores[i].Close()
		}
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
	}
	kids := func(s *server.Server) string {
		var ids []string
		for _, k := range s.JWKS().Keys {
			ids = append(ids, k.Kid)
		}
		slices.Sort(ids)
		return strings.Join(ids, ",")
	}
	for i := 1; i < n; i++ {
		if kids(servers[i]) != kids(servers[0]) {
			t.Fatalf("replicas publish different keys: %s vs %s", kids(servers[i]), kids(servers[0]))
		}
	}
	keys, err := stores[0].ListSigningKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, k := range keys {
		if k.State == storage.KeyActive {
			active++
		}
	}
	if active != 1 {
		t.Fatalf("%d active keys stored after a concurrent start, want 1", active)
	}
}
