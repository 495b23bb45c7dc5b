package server_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
)

// BenchmarkRefreshBackends compares Refresh throughput on bbolt and on etcd
// (one local member, fsync on, started by etcdtest) in one run on one
// machine: each iteration is one Refresh RPC through the full interceptor
// chain over bufconn (rotation in the store, user read, token signing).
// 32 independent refresh chains run concurrently, as 32 clients would.
// Compare the ratio, not the absolute numbers.
//
//	go test -run '^$' -bench RefreshBackends -benchtime 3s ./server
func BenchmarkRefreshBackends(b *testing.B) {
	srv := etcdtest.Start(b)
	var prefixes atomic.Int64
	backends := []struct {
		name string
		wrap []wrap
	}{
		{"bbolt", nil},
		{"etcd", []wrap{func(bs storage.Store) storage.Store {
			bs.Close()
			s, err := etcd.Open(ctxT(b), etcd.Config{Endpoints: []string{srv.Endpoint},
				Prefix: fmt.Sprintf("/bench-%d/", prefixes.Add(1))})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			refreshChains(b, newEnv(b, baseConfig(), be.wrap...))
		})
	}
}
