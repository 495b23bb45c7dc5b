// Package etcdtest starts a real, single-member etcd server for tests: the
// etcd binary (Debian's etcd-server package, or $LATCH_ETCD) on free
// loopback ports with a data directory in t.TempDir(), stopped at cleanup.
//
// When no etcd binary is found the test is skipped with a message saying how
// to install one, unless LATCH_REQUIRE_ETCD=1 (set by .ci/test), in which
// case it fails: CI must never pass by skipping the etcd backend.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running etcd.
type Server struct {
	// Endpoint is the client URL, http://127.0.0.1:PORT.
	Endpoint string
	logPath  string
	stopOnce sync.Once
	stop     func()
}

// Binary returns the etcd binary to run, or "" when none is installed.
func Binary() string {
	if p := os.Getenv("LATCH_ETCD"); p != "" {
		return p
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	return ""
}

// Require skips (or, with LATCH_REQUIRE_ETCD=1, fails) t when etcd is not
// installed, and returns the binary otherwise.
func Require(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin != "" {
		return bin
	}
	const how = "etcd is not installed: `apt-get install -y etcd-server` (Debian/Ubuntu), or set LATCH_ETCD to an etcd binary"
	if os.Getenv("LATCH_REQUIRE_ETCD") == "1" {
		t.Fatalf("LATCH_REQUIRE_ETCD=1 but %s", how)
	}
	t.Skip(how)
	return ""
}

// Start starts etcd for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	var lastErr error
	for range 3 { // a free port may be taken between probe and bind
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("etcdtest: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(t testing.TB, bin string) (*Server, error) {
	dir := t.TempDir()
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	logPath := filepath.Join(dir, "etcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--name", "latch-test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "latch-test="+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-outputs", "stderr")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	s := &Server{Endpoint: client, logPath: logPath, stop: stop}
	// Wait for /health; etcd on one member is ready within a few seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("etcd exited before it was ready (%v):\n%s", err, s.tail())
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("etcd not healthy after 30s:\n%s", s.tail())
		case <-tick.C:
		}
		if healthy(ctx, client) {
			break
		}
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("etcd log tail:\n%s", s.tail())
		}
	})
	return s, nil
}

func healthy(ctx context.Context, endpoint string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(buf.String(), `"health":"true"`)
}

// tail returns the end of etcd's log, for failure messages.
func (s *Server) tail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}

// Stop stops etcd and waits for it to exit (SIGTERM, then SIGKILL after
// 15 s); cleanup does it otherwise.
func (s *Server) Stop() { s.stopOnce.Do(s.stop) }
