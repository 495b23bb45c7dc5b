package etcd_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/storagetest"
)

// BenchmarkRotateRefreshToken compares refresh rotation on etcd (one local
// member, fsync on) and on bbolt, in one run on one machine; compare the
// ratio, not the absolute numbers. Each parallel worker rotates its own
// session's chain, as independent clients do.
//
//	go test -run '^$' -bench RotateRefreshToken -benchtime 3s ./storage/etcd
func BenchmarkRotateRefreshToken(b *testing.B) {
	srv := etcdtest.Start(b)
	backends := []struct {
		name string
		open func(b *testing.B) storage.Store
	}{
		{"bbolt", func(b *testing.B) storage.Store {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"etcd", func(b *testing.B) storage.Store { return openStore(b, srv) }},
	}
	for _, be := range backends {
		for _, par := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", be.name, par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
				s := be.open(b)
				defer s.Close()
				var ids atomic.Int64
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					id := fmt.Sprintf("bench-%d", ids.Add(1))
					sess := newSession(b, s, id, "u-"+id, base)
					cur, now, ctx := sess.CurrentHash, base, context.Background()
					var gen uint64
					for pb.Next() {
						next := storagetest.Digest(b)
						now = now.Add(time.Second)
						if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: id, Generation: gen, Presented: cur, Next: next, Now: now, IdleTTL: time.Hour}); err != nil {
							b.Error(err)
							return
						}
						cur, gen = next, gen+1
					}
				})
			})
		}
	}
}
