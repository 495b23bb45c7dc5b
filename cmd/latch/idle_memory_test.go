package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// maxIdleRSSKiB is the idle-memory target for `latch serve`.
const maxIdleRSSKiB = 32 << 10

// TestIdleRSS starts the real binary and reads its resident set once it
// listens: the startup dummy argon2id hash (19 MiB) must not stay resident
// (debug.FreeOSMemory in serve), so an idle server stays under 32 MiB. This is a
// memory bound, not a timing one; Linux only (/proc).
func TestIdleRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/status")
	}
	ctx := testCtx(t, time.Minute)
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"))
	defer func() { _ = p.stop(t, ctx, syscall.SIGTERM) }()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("idle VmRSS %d KiB", kib)
			if kib > maxIdleRSSKiB {
				t.Fatalf("idle VmRSS %d KiB, want at most %d KiB", kib, maxIdleRSSKiB)
			}
			return
		}
	}
	t.Fatal("no VmRSS line")
}
