// Package etcdproc runs a local etcd cluster as child processes: n members
// of a given etcd binary, bootstrapped statically on free loopback ports,
// each with its data and log in its own directory. A member can be
// stopped, killed, paused and restarted. The tests' etcd harness and the
// benchmark both start their clusters through it.
package etcdproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config says what cluster Start runs.
type Config struct {
	// Bin is the etcd binary.
	Bin string
	// Dir holds one directory per member (m0, m1, …) with its data and
	// its log, etcd.log.
	Dir string
	// Members is the number of members, at least one.
	Members int
	// Args are extra etcd flags given to every member, such as
	// --max-txn-ops, or --cert-file and --key-file with ClientTLS.
	Args []string
	// ClientTLS, when set, is how a client reaches the members over TLS:
	// their client URLs are https://, and Args must give etcd its server
	// certificate. Start asks the members whether they are healthy with it.
	ClientTLS *tls.Config
}

// Cluster is a running cluster.
type Cluster struct {
	// Members are the cluster's members, named m0, m1, … in this order.
	Members []*Member
}

// Member is one etcd process of a cluster.
type Member struct {
	// Name is the member's etcd name: m0, m1, …
	Name string
	// Endpoint is its client URL: http://127.0.0.1:PORT, or https:// with
	// Config.ClientTLS.
	Endpoint string
	// LogPath is the file its output goes to.
	LogPath string

	bin  string
	args []string
	hc   *http.Client

	mu     sync.Mutex
	proc   *exec.Cmd
	exited chan error // of the running process; nil when stopped
	paused bool
}

// Start starts the cluster cfg describes and waits until every member is
// healthy, which needs the cluster to have a leader. A free port may be
// taken by another process between probe and bind, so Start tries up to
// three times on fresh ports. On failure it stops what it started and the
// error holds the end of each failing member's log.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Members < 1 {
		return nil, fmt.Errorf("etcd cluster needs at least one member, not %d", cfg.Members)
	}
	var err error
	for range 3 {
		var c *Cluster
		if c, err = start(ctx, cfg); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func start(ctx context.Context, cfg Config) (*Cluster, error) {
	scheme, hc := "http", &http.Client{}
	if cfg.ClientTLS != nil {
		scheme, hc = "https", &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.ClientTLS}}
	}
	var clients, peers, initial []string
	for i := range cfg.Members {
		client, err := FreePort()
		if err != nil {
			return nil, err
		}
		peer, err := FreePort()
		if err != nil {
			return nil, err
		}
		clients = append(clients, scheme+"://"+client)
		peers = append(peers, "http://"+peer)
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, peer))
	}
	c := &Cluster{}
	for i := range cfg.Members {
		name := fmt.Sprintf("m%d", i)
		dir := filepath.Join(cfg.Dir, name)
		// A failed attempt leaves data bootstrapped for other ports.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("etcd member %s: %w", name, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("etcd member %s: %w", name, err)
		}
		args := []string{
			"--name", name,
			"--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--logger", "zap", "--log-outputs", "stderr"}
		c.Members = append(c.Members, &Member{Name: name, Endpoint: clients[i], LogPath: filepath.Join(dir, "etcd.log"),
			bin: cfg.Bin, args: append(args, cfg.Args...), hc: hc})
	}
	for _, m := range c.Members {
		if err := m.spawn(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	// Every member must run before any can elect a leader, so wait for
	// health only once all are started, for as long as an election on a
	// busy machine may take.
	errs := make([]error, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.waitHealthy(ctx, 60*time.Second) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Stop stops every member, as Member.Stop does.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Stop()
	}
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.Endpoint
	}
	return eps
}

// FreePort returns a loopback address (127.0.0.1:port) on a port that was
// free a moment ago, for a process about to listen on it.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// spawn starts the process without waiting for it to be ready.
func (m *Member) spawn() error {
	logFile, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("etcd member %s: start %s: %w", m.Name, m.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	m.mu.Lock()
	m.proc, m.exited, m.paused = cmd, exited, false
	m.mu.Unlock()
	return nil
}

// waitHealthy waits until the member reports healthy, and stops it if it
// exits first or is not healthy within limit.
func (m *Member) waitHealthy(ctx context.Context, limit time.Duration) error {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			m.Stop()
			return fmt.Errorf("etcd member %s exited before it was ready (%v):\n%s", m.Name, err, m.Tail())
		case <-ctx.Done():
			m.Stop()
			return fmt.Errorf("etcd member %s not healthy: %w:\n%s", m.Name, ctx.Err(), m.Tail())
		case <-tick.C:
		}
		if m.healthy(ctx) {
			return nil
		}
	}
}

// healthy asks the member's /health endpoint, which reports true once the
// cluster has a leader and the member can serve a linearizable read.
func (m *Member) healthy(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`)
}

// Stop stops the member and waits for it to exit (SIGTERM, then SIGKILL
// after 15 s). Stopping a stopped member does nothing.
func (m *Member) Stop() { m.halt(syscall.SIGTERM) }

// Crash kills the member with SIGKILL (no clean shutdown) and waits for it
// to exit; Restart brings it back on the same data.
func (m *Member) Crash() { m.halt(syscall.SIGKILL) }

func (m *Member) halt(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return
	}
	_ = m.proc.Process.Signal(sig)
	if m.paused { // a stopped process acts on SIGTERM only once continued
		_ = m.proc.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		_ = m.proc.Process.Kill()
		<-m.exited
	}
	m.proc, m.exited, m.paused = nil, nil, false
}

// Pause freezes the member with SIGSTOP: its connections stay open but it
// answers nothing, as a member stalled by its host does. Resume ends it.
func (m *Member) Pause() { m.signal(syscall.SIGSTOP, true) }

// Resume continues a member Pause froze.
func (m *Member) Resume() { m.signal(syscall.SIGCONT, false) }

func (m *Member) signal(sig syscall.Signal, paused bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return
	}
	_ = m.proc.Process.Signal(sig)
	m.paused = paused
}

// Restart stops the member if it runs, starts it again on the same ports
// and data, as an operator restarting it would, and waits up to 30 s until
// it is healthy.
func (m *Member) Restart(ctx context.Context) error {
	m.Stop()
	if err := m.spawn(); err != nil {
		return err
	}
	return m.waitHealthy(ctx, 30*time.Second)
}

// Tail returns the end of the member's log, for failure messages.
func (m *Member) Tail() string {
	b, _ := os.ReadFile(m.LogPath)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}
