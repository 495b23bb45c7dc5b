package main

import (
	"context"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server/proclend"
)

// gomaxprocs reads the server's GOMAXPROCS from its /metrics (the Go
// collector's go_sched_gomaxprocs_threads).
func gomaxprocs(t *testing.T, p *latchProc) int {
	t.Helper()
	fam := scrape(t, "http://"+p.httpAddr+"/metrics")["go_sched_gomaxprocs_threads"]
	if fam == nil || len(fam.GetMetric()) != 1 {
		t.Fatal("/metrics has no go_sched_gomaxprocs_threads")
	}
	return int(fam.GetMetric()[0].GetGauge().GetValue())
}

// TestLoginFloodLendsProc runs the real binary under a stream of logins:
// with --hash-lend-procs (the default) its GOMAXPROCS rises by one while
// passwords are hashed and comes back once they stop; with it off,
// GOMAXPROCS never moves. (When the test's own environment sets
// GOMAXPROCS, lending does not apply and the server must not lend.)
func TestLoginFloodLendsProc(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		lends bool
	}{
		{"default", nil, proclend.Applicable()},
		{"off", []string{"--hash-lend-procs=false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 2*time.Minute)
			db := filepath.Join(t.TempDir(), "latch.db")
			if out, err := userAdd(ctx, latchBinary(t), db, "flood@example.com", "flood-password-1"); err != nil {
				t.Fatalf("user add: %v\n%s", err, out)
			}
			p := startLatch(t, ctx, db, append([]string{"--hash-concurrency", "1"}, tc.extra...)...)
			defer func() { _ = p.stop(t, ctx, syscall.SIGTERM) }()
			base := gomaxprocs(t, p)
			if proclend.Applicable() && base != runtime.NumCPU() {
				t.Fatalf("idle server: GOMAXPROCS %d, want the default %d", base, runtime.NumCPU())
			}

			conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := latchv1.NewAuthServiceClient(conn)
			floodCtx, stopFlood := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for floodCtx.Err() == nil {
						_, _ = c.Login(floodCtx, &latchv1.LoginRequest{Email: "flood@example.com", Password: "flood-password-1"})
					}
				}()
			}
			// Logins queue for the one hashing slot, so it is busy
			// (and a P lent) from the first until the flood stops.
			maxSeen := base
			for i := 0; i < 200 && (maxSeen == base || !tc.lends); i++ {
				maxSeen = max(maxSeen, gomaxprocs(t, p))
				if !tc.lends && i == 40 {
					break
				}
				time.Sleep(25 * time.Millisecond)
			}
			stopFlood()
			wg.Wait()
			want := base
			if tc.lends {
				want = base + 1
			}
			if maxSeen != want {
				t.Fatalf("during the login flood GOMAXPROCS reached %d, want %d (idle %d)", maxSeen, want, base)
			}
			for deadline := time.Now().Add(10 * time.Second); gomaxprocs(t, p) != base; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("after the flood GOMAXPROCS stays %d, want %d", gomaxprocs(t, p), base)
				}
			}
		})
	}
}
