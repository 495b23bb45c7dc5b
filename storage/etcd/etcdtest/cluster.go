package etcdtest

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster of several members on loopback,
// bootstrapped statically (every member knows every peer from the start).
type Cluster struct {
	// Members are the cluster's members, in the order of Endpoints.
	Members []*Server
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
func (c *Cluster) Leader(ctx context.Context) (int, error) { return c.WaitLeader(ctx, -1) }

// WaitLeader waits until the cluster has a leader other than the member at
// index not (-1 for any), and returns its index.
func (c *Cluster) WaitLeader(ctx context.Context, not int) (int, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if i, ok := c.leader(ctx); ok && i != not {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("etcdtest: waiting for a leader other than member %d (-1: any): %w", not, ctx.Err())
		case <-tick.C:
		}
	}
}

// leader asks every member for its status and returns the index of the
// leader they name, if that member answered.
func (c *Cluster) leader(ctx context.Context) (int, bool) {
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
	i, ok := ids[leader]
	return i, ok && leader != 0
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
