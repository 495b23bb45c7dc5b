package record

import (
	"encoding/binary"
	"time"

	"github.com/latchauth/latch/storage"
)

// stateLen is the length of an encoded session summary.
const stateLen = 24

// EncodeState returns the 24-byte session summary that both backends keep
// next to each session record for the per-request revocation check and
// the live-session count: revoked-at, idle expiry and absolute expiry, as
// big-endian unix nanoseconds (0 for a zero time). It has no version byte:
// its length is its format.
func EncodeState(s storage.Session) []byte {
	b := make([]byte, stateLen)
	binary.BigEndian.PutUint64(b[0:], uint64(unixNano(s.RevokedAt)))
	binary.BigEndian.PutUint64(b[8:], uint64(unixNano(s.IdleExpiresAt)))
	binary.BigEndian.PutUint64(b[16:], uint64(unixNano(s.AbsoluteExpiresAt)))
	return b
}

// State is a decoded session summary (see EncodeState).
type State struct {
	Revoked           bool
	IdleExpiresAt     time.Time
	AbsoluteExpiresAt time.Time
}

// DecodeState decodes a session summary; ErrCorrupt unless it is 24 bytes.
func DecodeState(b []byte) (State, error) {
	if len(b) != stateLen {
		return State{}, ErrCorrupt
	}
	return State{
		Revoked:           binary.BigEndian.Uint64(b[0:]) != 0,
		IdleExpiresAt:     time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))),
		AbsoluteExpiresAt: time.Unix(0, int64(binary.BigEndian.Uint64(b[16:]))),
	}, nil
}

// ExpiresAt is the earlier of the summary's idle and absolute expiries,
// as storage.Session.ExpiresAt is of the session's.
func (st State) ExpiresAt() time.Time {
	if st.AbsoluteExpiresAt.Before(st.IdleExpiresAt) {
		return st.AbsoluteExpiresAt
	}
	return st.IdleExpiresAt
}

// TokenLive reports whether an unexpired access token of the session may
// still be accepted at now: the session is not revoked and not past its
// absolute expiry (see storage.DenyList.AccessTokenRevoked for why the
// idle expiry is not consulted).
func (st State) TokenLive(now time.Time) bool {
	return !st.Revoked && now.Before(st.AbsoluteExpiresAt)
}

// Live reports whether the session is live at now by the rules of
// storage.Session.Live, taking the summary's idle expiry as the session's.
func (st State) Live(now time.Time) bool {
	return st.TokenLive(now) && now.Before(st.IdleExpiresAt)
}

// unixNano is t in unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
