package etcd_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/storagetest"
)

var prefixes atomic.Int64

// openStore opens a store on a fresh prefix of srv, closed at cleanup.
func openStore(t testing.TB, srv *etcdtest.Server, opts ...etcd.Option) *etcd.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := fmt.Sprintf("/latch-test-%d/", prefixes.Add(1))
	s, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: prefix}, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Store { return openStore(t, srv) })
}
