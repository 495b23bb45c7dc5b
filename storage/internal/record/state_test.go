package record_test

import (
	"errors"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// The session summary's bytes are a stored format shared by both backends:
// three big-endian unix-nanosecond fields, 0 for a zero time; and its
// liveness answers follow storage.Session's rules.
func TestSessionState(t *testing.T) {
	abs := time.Unix(0, 0x0102030405060708)
	idle := time.Unix(0, 0x0a0b0c0d0e0f1011)
	s := storage.Session{IdleExpiresAt: idle, AbsoluteExpiresAt: abs}
	const want = "\x00\x00\x00\x00\x00\x00\x00\x00" + "\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11" + "\x01\x02\x03\x04\x05\x06\x07\x08"
	if got := string(record.EncodeState(s)); got != want {
		t.Fatalf("EncodeState = %x; want %x", got, want)
	}
	st, err := record.DecodeState([]byte(want))
	if err != nil || st.Revoked || !st.IdleExpiresAt.Equal(idle) || !st.AbsoluteExpiresAt.Equal(abs) {
		t.Fatalf("DecodeState = %+v, %v", st, err)
	}
	for _, now := range []time.Time{abs.Add(-time.Hour), abs, idle.Add(-time.Hour), idle} {
		if st.Live(now) != s.Live(now) || st.TokenLive(now) != now.Before(abs) {
			t.Errorf("at %v: Live %v TokenLive %v; session Live %v", now, st.Live(now), st.TokenLive(now), s.Live(now))
		}
	}
	s.RevokedAt = abs.Add(-time.Hour)
	st, err = record.DecodeState(record.EncodeState(s))
	if err != nil || !st.Revoked || st.TokenLive(abs.Add(-2*time.Hour)) || st.Live(abs.Add(-2*time.Hour)) {
		t.Fatalf("revoked summary = %+v, %v; want revoked, not live", st, err)
	}
	for _, n := range []int{0, 23, 25} {
		if _, err := record.DecodeState(make([]byte, n)); !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("DecodeState(%d bytes) = %v; want ErrCorrupt", n, err)
		}
	}
}
