package storagetest

import (
	"context"
	"fmt"
	"time"

	"github.com/latchauth/latch/storage"
)

// Golden values: a session, a user, a signing key and a refresh key with
// every field set. Backends store them (StoreGolden) and check that each
// row holds the one record encoding of storage/internal/record, the same
// bytes on every backend.
var goldenTime = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

// GoldenSession is a revoked session with every field set.
func GoldenSession() storage.Session {
	s := storage.Session{
		ID: "sess-golden", UserID: "user-golden", Audience: "api.example",
		PreviousRotatedAt: goldenTime.Add(time.Minute), Generation: 7, CreatedAt: goldenTime,
		LastRotatedAt: goldenTime.Add(2 * time.Minute), IdleExpiresAt: goldenTime.Add(time.Hour),
		AbsoluteExpiresAt: goldenTime.Add(24 * time.Hour), RevokedAt: goldenTime.Add(3 * time.Minute), RevokeReason: "logout",
	}
	for i := range s.CurrentHash {
		s.CurrentHash[i] = byte(i + 1)
		s.PreviousHash[i] = byte(0xff - i)
	}
	return s
}

// GoldenUser is a disabled user with every field set.
func GoldenUser() storage.User {
	return storage.User{
		ID: "user-golden", Email: "golden@example.com", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		Roles: []string{"admin", "reader"}, Disabled: true, CreatedAt: goldenTime, UpdatedAt: goldenTime.Add(time.Second),
	}
}

// GoldenKey is a signing key with every field set but RetiredAt. It
// is active, so InitSigningKey stores it unchanged.
func GoldenKey() storage.SigningKey {
	return storage.SigningKey{
		ID: "kid-golden", PrivateKey: []byte{0x30, 0x81, 0x87, 0x02, 0x01}, PublicKey: []byte{0x04, 0x01, 0x02, 0x03},
		State: storage.KeyActive, CreatedAt: goldenTime, ActivatedAt: goldenTime.Add(time.Second),
	}
}

// GoldenRefreshKey is a retired refresh key with every field set.
func GoldenRefreshKey() storage.RefreshKey {
	return storage.RefreshKey{ID: "rk-golden", Secret: []byte{0x01, 0x02, 0x03, 0xfe}, State: storage.KeyRetired,
		CreatedAt: goldenTime, ActivatedAt: goldenTime.Add(time.Second), RetiredAt: goldenTime.Add(time.Hour)}
}

// StoreGolden stores GoldenUser, GoldenSession, GoldenKey and
// GoldenRefreshKey. GoldenUser is disabled and CreateSession stores
// sessions only for enabled users, so it stores the user enabled, then the
// session, then disables the user: the stored rows are then exactly the
// golden ones.
func StoreGolden(ctx context.Context, s storage.Store) error {
	u := GoldenUser()
	enabled := u
	enabled.Disabled = false
	if err := s.CreateUser(ctx, enabled); err != nil {
		return fmt.Errorf("create golden user: %w", err)
	}
	if err := s.CreateSession(ctx, GoldenSession()); err != nil {
		return fmt.Errorf("create golden session: %w", err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(stored *storage.User) error { *stored = u; return nil }); err != nil {
		return fmt.Errorf("disable golden user: %w", err)
	}
	if _, err := s.InitSigningKey(ctx, GoldenKey()); err != nil {
		return fmt.Errorf("store golden signing key: %w", err)
	}
	golden := func([]storage.RefreshKey) ([]storage.RefreshKey, error) {
		return []storage.RefreshKey{GoldenRefreshKey()}, nil
	}
	if _, err := s.UpdateRefreshKeys(ctx, golden); err != nil {
		return fmt.Errorf("store golden refresh key: %w", err)
	}
	return nil
}
