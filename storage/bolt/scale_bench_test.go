package bolt_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/storagetest"
)

var rotateScales = flag.String("rotate-scales", "10000,100000",
	"comma-separated stored-session counts for BenchmarkRotateAtScale (e.g. 10000,1000000)")

// BenchmarkRotateAtScale rotates 32 concurrent chains on databases holding
// the sessions counts of -rotate-scales (imported in bulk, as latch bench's
// scale rows do): the storage side of the scale target (rates within 20%
// of each other). Each database is built once, before its sub-benchmark, whatever
// b.N the framework tries; compare the sub-benchmarks' ns/op as a ratio.
func BenchmarkRotateAtScale(b *testing.B) {
	for _, n := range scaleCounts(b) {
		s, chains, _ := scaleStore(b, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(len(chains) / 2)
			before, tx0 := bolt.DBStats(s).TxStats, bolt.LastTxID(s)
			b.ResetTimer()
			defer reportCommits(b, s, before, tx0)
			b.RunParallel(func(pb *testing.PB) {
				cur := &chains[next.Add(1)-1]
				for pb.Next() {
					nd := storagetest.Digest(b)
					if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: cur.id, Generation: cur.gen, Presented: cur.h, Next: nd, Now: base, IdleTTL: time.Hour}); err != nil {
						b.Error(err)
						return
					}
					cur.h, cur.gen = nd, cur.gen+1
				}
			})
		})
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRotateSpreadAtScale is BenchmarkRotateAtScale with every
// rotation on a session drawn at random from all those stored (32 workers,
// each on its own stripe of them), as when many users refresh, rather than
// on 32 chains whose pages stay hot: what each rotation writes then lands
// on pages spread over the whole file. It reports the pages each rotation
// writes (bbolt's transaction stats), which grow with the tree's depth.
func BenchmarkRotateSpreadAtScale(b *testing.B) {
	for _, n := range scaleCounts(b) {
		s, _, current := scaleStore(b, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			const workers = 32
			var next atomic.Int64
			b.SetParallelism(workers / 2)
			before, tx0 := bolt.DBStats(s).TxStats, bolt.LastTxID(s)
			b.ResetTimer()
			defer reportCommits(b, s, before, tx0)
			b.RunParallel(func(pb *testing.PB) {
				w := int(next.Add(1) - 1)
				rng := rand.New(rand.NewPCG(uint64(w), uint64(n)))
				for pb.Next() {
					i := w + workers*rng.IntN((n-w+workers-1)/workers) // stripe w: i ≡ w (mod workers)
					nd := storagetest.Digest(b)
					cur := &current[i]
					if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: cur.id, Generation: cur.gen, Presented: cur.h, Next: nd, Now: base, IdleTTL: time.Hour}); err != nil {
						b.Error(err)
						return
					}
					cur.h, cur.gen = nd, cur.gen+1
				}
			})
		})
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCommits reports what the rotations since before and tx0 cost in
// commits: pages written per rotation (its two leaves and the branch pages
// above them, shared within a commit), rotations per commit, and the time
// each commit spent spilling the tree to pages and writing and syncing them.
func reportCommits(b *testing.B, s *bolt.Store, before bbolt.TxStats, tx0 int) {
	after := bolt.DBStats(s).TxStats
	commits := float64(max(bolt.LastTxID(s)-tx0, 1))
	b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/float64(b.N), "pages-written/op")
	b.ReportMetric(float64(b.N)/commits, "rotations/commit")
	b.ReportMetric(float64((after.GetSpillTime()-before.GetSpillTime()).Microseconds())/commits, "spill-µs/commit")
	b.ReportMetric(float64((after.GetWriteTime()-before.GetWriteTime()).Microseconds())/commits, "write+sync-µs/commit")
}

// scaleCounts parses -rotate-scales.
func scaleCounts(b *testing.B) []int {
	b.Helper()
	var out []int
	for _, f := range strings.Split(*rotateScales, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("-rotate-scales: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out
}

// chainToken is what a client's current refresh token says: its session,
// its generation and its digest.
type chainToken struct {
	id  string
	gen uint64
	h   storage.TokenHash
}

// scaleStore opens a store holding n imported sessions and returns it with
// the current tokens of 32 more sessions whose tokens the caller rotates,
// and the current tokens of the n sessions.
func scaleStore(b *testing.B, n int) (*bolt.Store, []chainToken, []chainToken) {
	b.Helper()
	s, err := bolt.Open(filepath.Join(b.TempDir(), "scale.db"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	all := make([]storage.Session, 0, 20_000)
	current := make([]chainToken, n)
	for i := range n {
		current[i] = chainToken{id: fmt.Sprintf("s%07d-%d", i*7919%n, i), h: storagetest.Digest(b)}
		all = append(all, storage.Session{ID: current[i].id, UserID: "u", CurrentHash: current[i].h,
			CreatedAt: base, LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)})
		if len(all) == cap(all) || i == n-1 {
			if err := s.ImportSessions(ctx, all); err != nil {
				b.Fatal(err)
			}
			all = all[:0]
		}
	}
	chains := make([]chainToken, 32)
	sessions := make([]storage.Session, len(chains))
	for i := range chains {
		chains[i] = chainToken{id: fmt.Sprintf("chain%02d", i), h: storagetest.Digest(b)}
		sessions[i] = storage.Session{ID: chains[i].id, UserID: "u", CurrentHash: chains[i].h,
			CreatedAt: base, LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)}
	}
	if err := s.ImportSessions(ctx, sessions); err != nil {
		b.Fatal(err)
	}
	return s, chains, current
}
