// Command gen-schema2 wrote storage/bolt/testdata/schema2.db with the
// schema-2 code of commit cfcecf7 (JSON session records, sessdigests index,
// session summaries rewritten by every rotation): the file
// TestOpenSchema2File upgrades. It only builds against that commit:
//
//	git archive cfcecf7 | tar -x -C /tmp/old && cp -r this-dir /tmp/old/cmd/ &&
//	(cd /tmp/old && go run ./cmd/gen-schema2 schema2.db)
package main

import (
	"context"
	"crypto/sha256"
	"log"
	"os"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
)

func digest(s string) storage.TokenHash { return sha256.Sum256([]byte(s)) }

func main() {
	path := os.Args[1]
	ctx := context.Background()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := bolt.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	must(s.CreateUser(ctx, storage.User{ID: "u1", Email: "a@example.com", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}))
	sess := func(id string, h storage.TokenHash) storage.Session {
		return storage.Session{ID: id, UserID: "u1", Audience: "api", CurrentHash: h, CreatedAt: base, LastRotatedAt: base,
			IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(24 * time.Hour)}
	}
	// live: rotated twice (digests live-0, live-1, live-2; live-2 current).
	must(s.CreateSession(ctx, sess("live", digest("live-0"))))
	for i, p := range []string{"live-0", "live-1"} {
		_, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: digest(p), Next: digest([]string{"live-1", "live-2"}[i]),
			Now: base.Add(time.Duration(i+1) * 10 * time.Minute), IdleTTL: time.Hour})
		must(err)
	}
	// revoked, and old: never rotated, idle expiry at base+1h.
	must(s.CreateSession(ctx, sess("revoked", digest("revoked-0"))))
	must(s.RevokeSession(ctx, "revoked", storage.ReasonRevoked, base.Add(time.Minute)))
	must(s.CreateSession(ctx, sess("old", digest("old-0"))))
	must(s.DenyAccessToken(ctx, "jti-1", base.Add(15*time.Minute)))
	must(s.Close())
}
