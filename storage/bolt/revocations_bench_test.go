package bolt_test

import (
	"context"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/storagetest"
)

// BenchmarkIntrospectRevocationReads compares Introspect's two revocation
// checks (caller and target) made as two reads with the same checks made
// in one (AccessTokensRevoked).
func BenchmarkIntrospectRevocationReads(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	for _, id := range []string{"caller", "target"} {
		storagetest.EnsureUser(b, s, "u-"+id)
		if err := s.CreateSession(ctx, storage.Session{ID: id, UserID: "u-" + id, CurrentHash: storagetest.Digest(b), CreatedAt: base,
			IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("two-reads", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r1, err1 := s.AccessTokenRevoked(ctx, "j1", "caller", base)
			r2, err2 := s.AccessTokenRevoked(ctx, "j2", "target", base)
			if err1 != nil || err2 != nil || r1 || r2 {
				b.Fatal(r1, r2, err1, err2)
			}
		}
	})
	b.Run("one-read", func(b *testing.B) {
		refs := []storage.AccessTokenRef{{JTI: "j1", SessionID: "caller"}, {JTI: "j2", SessionID: "target"}}
		b.ReportAllocs()
		for b.Loop() {
			r, err := s.AccessTokensRevoked(ctx, refs, base)
			if err != nil || r[0] || r[1] {
				b.Fatal(r, err)
			}
		}
	})
}
