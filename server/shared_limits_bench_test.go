package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// perProcessLimits hides the store's SharedLimits, so that the server
// keeps every login bucket in memory as it does on bbolt.
type perProcessLimits struct{ storage.Store }

var benchPrefixes atomic.Int64

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoginSharedLimits measures what keeping the per-account login
// buckets in etcd adds to a Login. Each iteration runs one Login on a
// server whose buckets are in memory and one on a server whose per-account
// buckets are in etcd, both on the same etcd member and hasher, so that
// load from elsewhere on the machine falls on both alike; it reports the
// median of each, the median of their per-iteration difference, and that
// difference as a share of the in-memory Login. "wrong" is a wrong
// password (one shared take); "right" is the right one (a take, the refund
// of the failure token, and the new session). It also reports the CPU
// this process spent per Login of each kind (etcd's own is not counted).
// The hasher uses the default argon2id parameters, which are what bound
// Login throughput.
//
//	go test -run '^$' -bench LoginSharedLimits -benchtime 100x ./server
func BenchmarkLoginSharedLimits(b *testing.B) {
	srv := etcdtest.Start(b)
	hasher, err := password.NewHasher(password.DefaultParams(), 1)
	if err != nil {
		b.Fatal(err)
	}
	hash, err := hasher.Hash(context.Background(), "the-right-password")
	if err != nil {
		b.Fatal(err)
	}
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.LoginBurst, cfg.AddressBurst = 1<<30, 1<<30, 1<<30 // every iteration must reach the hasher
	open := func(b *testing.B, shared bool) *server.Server {
		st, err := etcd.Open(context.Background(), etcd.Config{Endpoints: []string{srv.Endpoint},
			Prefix: fmt.Sprintf("/bench-login-%d/", benchPrefixes.Add(1))})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		var store storage.Store = st
		if !shared {
			store = perProcessLimits{st}
		}
		s, err := server.New(context.Background(), store, hasher, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.CreateUser(context.Background(), storage.User{ID: "u1", Email: "alice@example.com", PasswordHash: hash}); err != nil {
			b.Fatal(err)
		}
		return s
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2])
	}
	for _, pw := range []string{"wrong", "right"} {
		b.Run(pw, func(b *testing.B) {
			memory, shared := open(b, false), open(b, true)
			req := &latchv1.LoginRequest{Email: "alice@example.com", Password: "a-wrong-password"}
			want := codes.Unauthenticated
			if pw == "right" {
				req.Password, want = "the-right-password", codes.OK
			}
			var cpuMemory, cpuShared time.Duration
			login := func(s *server.Server, cpu *time.Duration) time.Duration {
				startCPU, start := processCPU(b), time.Now()
				_, err := s.Login(context.Background(), req)
				d := time.Since(start)
				*cpu += processCPU(b) - startCPU
				if status.Code(err) != want {
					b.Fatalf("Login = %v, want %v", err, want)
				}
				return d
			}
			var inMemory, inEtcd, added []time.Duration
			for b.Loop() {
				m, e := login(memory, &cpuMemory), login(shared, &cpuShared)
				inMemory, inEtcd, added = append(inMemory, m), append(inEtcd, e), append(added, e-m)
			}
			mm, me, ma := median(inMemory), median(inEtcd), median(added)
			b.ReportMetric(mm, "in-memory-median-ns")
			b.ReportMetric(me, "shared-median-ns")
			b.ReportMetric(ma, "added-median-ns")
			b.ReportMetric(100*ma/mm, "added-%")
			n := float64(len(inMemory))
			b.ReportMetric(float64(cpuMemory)/n, "in-memory-cpu-ns/login")
			b.ReportMetric(float64(cpuShared)/n, "shared-cpu-ns/login")
		})
	}
}
