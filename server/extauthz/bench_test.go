package extauthz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/tokens"
)

// Check cost, measured against the raw ECDSA P-256 verification in the
// same run: BenchmarkCheck{Cached,Uncached} / BenchmarkRawECDSAVerify.
// Every Check runs the revocation read in bbolt, cached or not; the
// gRPC rows include a real gRPC round trip over bufconn.
//
//	go test -run '^$' -bench . -benchtime 2s ./server/extauthz

func BenchmarkRawECDSAVerify(b *testing.B) {
	k, _ := tokens.GenerateKey(rand.Reader)
	d := sha256.Sum256([]byte("latch"))
	sig, _ := ecdsa.SignASN1(nil, k, d[:])
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
			b.Fatal("verify")
		}
	}
}

func benchCheck(b *testing.B, cache int, parallel bool) { benchCheckVia(b, cache, parallel, false) }

// benchCheckVia calls Check over gRPC, or directly (direct) to separate
// the decision's cost from the transport's.
func benchCheckVia(b *testing.B, cache int, parallel, direct bool) {
	e := newEnvWith(b, []interceptors.Option{interceptors.WithCacheSize(cache)})
	e.addUser("alice@example.com", "alice-password", "orders:read")
	req := request("GET", "/api/orders/1", bearer(e.login("alice@example.com", "alice-password", "orders").GetAccessToken()))
	ctx := context.Background()
	check := func() {
		var resp *authv3.CheckResponse
		var err error
		if direct {
			resp, err = e.ea.Check(ctx, req)
		} else {
			resp, err = e.check.Check(ctx, req)
		}
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatalf("Check = %v, %v", resp, err)
		}
	}
	b.ReportAllocs()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				check()
			}
		})
		return
	}
	for b.Loop() {
		check()
	}
}

func BenchmarkCheckCached(b *testing.B)           { benchCheck(b, 10_000, false) }
func BenchmarkCheckUncached(b *testing.B)         { benchCheck(b, 0, false) }
func BenchmarkCheckCachedParallel(b *testing.B)   { benchCheck(b, 10_000, true) }
func BenchmarkCheckUncachedParallel(b *testing.B) { benchCheck(b, 0, true) }
func BenchmarkCheckDirectCached(b *testing.B)     { benchCheckVia(b, 10_000, false, true) }
func BenchmarkCheckDirectUncached(b *testing.B)   { benchCheckVia(b, 0, false, true) }
