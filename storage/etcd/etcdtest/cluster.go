package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/latchauth/latch/internal/certs/certstest"
)

// Cluster is a running etcd cluster of several members on loopback,
// bootstrapped statically (every member knows every peer from the start).
type Cluster struct {
	// Members are the cluster's members, in the order of Endpoints.
	Members []*Server
}

// StartCluster starts an n-member cluster for t, waits until it has a
// leader and every member is healthy, and stops every member when t ends.
// With WithTLS every member serves clients over TLS, under one fresh CA.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if n < 1 {
		t.Fatalf("etcdtest: a cluster needs at least one member, not %d", n)
	}
	bin := Require(t)
	var lastErr error
	for range 3 { // a free port may be taken between probe and bind
		c, err := startCluster(t, bin, n, o)
		if err == nil {
			return c
		}
		lastErr = err
	}
	t.Fatalf("etcdtest: %v", lastErr)
	return nil
}

func startCluster(t testing.TB, bin string, n int, o options) (*Cluster, error) {
	c := &Cluster{}
	var ca *certstest.CA
	scheme := "http"
	if o.tls {
		ca, scheme = certstest.NewCA(t, "latch test CA"), "https"
	}
	var clients, peers, initial []string
	for i := range n {
		cport, err := freePort()
		if err != nil {
			return nil, err
		}
		pport, err := freePort()
		if err != nil {
			return nil, err
		}
		clients = append(clients, fmt.Sprintf("%s://127.0.0.1:%d", scheme, cport))
		peers = append(peers, fmt.Sprintf("http://127.0.0.1:%d", pport))
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i]))
	}
	for i := range n {
		dir := t.TempDir()
		s := &Server{bin: bin, logPath: filepath.Join(dir, "etcd.log"), hc: &http.Client{}, Endpoint: clients[i]}
		s.args = memberArgs(fmt.Sprintf("m%d", i), dir, clients[i], peers[i], strings.Join(initial, ","), o)
		if ca != nil {
			s.serveTLS(t, ca, dir)
		}
		c.Members = append(c.Members, s)
	}
	stopAll := func() {
		for _, m := range c.Members {
			m.Stop()
		}
	}
	for _, m := range c.Members {
		if err := m.spawn(); err != nil {
			stopAll()
			return nil, err
		}
	}
	// Every member must run before any can elect a leader, so wait for
	// health only once all are started.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.waitHealthy(60 * time.Second) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopAll()
		return nil, err
	}
	t.Cleanup(func() {
		stopAll()
		if t.Failed() {
			for i, m := range c.Members {
				t.Logf("etcd member m%d log tail:\n%s", i, m.tail())
			}
		}
	})
	return c, nil
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.Endpoint
	}
	return eps
}

// Leader returns the index in Members of the current leader, asking each
// running member in turn; it fails when none answers within ctx or the
// cluster has no leader.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	for {
		if i, err := c.leader(ctx); err == nil {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("etcdtest: no leader: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) leader(ctx context.Context) (int, error) {
	ids := make(map[uint64]int, len(c.Members))
	var leader uint64
	for i, m := range c.Members {
		st, err := memberStatus(ctx, m.Endpoint)
		if err != nil {
			continue
		}
		ids[st.Header.MemberId] = i
		if st.Leader != 0 {
			leader = st.Leader
		}
	}
	if i, ok := ids[leader]; ok && leader != 0 {
		return i, nil
	}
	return -1, errors.New("no member reports a reachable leader")
}

// WaitLeader waits until the cluster has a leader other than the member at
// index not (-1 for any), and returns its index.
func (c *Cluster) WaitLeader(ctx context.Context, not int) (int, error) {
	for {
		i, err := c.Leader(ctx)
		if err == nil && i != not {
			return i, nil
		}
		if err != nil {
			return -1, err
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("etcdtest: leader is still m%d: %w", not, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func memberStatus(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	// No logger: asking a stopped member is expected, not worth a warning.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Context: ctx, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return cli.Status(ctx, endpoint)
}
