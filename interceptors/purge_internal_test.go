package interceptors

import (
	"log/slog"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
)

// TestRevocationsPurgeForgetsOnlyExpired checks that purge drops the jti and
// session revocations whose tokens have all expired (past the minute of
// slack) and keeps the others.
func TestRevocationsPurgeForgetsOnlyExpired(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := now
	r := newRevocations(nil, nil, func() time.Time { return clock }, slog.New(slog.DiscardHandler))
	r.add(&latchv1.RevocationEvent{Jti: "old-jti", SessionId: "old-sid", Exp: now.Add(30 * time.Second).Unix()})
	r.add(&latchv1.RevocationEvent{Jti: "live-jti", SessionId: "live-sid", Exp: now.Add(time.Hour).Unix()})
	clock = now.Add(2 * time.Minute) // old-* expired more than a minute ago
	r.purge()
	for _, c := range []struct {
		jti, sid string
		want     bool
	}{
		{"old-jti", "", false}, {"", "old-sid", false}, {"live-jti", "", true}, {"", "live-sid", true},
	} {
		if got := r.revoked(c.jti, c.sid); got != c.want {
			t.Errorf("revoked(%q, %q) after purge = %v, want %v", c.jti, c.sid, got, c.want)
		}
	}
}
