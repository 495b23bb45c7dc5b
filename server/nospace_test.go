package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// noSpaceStore refuses the real store's writes as etcd does under its
// NOSPACE alarm while full is set, and reports the alarm through
// storage.SpaceChecker.
type noSpaceStore struct {
	storage.Store
	full atomic.Bool
}

var _ storage.SpaceChecker = (*noSpaceStore)(nil)

func (n *noSpaceStore) err(op string) error {
	if n.full.Load() {
		return fmt.Errorf("etcd: %s: %w: %w: etcdserver: mvcc: database space exceeded", op, storage.ErrUnavailable, storage.ErrNoSpace)
	}
	return nil
}

func (n *noSpaceStore) CheckSpace(context.Context) error {
	if n.full.Load() {
		return fmt.Errorf("etcd: check space: %w: member 1 raised the NOSPACE alarm", storage.ErrNoSpace)
	}
	return nil
}

func (n *noSpaceStore) CreateSession(ctx context.Context, s storage.Session) error {
	if err := n.err("create session"); err != nil {
		return err
	}
	return n.Store.CreateSession(ctx, s)
}

func (n *noSpaceStore) RotateRefreshToken(ctx context.Context, r storage.Rotation) (storage.Session, error) {
	if err := n.err("rotate"); err != nil {
		return storage.Session{}, err
	}
	return n.Store.RotateRefreshToken(ctx, r)
}

func (n *noSpaceStore) DenyAccessToken(ctx context.Context, jti string, exp time.Time) (bool, error) {
	if err := n.err("deny"); err != nil {
		return false, err
	}
	return n.Store.DenyAccessToken(ctx, jti, exp)
}

// TestStoreOutOfSpace: while the store refuses writes for lack of space,
// Login, Refresh and Revoke answer UNAVAILABLE with the fixed message and
// a retry hint, logging storage_no_space with what to do; reads work;
// /readyz stays ready but says writes are refused, grpc.health.v1 stays
// SERVING and latch_storage_no_space is 1. When the store accepts writes
// again, the next readiness check logs storage_space_recovered and clears
// both, and writes work without a restart.
func TestStoreOutOfSpace(t *testing.T) {
	ns := &noSpaceStore{}
	e := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(server.NewMetrics())},
		wrappers: []wrap{func(s storage.Store) storage.Store { ns.Store = s; return ns }}})
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()
	tp := e.login("alice@example.com", "alice-password")
	gauge := func() float64 {
		t.Helper()
		v, ok := sample(scrape(t, e), "latch_storage_no_space", nil)
		if !ok {
			t.Fatal("latch_storage_no_space is not exposed")
		}
		return v
	}
	wantReady(t, e, "before", true, "ready")
	if g := gauge(); g != 0 {
		t.Fatalf("latch_storage_no_space = %v with space, want 0", g)
	}

	ns.full.Store(true)
	for name, call := range map[string]func() error{
		"Login": func() error {
			_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
			return err
		},
		"Refresh": func() error {
			_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
			return err
		},
		"Revoke": func() error {
			_, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetAccessToken()})
			return err
		},
	} {
		err := call()
		wantStatus(t, err, codes.Unavailable, "service unavailable; retry later")
		hinted := false
		for _, d := range status.Convert(err).Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() >= 10*time.Second {
				hinted = true
			}
		}
		if !hinted {
			t.Errorf("%s out of space: no RetryInfo of at least 10 s", name)
		}
	}
	if r := e.introspect(ictx, tp.GetAccessToken()); !r.GetActive() {
		t.Error("Introspect out of space: inactive; reads must work and the refused Revoke must change nothing")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"event":"storage_no_space"`) || !strings.Contains(logs, "alarm disarm") || !strings.Contains(logs, `"method":"Login"`) {
		t.Errorf("no storage_no_space record with the method and what to do:\n%s", logs)
	}
	if strings.Contains(logs, `"event":"internal_error"`) {
		t.Error("a refused write was logged as an internal error")
	}
	wantReady(t, e, "out of space", true, "ready; writes refused: storage out of space")
	if g := gauge(); g != 1 {
		t.Errorf("latch_storage_no_space = %v out of space, want 1", g)
	}

	ns.full.Store(false)
	// Readiness asks the store about its space at most every 5 s: a check
	// within that keeps the last answer, one after it sees the space.
	e.clock.Advance(time.Second)
	wantReady(t, e, "space again, within 5 s of the last space check", true, "ready; writes refused: storage out of space")
	e.clock.Advance(5 * time.Second)
	wantReady(t, e, "space again", true, "ready\n")
	if _, body := get(t, e.http.URL+"/readyz"); body != "ready\n" {
		t.Errorf("/readyz with space again = %q, want \"ready\\n\"", body)
	}
	if g := gauge(); g != 0 {
		t.Errorf("latch_storage_no_space = %v with space again, want 0", g)
	}
	if !strings.Contains(e.logs.String(), `"event":"storage_space_recovered"`) {
		t.Error("recovery not logged")
	}
	if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()}); err != nil {
		t.Fatalf("Refresh with space again: %v (the refused attempt must not have used the token up)", err)
	}
}
