package main

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// crashLedger records only what the server confirmed (an OK reply): what
// was in flight when the process died may or may not have happened.
type crashLedger struct {
	mu             sync.Mutex
	revokedRefresh []string            // Revoke(refresh) returned OK
	revokedAccess  []string            // Revoke(access) returned OK
	rotated        []string            // exchanged by a Refresh that returned OK
	known          map[string][]string // session id → every refresh token we saw for it
	ops            int
}

func (l *crashLedger) add(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
	l.ops++
}

// crashWorker logs in and then rotates, revokes and re-logs in a loop until
// ctx ends (the process is killed under it).
func crashWorker(ctx context.Context, c latchv1.AuthServiceClient, l *crashLedger, r *rand.Rand) {
	for ctx.Err() == nil {
		resp, err := c.Login(ctx, &latchv1.LoginRequest{Email: "load@example.com", Password: "load-password-1"})
		if err != nil {
			continue
		}
		pair := resp.GetTokens()
		sid := pair.GetSessionId()
		l.add(func() { l.known[sid] = append(l.known[sid], pair.GetRefreshToken()) })
		for steps := 1 + r.IntN(6); steps > 0 && ctx.Err() == nil; steps-- {
			next, err := c.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: pair.GetRefreshToken()})
			if err != nil {
				break
			}
			old := pair.GetRefreshToken()
			pair = next.GetTokens()
			l.add(func() {
				l.rotated = append(l.rotated, old)
				l.known[sid] = append(l.known[sid], pair.GetRefreshToken())
			})
		}
		switch r.IntN(3) {
		case 0:
			if _, err := c.Revoke(ctx, &latchv1.RevokeRequest{Token: pair.GetRefreshToken()}); err == nil {
				tok := pair.GetRefreshToken()
				l.add(func() { l.revokedRefresh = append(l.revokedRefresh, tok) })
			}
		case 1:
			if _, err := c.Revoke(ctx, &latchv1.RevokeRequest{Token: pair.GetAccessToken()}); err == nil {
				tok := pair.GetAccessToken()
				l.add(func() { l.revokedAccess = append(l.revokedAccess, tok) })
			}
		}
	}
}

// TestCrashDurability is invariant 2 under load: the real binary serves
// concurrent logins, refreshes and revocations and is killed with SIGKILL at
// a random moment, several rounds on one database. After each restart every
// confirmed revocation holds, every confirmed rotation's old token is dead,
// no session has two live refresh tokens, and at the end the file passes
// bbolt's consistency check.
func TestCrashDurability(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	bin := latchBinary(t)
	db := filepath.Join(t.TempDir(), "latch.db")
	if out, err := userAdd(ctx, bin, db, "load@example.com", "load-password-1"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	flags := []string{"--introspect-open", "--probe-burst", "1000000", "--hash-concurrency", "2"}
	l := &crashLedger{known: map[string][]string{}}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const rounds = 5
	for round := 1; round <= rounds; round++ {
		p := startLatch(t, ctx, db, flags...)
		conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		client := latchv1.NewAuthServiceClient(conn)
		if round > 1 {
			checkCrashLedger(t, ctx, client, l, round)
		}
		loadCtx, stopLoad := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for w := range 8 {
			wr := rand.New(rand.NewPCG(r.Uint64(), uint64(w)))
			wg.Go(func() { crashWorker(loadCtx, client, l, wr) })
		}
		time.Sleep(time.Duration(300+r.IntN(700)) * time.Millisecond) // the kill lands at a random point
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		stopLoad()
		wg.Wait()
		conn.Close()
	}
	p := startLatch(t, ctx, db, flags...)
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	checkCrashLedger(t, ctx, latchv1.NewAuthServiceClient(conn), l, rounds+1)
	conn.Close()
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	st, err := bolt.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatalf("bbolt consistency check after %d kills: %v", rounds, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("%d SIGKILL rounds, %d confirmed operations: %d rotations, %d refresh revocations, %d access revocations, %d sessions",
		rounds, l.ops, len(l.rotated), len(l.revokedRefresh), len(l.revokedAccess), len(l.known))
	if len(l.rotated) == 0 || len(l.revokedRefresh)+len(l.revokedAccess) == 0 {
		t.Fatal("the load did not exercise rotations and revocations; the test proved nothing")
	}
}

func checkCrashLedger(t *testing.T, ctx context.Context, c latchv1.AuthServiceClient, l *crashLedger, round int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	active := func(tok string, hint latchv1.TokenTypeHint) bool {
		resp, err := c.Introspect(ctx, &latchv1.IntrospectRequest{Token: tok, TokenTypeHint: hint})
		if err != nil {
			t.Fatalf("round %d: Introspect: %v", round, err)
		}
		return resp.GetActive()
	}
	for _, tok := range l.revokedRefresh {
		if active(tok, latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN) {
			t.Errorf("round %d: a refresh token whose Revoke returned OK is active again", round)
		}
	}
	for _, tok := range l.revokedAccess {
		if active(tok, latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN) {
			t.Errorf("round %d: an access token whose Revoke returned OK is active again", round)
		}
	}
	for _, tok := range l.rotated {
		if active(tok, latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN) {
			t.Errorf("round %d: a refresh token already exchanged is active again", round)
		}
	}
	for sid, toks := range l.known {
		live := 0
		for _, tok := range toks {
			if active(tok, latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN) {
				live++
			}
		}
		if live > 1 {
			t.Errorf("round %d: session %s has %d live refresh tokens", round, sid, live)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}
