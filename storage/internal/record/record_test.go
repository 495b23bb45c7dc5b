package record_test

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
	"github.com/latchauth/latch/storage/storagetest"
)

func TestGoldenBytes(t *testing.T) {
	enc := func(b []byte, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := enc(record.EncodeSession(storagetest.GoldenSession())); got != storagetest.GoldenSessionRecordV2 {
		t.Errorf("EncodeSession = %q, want %q", got, storagetest.GoldenSessionRecordV2)
	}
	if got := enc(record.EncodeSessionV1(storagetest.GoldenSession())); got != storagetest.GoldenSessionRecord {
		t.Errorf("EncodeSessionV1 = %q, want %q", got, storagetest.GoldenSessionRecord)
	}
	if got := enc(record.EncodeUser(storagetest.GoldenUser())); got != storagetest.GoldenUserRecord {
		t.Errorf("EncodeUser = %q, want %q", got, storagetest.GoldenUserRecord)
	}
	if got := enc(record.EncodeKey(storagetest.GoldenKey())); got != storagetest.GoldenKeyRecord {
		t.Errorf("EncodeKey = %q, want %q", got, storagetest.GoldenKeyRecord)
	}
	if s, err := record.DecodeSession([]byte(storagetest.GoldenSessionRecord)); err != nil || s != storagetest.GoldenSession() {
		t.Errorf("DecodeSession(v1) = %+v, %v", s, err)
	}
	if s, err := record.DecodeSession([]byte(storagetest.GoldenSessionRecordV2)); err != nil || s != storagetest.GoldenSession() {
		t.Errorf("DecodeSession(v2) = %+v, %v", s, err)
	}
	if u, err := record.DecodeUser([]byte(storagetest.GoldenUserRecord)); err != nil || !reflect.DeepEqual(u, storagetest.GoldenUser()) {
		t.Errorf("DecodeUser = %+v, %v", u, err)
	}
	if k, err := record.DecodeKey([]byte(storagetest.GoldenKeyRecord)); err != nil || !reflect.DeepEqual(k, storagetest.GoldenKey()) {
		t.Errorf("DecodeKey = %+v, %v", k, err)
	}
}

// Sessions round-trip through both versions exactly, including zero times,
// no previous digest, empty strings and the extremes of the time range.
func TestSessionRoundTrip(t *testing.T) {
	golden := storagetest.GoldenSession()
	noPrevious := golden
	noPrevious.PreviousHash = storage.TokenHash{}
	fresh := storage.Session{ID: "s", UserID: "u", CurrentHash: golden.CurrentHash, CreatedAt: golden.CreatedAt,
		LastRotatedAt: golden.CreatedAt, IdleExpiresAt: golden.IdleExpiresAt, AbsoluteExpiresAt: golden.AbsoluteExpiresAt}
	extremes := fresh
	extremes.CreatedAt = time.Unix(0, math.MinInt64+1).UTC()
	extremes.AbsoluteExpiresAt = time.Unix(0, math.MaxInt64).UTC()
	extremes.Generation = math.MaxUint64
	long := fresh
	long.Audience = strings.Repeat("a", 300) // a two-byte length
	for name, in := range map[string]storage.Session{"golden": golden, "no previous digest": noPrevious,
		"fresh": fresh, "extremes": extremes, "long audience": long, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			b, err := record.EncodeSession(in)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := record.DecodeSession(b); err != nil || out != in {
				t.Fatalf("v2 round trip = %+v, %v; want %+v", out, err, in)
			}
		})
	}
	b, err := record.EncodeSessionV1(noPrevious)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := record.DecodeSession(b); err != nil || out != noPrevious {
		t.Fatalf("v1 round trip = %+v, %v; want %+v", out, err, noPrevious)
	}
}

// The binary record is several times smaller than JSON: the point of it.
func TestSessionV2IsCompact(t *testing.T) {
	v1, _ := record.EncodeSessionV1(storagetest.GoldenSession())
	v2, _ := record.EncodeSession(storagetest.GoldenSession())
	if len(v2)*2 > len(v1) {
		t.Fatalf("v2 record %d bytes, v1 %d: want v2 at most half", len(v2), len(v1))
	}
}

// Times a version-2 record cannot hold are refused, not wrapped around.
func TestSessionV2TimeRange(t *testing.T) {
	for _, at := range []time.Time{time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, math.MinInt64).UTC()} {
		s := storagetest.GoldenSession()
		s.AbsoluteExpiresAt = at
		if _, err := record.EncodeSession(s); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("EncodeSession with time %v: %v, want ErrInvalidArgument", at, err)
		}
	}
}

// Every truncation and every extension of a valid record, and every
// non-canonical flag, is ErrCorrupt.
func TestCorruptSessionV2(t *testing.T) {
	good := []byte(storagetest.GoldenSessionRecordV2)
	for n := range len(good) {
		if _, err := record.DecodeSession(good[:n]); !errors.Is(err, record.ErrCorrupt) {
			t.Fatalf("DecodeSession(first %d bytes): %v, want ErrCorrupt", n, err)
		}
	}
	if _, err := record.DecodeSession(append(slices.Clone(good), 0)); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("DecodeSession(trailing byte): %v, want ErrCorrupt", err)
	}
	for _, flags := range []byte{2, 3, 0x80, 0xff} {
		bad := slices.Clone(good)
		bad[89] = flags
		if _, err := record.DecodeSession(bad); !errors.Is(err, record.ErrCorrupt) {
			t.Fatalf("DecodeSession(flags %#x): %v, want ErrCorrupt", flags, err)
		}
	}
	zeroPrev := slices.Clone(good)
	clear(zeroPrev[90:122])
	if _, err := record.DecodeSession(zeroPrev); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("DecodeSession(zero previous digest flagged present): %v, want ErrCorrupt", err)
	}
	// The id's length (11) in two bytes instead of one: a varint that is
	// not the shortest would decode to a record EncodeSession never writes.
	padded := append(append(slices.Clone(good[:122]), 0x8b, 0x00), good[123:]...)
	if _, err := record.DecodeSession(padded); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("DecodeSession(non-minimal string length): %v, want ErrCorrupt", err)
	}
	huge := append(slices.Clone(good[:122]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	if _, err := record.DecodeSession(huge); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("DecodeSession(huge string length): %v, want ErrCorrupt", err)
	}
}

// FuzzDecodeSession: any input decodes or is ErrCorrupt, never a panic; and
// whatever decodes re-encodes (as version 2) to a record that decodes to the
// same session.
func FuzzDecodeSession(f *testing.F) {
	f.Add([]byte(storagetest.GoldenSessionRecordV2))
	f.Add([]byte(storagetest.GoldenSessionRecord))
	f.Add([]byte{2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := record.DecodeSession(data)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("DecodeSession: %v, want ErrCorrupt", err)
			}
			return
		}
		b, err := record.EncodeSession(s)
		if err != nil {
			return // a v1 record may hold a time v2 cannot
		}
		again, err := record.DecodeSession(b)
		if err != nil || !sameSession(again, s) {
			t.Fatalf("re-encoded %+v decodes as %+v, %v", s, again, err)
		}
		if data[0] == record.SessionVersion && string(b) != string(data) {
			t.Fatalf("v2 record %x re-encodes as %x: the format is not canonical", data, b)
		}
	})
}

// sameSession compares sessions by instant, not by time zone (a v1 record
// may carry any zone; v2 decodes in UTC).
func sameSession(a, b storage.Session) bool {
	times := func(s storage.Session) []time.Time {
		return []time.Time{s.PreviousRotatedAt, s.CreatedAt, s.LastRotatedAt, s.IdleExpiresAt, s.AbsoluteExpiresAt, s.RevokedAt}
	}
	ta, tb := times(a), times(b)
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	a.PreviousRotatedAt, a.CreatedAt, a.LastRotatedAt, a.IdleExpiresAt, a.AbsoluteExpiresAt, a.RevokedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b.PreviousRotatedAt, b.CreatedAt, b.LastRotatedAt, b.IdleExpiresAt, b.AbsoluteExpiresAt, b.RevokedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b
}

// Damaged records are ErrCorrupt, never a panic or a zero value.
func TestCorruptRecords(t *testing.T) {
	for name, data := range map[string]string{
		"empty":            "",
		"version only":     "\x01",
		"unknown version":  "\x03{}",
		"v2 json":          "\x02{}",
		"not json":         "\x01{",
		"wrong type":       "\x01" + `{"generation":"x"}`,
		"no digest":        "\x01" + `{"id":"s"}`,
		"short digest":     "\x01" + `{"current":"AQID"}`,
		"short previous":   "\x01" + `{"current":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=","previous":"AQID"}`,
		"bad base64":       "\x01" + `{"current":"!!!!"}`,
		"null":             "\x01null",
		"array not object": "\x01[]",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := record.DecodeSession([]byte(data)); !errors.Is(err, record.ErrCorrupt) {
				t.Errorf("DecodeSession: %v, want ErrCorrupt", err)
			}
		})
	}
	for _, data := range []string{"", "\x01", "\x02{}", "\x01{", "\x01" + `{"roles":"admin"}`, "\x01[]"} {
		if _, err := record.DecodeUser([]byte(data)); !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("DecodeUser(%q): %v, want ErrCorrupt", data, err)
		}
	}
	for _, data := range []string{"", "\x01", "\x02{}", "\x01{", "\x01" + `{"private_key":"!!"}`, "\x01[]"} {
		if _, err := record.DecodeKey([]byte(data)); !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("DecodeKey(%q): %v, want ErrCorrupt", data, err)
		}
	}
}
