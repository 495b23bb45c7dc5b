package server_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BenchmarkLoginEnumeration measures, with the production argon2id
// parameters, Login for an unknown email and for a known email with a wrong
// password, interleaved, and reports both medians and their ratio
// (the two must be indistinguishable). Run:
//
//	go test -run '^$' -bench LoginEnumeration -benchtime 200x ./server
func BenchmarkLoginEnumeration(b *testing.B) {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "latch.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	hasher, err := password.NewHasher(password.DefaultParams(), 1)
	if err != nil {
		b.Fatal(err)
	}
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.LoginBurst, cfg.AddressBurst = 1<<30, 1<<30, 1<<30 // every iteration must reach the hasher
	srv, err := server.New(context.Background(), st, hasher, cfg)
	if err != nil {
		b.Fatal(err)
	}
	h, _ := hasher.Hash(context.Background(), "the-right-password")
	if err := st.CreateUser(context.Background(), storage.User{ID: "u1", Email: "alice@example.com", PasswordHash: h}); err != nil {
		b.Fatal(err)
	}
	login := func(email string) time.Duration {
		start := time.Now()
		_, err := srv.Login(context.Background(), &latchv1.LoginRequest{Email: email, Password: "a-wrong-password"})
		d := time.Since(start)
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "invalid email or password" {
			b.Fatalf("Login(%s) = %v", email, err)
		}
		return d
	}
	var unknown, wrong []time.Duration
	for b.Loop() {
		unknown = append(unknown, login("nobody@example.com"))
		wrong = append(wrong, login("alice@example.com"))
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2])
	}
	mu, mw := median(unknown), median(wrong)
	b.ReportMetric(mu, "unknown-email-median-ns")
	b.ReportMetric(mw, "wrong-password-median-ns")
	b.ReportMetric(mu/mw, "median-ratio")
}
