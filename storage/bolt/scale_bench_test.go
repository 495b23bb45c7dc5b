package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/storagetest"
)

// BenchmarkRotateAtScale rotates 32 concurrent chains on databases holding
// 10k and 100k sessions (imported in bulk, as latch bench's scale rows do):
// the storage side of issue 8's scale target (rates within 20%).
func BenchmarkRotateAtScale(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "scale.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			all := make([]storage.Session, 0, 20_000)
			for i := range n {
				all = append(all, storage.Session{ID: fmt.Sprintf("s%07d-%d", i*7919%n, i), UserID: "u", CurrentHash: storagetest.Digest(b),
					CreatedAt: base, LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)})
				if len(all) == cap(all) || i == n-1 {
					if err := s.ImportSessions(ctx, all); err != nil {
						b.Fatal(err)
					}
					all = all[:0]
				}
			}
			// The chains start from the last imported sessions' digests:
			// re-import 32 more whose digests this benchmark knows.
			chains := make([]storage.Session, 32)
			for i := range chains {
				chains[i] = storage.Session{ID: fmt.Sprintf("chain%02d", i), UserID: "u", CurrentHash: storagetest.Digest(b),
					CreatedAt: base, LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)}
			}
			if err := s.ImportSessions(ctx, chains); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				cur := chains[next.Add(1)-1].CurrentHash
				for pb.Next() {
					nd := storagetest.Digest(b)
					if _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: cur, Next: nd, Now: base, IdleTTL: time.Hour}); err != nil {
						b.Error(err)
						return
					}
					cur = nd
				}
			})
		})
	}
}
