package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
)

// goGauge reads one gauge of the Go collector from the server's /metrics.
func goGauge(t *testing.T, p *latchProc, name string) float64 {
	t.Helper()
	fam := scrape(t, "http://"+p.httpAddr+"/metrics")[name]
	if fam == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	return metricValue(fam)
}

// wantGOGC is the GC percent the Go runtime takes from the environment.
func wantGOGC(t *testing.T) float64 {
	t.Helper()
	switch v := os.Getenv("GOGC"); v {
	case "":
		return 100
	case "off":
		return -1
	default:
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Skipf("GOGC=%q is not a number", v)
		}
		return float64(n)
	}
}

// TestLoginFloodLeavesRuntimeAlone runs the real binary under a flood of
// logins (more than its one hashing slot) and checks that serving changes
// none of the process-wide runtime settings operators own: GOMAXPROCS stays
// what the server started with and the GC percent is the one GOGC sets.
func TestLoginFloodLeavesRuntimeAlone(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"), "--hash-concurrency", "1")
	defer func() { _ = p.stop(t, ctx, syscall.SIGTERM) }()
	procs := goGauge(t, p, "go_sched_gomaxprocs_threads")
	gogc := wantGOGC(t)
	if got := goGauge(t, p, "go_gc_gogc_percent"); got != gogc {
		t.Errorf("idle server: GC percent %v, want %v (GOGC)", got, gogc)
	}

	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := latchv1.NewAuthServiceClient(conn)
	floodCtx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	// Each login names another unknown email, so that no account's login
	// limit stops the flood; each costs a full (dummy) password check.
	var sent, checked atomic.Int64
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range 4 { // four logins for one hashing slot: the slot never idles
		wg.Add(1)
		go func() {
			defer wg.Done()
			for floodCtx.Err() == nil {
				email := fmt.Sprintf("flood-%d@example.com", sent.Add(1))
				_, err := c.Login(floodCtx, &latchv1.LoginRequest{Email: email, Password: "flood-password-1"})
				if status.Code(err) == codes.Unauthenticated && checked.Add(1) >= 20 {
					once.Do(func() { close(enough) })
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatalf("20 password checks did not finish: %v", ctx.Err())
	}
	// Mid-flood: hashes are running and queued.
	if got := goGauge(t, p, "go_sched_gomaxprocs_threads"); got != procs {
		t.Errorf("during the login flood GOMAXPROCS is %v, want %v as at start", got, procs)
	}
	if got := goGauge(t, p, "go_gc_gogc_percent"); got != gogc {
		t.Errorf("during the login flood GC percent %v, want %v (GOGC)", got, gogc)
	}
	stopFlood()
	wg.Wait()
	if got := goGauge(t, p, "go_gc_gogc_percent"); got != gogc {
		t.Errorf("after the login flood GC percent %v, want %v (GOGC)", got, gogc)
	}
}
