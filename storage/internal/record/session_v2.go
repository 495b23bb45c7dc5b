package record

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/latchauth/latch/storage"
)

// The version-2 session record, all integers big-endian:
//
//	offset  size  field
//	0       1     version (2)
//	1       8     generation
//	9       48    six times, 8 bytes each, unix nanoseconds, math.MinInt64
//	              for the zero time: previous rotated, created, last
//	              rotated, idle expiry, absolute expiry, revoked
//	57      32    current refresh digest
//	89      1     flags: bit 0 set when a previous digest follows
//	90      0/32  previous refresh digest
//	then          id, user id, audience, revoke reason: each a uvarint
//	              length and the bytes
//
// Nothing may follow the last string, and no other flag bit may be set: a
// record either decodes exactly or is ErrCorrupt. A session of typical ids
// takes ~150 bytes (JSON: ~460).
const (
	v2TimesAt  = 9
	v2NumTimes = 6
	v2DigestAt = v2TimesAt + 8*v2NumTimes
	v2FlagsAt  = v2DigestAt + 32
	v2Fixed    = v2FlagsAt + 1

	flagPrevious = 1 << 0

	zeroTime = math.MinInt64
)

// minTime and maxTime bound the times a version-2 record holds: those whose
// unix nanoseconds fit in an int64 (years 1678 to 2262), less the one
// reserved for the zero time.
var (
	minTime = time.Unix(0, math.MinInt64+1)
	maxTime = time.Unix(0, math.MaxInt64)
)

// EncodeSession returns the stored form of s: the compact version-2
// record. A time outside the years 1678–2262 is storage.ErrInvalidArgument.
func EncodeSession(s storage.Session) ([]byte, error) {
	times := [v2NumTimes]time.Time{s.PreviousRotatedAt, s.CreatedAt, s.LastRotatedAt, s.IdleExpiresAt, s.AbsoluteExpiresAt, s.RevokedAt}
	size := v2Fixed + 4*binary.MaxVarintLen64 + len(s.ID) + len(s.UserID) + len(s.Audience) + len(s.RevokeReason)
	if !s.PreviousHash.IsZero() {
		size += 32
	}
	b := make([]byte, v2Fixed, size)
	b[0] = SessionVersion
	binary.BigEndian.PutUint64(b[1:], s.Generation)
	for i, t := range times {
		n := int64(zeroTime)
		if !t.IsZero() {
			if t.Before(minTime) || t.After(maxTime) {
				return nil, fmt.Errorf("encode session: time %v out of range: %w", t, storage.ErrInvalidArgument)
			}
			n = t.UnixNano()
		}
		binary.BigEndian.PutUint64(b[v2TimesAt+8*i:], uint64(n))
	}
	copy(b[v2DigestAt:], s.CurrentHash[:])
	if !s.PreviousHash.IsZero() {
		b[v2FlagsAt] = flagPrevious
		b = append(b, s.PreviousHash[:]...)
	}
	for _, str := range [...]string{s.ID, s.UserID, s.Audience, s.RevokeReason} {
		b = binary.AppendUvarint(b, uint64(len(str)))
		b = append(b, str...)
	}
	return b, nil
}

// decodeSessionV2 parses a version-2 record. It never panics and never
// returns a partial session: any deviation from the layout is ErrCorrupt.
func decodeSessionV2(data []byte) (storage.Session, error) {
	if len(data) < v2Fixed || data[0] != SessionVersion {
		return storage.Session{}, fmt.Errorf("%w: short session record", ErrCorrupt)
	}
	var s storage.Session
	s.Generation = binary.BigEndian.Uint64(data[1:])
	times := [v2NumTimes]*time.Time{&s.PreviousRotatedAt, &s.CreatedAt, &s.LastRotatedAt, &s.IdleExpiresAt, &s.AbsoluteExpiresAt, &s.RevokedAt}
	for i, t := range times {
		if n := int64(binary.BigEndian.Uint64(data[v2TimesAt+8*i:])); n != zeroTime {
			*t = time.Unix(0, n).UTC()
		}
	}
	copy(s.CurrentHash[:], data[v2DigestAt:v2FlagsAt])
	flags := data[v2FlagsAt]
	rest := data[v2Fixed:]
	switch flags {
	case 0:
	case flagPrevious:
		if len(rest) < 32 {
			return storage.Session{}, fmt.Errorf("%w: short previous digest", ErrCorrupt)
		}
		copy(s.PreviousHash[:], rest[:32])
		rest = rest[32:]
		if s.PreviousHash.IsZero() {
			return storage.Session{}, fmt.Errorf("%w: zero previous digest", ErrCorrupt)
		}
	default:
		return storage.Session{}, fmt.Errorf("%w: unknown session flags %#x", ErrCorrupt, flags)
	}
	for _, str := range [...]*string{&s.ID, &s.UserID, &s.Audience, &s.RevokeReason} {
		n, w := binary.Uvarint(rest)
		// A varint's last byte is 0 only when it is not the shortest
		// form, which EncodeSession never writes.
		if w <= 0 || (w > 1 && rest[w-1] == 0) || n > uint64(len(rest)-w) {
			return storage.Session{}, fmt.Errorf("%w: bad string length", ErrCorrupt)
		}
		*str = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
	}
	if len(rest) != 0 {
		return storage.Session{}, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(rest))
	}
	return s, nil
}
