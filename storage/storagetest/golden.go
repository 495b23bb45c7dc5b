package storagetest

import (
	"context"
	"fmt"
	"time"

	"github.com/latchauth/latch/storage"
)

// Golden records: a session, a user and a signing key with every field set,
// and the exact bytes a backend stores for each (one version byte, then
// JSON; or, for sessions, the binary version 2). Backends test that they still write these bytes, so data written
// by an earlier release (bbolt files, etcd keys) keeps decoding. Never
// change a Golden*Record constant to make a test pass: that is a storage
// format change and needs a new record version and a migration.
var goldenTime = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

// GoldenSession is the session whose stored bytes are GoldenSessionRecord.
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

// GoldenUser is the user whose stored bytes are GoldenUserRecord.
func GoldenUser() storage.User {
	return storage.User{
		ID: "user-golden", Email: "golden@example.com", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		Roles: []string{"admin", "reader"}, Disabled: true, CreatedAt: goldenTime, UpdatedAt: goldenTime.Add(time.Second),
	}
}

// GoldenKey is the signing key whose stored bytes are GoldenKeyRecord. It
// is active, so InitSigningKey stores it unchanged.
func GoldenKey() storage.SigningKey {
	return storage.SigningKey{
		ID: "kid-golden", PrivateKey: []byte{0x30, 0x81, 0x87, 0x02, 0x01}, PublicKey: []byte{0x04, 0x01, 0x02, 0x03},
		State: storage.KeyActive, CreatedAt: goldenTime, ActivatedAt: goldenTime.Add(time.Second),
	}
}

// Golden*Record are the stored bytes of the golden records.
const (
	GoldenSessionRecord = "\x01" + `{"id":"sess-golden","user_id":"user-golden","aud":"api.example",` +
		`"current":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=","previous":"//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=",` +
		`"previous_rotated_at":"2026-01-02T03:05:05.000006Z","generation":7,"created_at":"2026-01-02T03:04:05.000006Z",` +
		`"last_rotated_at":"2026-01-02T03:06:05.000006Z","idle_expires_at":"2026-01-02T04:04:05.000006Z",` +
		`"absolute_expires_at":"2026-01-03T03:04:05.000006Z","revoked_at":"2026-01-02T03:07:05.000006Z","revoke_reason":"logout"}`
	GoldenUserRecord = "\x01" + `{"id":"user-golden","email":"golden@example.com",` +
		`"password_hash":"$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA","roles":["admin","reader"],"disabled":true,` +
		`"created_at":"2026-01-02T03:04:05.000006Z","updated_at":"2026-01-02T03:04:06.000006Z"}`
	GoldenKeyRecord = "\x01" + `{"id":"kid-golden","private_key":"MIGHAgE=","public_key":"BAECAw==","state":"active",` +
		`"created_at":"2026-01-02T03:04:05.000006Z","activated_at":"2026-01-02T03:04:06.000006Z","retired_at":"0001-01-01T00:00:00Z"}`
)

// GoldenSessionRecordV2 is the version-2 (binary) record of GoldenSession,
// the form storage/bolt writes (see storage/internal/record).
const GoldenSessionRecordV2 = "" +
	"\x02\x00\x00\x00\x00\x00\x00\x00\x07" + // version 2, generation 7
	"\x18\x86\xcb\x00\x14\xdd\xa1\x70" + // previous rotated (unix ns)
	"\x18\x86\xca\xf2\x1c\x96\x49\x70" + // created (unix ns)
	"\x18\x86\xcb\x0e\x0d\x24\xf9\x70" + // last rotated (unix ns)
	"\x18\x86\xce\x38\x4d\x4e\xe9\x70" + // idle expiry (unix ns)
	"\x18\x87\x19\x86\xad\xe5\x49\x70" + // absolute expiry (unix ns)
	"\x18\x86\xcb\x1c\x05\x6c\x51\x70" + // revoked (unix ns)
	"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x20" + // current digest
	"\x01" + // flags: previous digest follows
	"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xef\xee\xed\xec\xeb\xea\xe9\xe8\xe7\xe6\xe5\xe4\xe3\xe2\xe1\xe0" + // previous digest
	"\x0bsess-golden" + // id
	"\x0buser-golden" + // user id
	"\x0bapi.example" + // audience
	"\x06logout" // revoke reason

// StoreGolden stores GoldenUser and GoldenSession. GoldenUser is disabled
// and CreateSession stores sessions only for enabled users, so it stores
// the user enabled, then the session, then disables the user: the stored
// rows are then exactly the golden ones.
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
	return nil
}
