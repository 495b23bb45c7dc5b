package record

import (
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record/recordpb"
)

// State is a session summary: what both backends keep next to each session
// record for the per-request revocation check and the live-session count,
// so that neither reads the whole session for them.
type State struct {
	Revoked           bool
	IdleExpiresAt     time.Time
	AbsoluteExpiresAt time.Time
}

// EncodeState returns the summary record of s: its revocation time and
// expiries. A time outside the years 1 to 9999 is
// storage.ErrInvalidArgument.
func EncodeState(s storage.Session) ([]byte, error) {
	var c times
	m := &recordpb.SessionState{RevokedAt: c.pb(s.RevokedAt), IdleExpiresAt: c.pb(s.IdleExpiresAt),
		AbsoluteExpiresAt: c.pb(s.AbsoluteExpiresAt)}
	return encode(m, c.err)
}

// DecodeState parses a summary record.
func DecodeState(data []byte) (State, error) {
	var m recordpb.SessionState
	if err := decode(data, &m); err != nil {
		return State{}, err
	}
	var c times
	st := State{Revoked: m.RevokedAt != nil, IdleExpiresAt: c.time(m.IdleExpiresAt), AbsoluteExpiresAt: c.time(m.AbsoluteExpiresAt)}
	return st, c.err
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
