package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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

// nicedThreads counts the threads of process pid whose nice value is nice
// (Linux: field 19 of /proc/PID/task/TID/stat).
func nicedThreads(t *testing.T, pid, nice int) int {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended meanwhile
		}
		// After the command name, in parentheses: state (field 3) ...
		// nice (field 19).
		fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(fields) > 16 && fields[16] == strconv.Itoa(nice) {
			n++
		}
	}
	return n
}

// TestLoginFloodLendsProc runs the real binary under a stream of logins.
// By default its GOMAXPROCS rises by one while passwords are hashed and
// comes back once they stop (--hash-lend-procs), and the hashes run on a
// thread at nice 10 (--hash-nice); with both off, GOMAXPROCS never moves
// and no thread is niced. (When the test's own environment sets
// GOMAXPROCS, lending does not apply and the server must not lend.)
func TestLoginFloodLendsProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc and lowers thread priority the Linux way")
	}
	for _, tc := range []struct {
		name  string
		extra []string
		lends bool
		nice  int
	}{
		{"default", nil, proclend.Applicable(), defaultHashNice},
		{"off", []string{"--hash-lend-procs=false", "--hash-nice", "0"}, false, 0},
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
			maxSeen, niced := base, 0
			for i := 0; i < 200 && (maxSeen == base || !tc.lends || niced == 0 && tc.nice > 0); i++ {
				maxSeen = max(maxSeen, gomaxprocs(t, p))
				niced = max(niced, nicedThreads(t, p.cmd.Process.Pid, defaultHashNice))
				if (!tc.lends || tc.nice == 0) && i == 40 {
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
			// One hashing slot: one niced thread at a time.
			if wantNiced := min(tc.nice, 1); niced != wantNiced {
				t.Fatalf("during the login flood %d threads at nice %d, want %d", niced, defaultHashNice, wantNiced)
			}
			for deadline := time.Now().Add(10 * time.Second); gomaxprocs(t, p) != base; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("after the flood GOMAXPROCS stays %d, want %d", gomaxprocs(t, p), base)
				}
			}
		})
	}
}
