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

// statNice returns the nice value in a /proc/.../stat file (field 19,
// counted after the command name in parentheses), or false when the file
// is gone (a thread that ended) or unreadable.
func statNice(path string) (int, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) <= 16 {
		return 0, false
	}
	n, err := strconv.Atoi(fields[16])
	return n, err == nil
}

// processNice returns the nice value process pid runs at (its main
// thread's): the value the server inherited from whoever started the test,
// e.g. 19 under `nice -n 19 go test`.
func processNice(t *testing.T, pid int) int {
	t.Helper()
	n, ok := statNice(fmt.Sprintf("/proc/%d/stat", pid))
	if !ok {
		t.Fatalf("cannot read the nice value of process %d", pid)
	}
	return n
}

// nicedThreads counts the threads of process pid whose nice value is nice
// (Linux: /proc/PID/task/TID/stat).
func nicedThreads(t *testing.T, pid, nice int) int {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range stats {
		if v, ok := statNice(path); ok && v == nice {
			n++
		}
	}
	return n
}

// TestLoginFloodLendsProc runs the real binary under a stream of logins.
// By default its GOMAXPROCS rises by one while passwords are hashed and
// comes back once they stop (--hash-lend-procs), and each hash starts on a
// thread whose nice value is raised by 10 (--hash-nice) and that ends with
// the hash; with both off, GOMAXPROCS never moves and no thread is niced.
// (When the test's own environment sets GOMAXPROCS, lending does not apply
// and the server must not lend.)
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
			// The hashing threads run at the server's own nice value plus
			// --hash-nice, capped at 19. A server already at 19 (the
			// test run under `nice -n 19`) cannot lower them further, and
			// then their priority cannot be told apart from the others'.
			pid := p.cmd.Process.Pid
			procNice := processNice(t, pid)
			hashNice := min(procNice+defaultHashNice, 19)
			observable := hashNice != procNice
			if !observable {
				t.Logf("the server runs at nice %d, the most a thread can have: the hashing threads' priority is not observable here, only GOMAXPROCS is checked", procNice)
			}
			wantNiced := tc.nice > 0 && observable
			// Something must be seen not to happen (no lent P, no
			// lowered thread): sample for at least a second.
			negative := !tc.lends || (tc.nice == 0 && observable)
			// Logins queue for the one hashing slot, so it is busy
			// (and a P lent) from the first until the flood stops.
			maxSeen, niced := base, 0
			for i := 0; i < 200; i++ {
				maxSeen = max(maxSeen, gomaxprocs(t, p))
				if observable {
					niced = max(niced, nicedThreads(t, pid, hashNice))
				}
				seen := (!tc.lends || maxSeen > base) && (!wantNiced || niced > 0)
				if seen && (!negative || i >= 40) {
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
			if wantNiced && niced == 0 {
				t.Fatalf("during the login flood no thread ran at nice %d (the server's %d + --hash-nice %d)", hashNice, procNice, defaultHashNice)
			}
			if !wantNiced && observable && niced != 0 {
				t.Fatalf("with --hash-nice 0, %d threads ran at nice %d", niced, hashNice)
			}
			// Once the hashes stop, the lent P is taken back and every
			// lowered thread is gone (each ends with its hash: none is
			// left for other goroutines to run on).
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				procs, left := gomaxprocs(t, p), 0
				if observable {
					left = nicedThreads(t, pid, hashNice)
				}
				if procs == base && left == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the flood GOMAXPROCS stays %d (want %d) and %d threads stay at nice %d (want 0)", procs, base, left, hashNice)
				}
			}
		})
	}
}
