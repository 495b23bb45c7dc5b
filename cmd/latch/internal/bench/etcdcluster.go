package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// etcdCluster is an etcd cluster the bench started: one etcd process per
// member on loopback, bootstrapped statically, each with its data and log
// under the run's temporary directory.
type etcdCluster struct {
	members   []*server
	endpoints []string // client URLs, in the order of members
	logs      []string // each member's log file
}

// startEtcdCluster starts an n-member cluster of the etcd binary bin in
// dir and waits until every member reports healthy (which needs a
// leader). On failure it stops what it started and returns the end of
// each member's log.
func startEtcdCluster(ctx context.Context, bin, dir string, n int) (*etcdCluster, error) {
	c := &etcdCluster{}
	var peers, initial []string
	for i := range n {
		client, err := freePort()
		if err != nil {
			return nil, err
		}
		peer, err := freePort()
		if err != nil {
			return nil, err
		}
		c.endpoints = append(c.endpoints, "http://"+client)
		peers = append(peers, "http://"+peer)
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, peer))
	}
	for i := range n {
		memberDir := filepath.Join(dir, fmt.Sprintf("etcd-m%d", i))
		if err := os.MkdirAll(memberDir, 0o700); err != nil {
			c.stop()
			return nil, err
		}
		logPath := filepath.Join(memberDir, "etcd.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			c.stop()
			return nil, err
		}
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(memberDir, "data"),
			"--listen-client-urls", c.endpoints[i], "--advertise-client-urls", c.endpoints[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		srv, err := start(cmd)
		logFile.Close() // the child holds its own descriptor
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		c.members, c.logs = append(c.members, srv), append(c.logs, logPath)
	}
	// A member is healthy only once the cluster has a leader, which needs
	// a quorum running: every member was started before any is waited for.
	for i, m := range c.members {
		if err := m.waitReady(ctx, func(ctx context.Context) error { return etcdHealthy(ctx, c.endpoints[i]) }); err != nil {
			err = fmt.Errorf("etcd member m%d: %w\n%s", i, err, tail(c.logs[i]))
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// stop stops every member (SIGINT, then SIGKILL after 10 s).
func (c *etcdCluster) stop() {
	for _, m := range c.members {
		m.stop()
	}
}

// etcdHealthy asks a member's /health endpoint, which reports true once it
// has a leader and can serve a linearizable read.
func etcdHealthy(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return errors.New("not healthy: " + strings.TrimSpace(string(body)))
	}
	return nil
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}
