package record_test

import (
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
	"github.com/latchauth/latch/storage/storagetest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.rec from the golden values")

// kind is one record kind: how it encodes and decodes, and the golden value
// whose encoding is committed in testdata/<file>.
type kind struct {
	file   string
	golden any
	encode func() ([]byte, error)
	decode func([]byte) (any, error)
}

func kinds() []kind {
	return []kind{
		{"session.rec", storagetest.GoldenSession(),
			func() ([]byte, error) { return record.EncodeSession(storagetest.GoldenSession()) },
			func(b []byte) (any, error) { return record.DecodeSession(b) }},
		{"user.rec", storagetest.GoldenUser(),
			func() ([]byte, error) { return record.EncodeUser(storagetest.GoldenUser()) },
			func(b []byte) (any, error) { return record.DecodeUser(b) }},
		{"signing_key.rec", storagetest.GoldenKey(),
			func() ([]byte, error) { return record.EncodeKey(storagetest.GoldenKey()) },
			func(b []byte) (any, error) { return record.DecodeKey(b) }},
		{"refresh_key.rec", storagetest.GoldenRefreshKey(),
			func() ([]byte, error) { return record.EncodeRefreshKey(storagetest.GoldenRefreshKey()) },
			func(b []byte) (any, error) { return record.DecodeRefreshKey(b) }},
		{"session_state.rec", goldenState(),
			func() ([]byte, error) { return record.EncodeState(storagetest.GoldenSession()) },
			func(b []byte) (any, error) { return record.DecodeState(b) }},
	}
}

// goldenState is the summary of storagetest.GoldenSession.
func goldenState() record.State {
	s := storagetest.GoldenSession()
	return record.State{Revoked: true, IdleExpiresAt: s.IdleExpiresAt, AbsoluteExpiresAt: s.AbsoluteExpiresAt}
}

func readCommitted(t *testing.T, k kind) []byte {
	t.Helper()
	path := filepath.Join("testdata", k.file)
	if *update {
		b, err := k.encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Records written by an earlier build decode to the values they were
// written from: a renumbered or retyped field fails here. The files are
// rewritten only with -update, which is a format change and needs a new
// Version.
func TestCommittedRecordsDecode(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.file, func(t *testing.T) {
			data := readCommitted(t, k)
			if len(data) == 0 || data[0] != record.Version {
				t.Fatalf("committed record starts with %x; want version %d", data[:min(1, len(data))], record.Version)
			}
			got, err := k.decode(data)
			if err != nil || !reflect.DeepEqual(got, k.golden) {
				t.Fatalf("decoded %+v, %v\nwant %+v", got, err, k.golden)
			}
		})
	}
}

// Records of the earlier, unreleased formats (version 1, JSON; version 2,
// packed binary sessions; the unversioned 24-byte session summary) and of
// any version but Version are refused, never misread.
func TestRefusesOtherVersions(t *testing.T) {
	old := map[string][]string{
		"session.rec": {
			"\x01" + `{"id":"s","user_id":"u","current":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=","generation":1}`,
			"\x02" + strings.Repeat("\x00", 89) + "\x01s\x01u\x00\x00",
		},
		"user.rec":          {"\x01" + `{"id":"u","email":"a@example.com"}`},
		"signing_key.rec":   {"\x01" + `{"id":"k","private_key":"AQ==","public_key":"AQ==","state":"active"}`},
		"refresh_key.rec":   {"\x01" + `{"id":"k","secret":"AQ==","state":"active"}`},
		"session_state.rec": {strings.Repeat("\x00", 8) + "\x18\x86\xce\x38\x4d\x4e\xe9\x70\x18\x87\x19\x86\xad\xe5\x49\x70"},
	}
	for _, k := range kinds() {
		t.Run(k.file, func(t *testing.T) {
			good := readCommitted(t, k)
			inputs := old[k.file]
			for _, v := range []byte{0, 1, 2, 4, 0x7b, 0xff} {
				if v != record.Version {
					inputs = append(inputs, string(v)+string(good[1:]))
				}
			}
			for _, in := range inputs {
				if got, err := k.decode([]byte(in)); !errors.Is(err, record.ErrCorrupt) {
					t.Errorf("decode(%q) = %+v, %v; want ErrCorrupt", in, got, err)
				}
			}
		})
	}
}

// Every value round-trips exactly: zero times, no previous digest, empty
// strings and ids that are not UTF-8 included (storage treats ids as
// opaque bytes).
func TestRoundTrip(t *testing.T) {
	golden := storagetest.GoldenSession()
	noPrevious := golden
	noPrevious.PreviousHash = storage.TokenHash{}
	odd := storage.Session{ID: "s\xff\xfe", UserID: "u\x80", CurrentHash: golden.CurrentHash,
		CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), AbsoluteExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		Generation: math.MaxUint64}
	for name, in := range map[string]storage.Session{"golden": golden, "no previous digest": noPrevious, "odd": odd, "empty": {}} {
		b, err := record.EncodeSession(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out, err := record.DecodeSession(b); err != nil || out != in {
			t.Errorf("%s: round trip = %+v, %v; want %+v", name, out, err, in)
		}
	}
	users := []storage.User{storagetest.GoldenUser(), {ID: "u\xff", Email: "\xfe@example.com"}}
	for _, in := range users {
		b, err := record.EncodeUser(in)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := record.DecodeUser(b); err != nil || !reflect.DeepEqual(out, in) {
			t.Errorf("user round trip = %+v, %v; want %+v", out, err, in)
		}
	}
	for _, in := range []storage.Session{golden, {IdleExpiresAt: golden.IdleExpiresAt, AbsoluteExpiresAt: golden.AbsoluteExpiresAt}} {
		b, err := record.EncodeState(in)
		if err != nil {
			t.Fatal(err)
		}
		want := record.State{Revoked: in.Revoked(), IdleExpiresAt: in.IdleExpiresAt, AbsoluteExpiresAt: in.AbsoluteExpiresAt}
		if out, err := record.DecodeState(b); err != nil || out != want {
			t.Errorf("state round trip = %+v, %v; want %+v", out, err, want)
		}
	}
}

// A time a record cannot hold is refused when writing, not stored to fail
// later.
func TestEncodeRefusesUnrepresentableTimes(t *testing.T) {
	for _, at := range []time.Time{time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		s := storagetest.GoldenSession()
		s.AbsoluteExpiresAt = at
		u := storagetest.GoldenUser()
		u.UpdatedAt = at
		k := storagetest.GoldenKey()
		k.RetiredAt = at
		rk := storagetest.GoldenRefreshKey()
		rk.CreatedAt = at
		for name, encode := range map[string]func() ([]byte, error){
			"session":     func() ([]byte, error) { return record.EncodeSession(s) },
			"state":       func() ([]byte, error) { return record.EncodeState(s) },
			"user":        func() ([]byte, error) { return record.EncodeUser(u) },
			"signing key": func() ([]byte, error) { return record.EncodeKey(k) },
			"refresh key": func() ([]byte, error) { return record.EncodeRefreshKey(rk) },
		} {
			if b, err := encode(); !errors.Is(err, storage.ErrInvalidArgument) {
				t.Errorf("%s with time %v = %x, %v; want ErrInvalidArgument", name, at, b, err)
			}
		}
	}
}

// Damaged records are ErrCorrupt, never a panic or a partial value: every
// truncation, a trailing byte, an unknown field, and garbage.
func TestCorruptRecords(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.file, func(t *testing.T) {
			good := readCommitted(t, k)
			bad := []string{"", "\x03", "\x03\x00\x00", string(good) + "\x00", "\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
				strings.Repeat("\xff", 40)}
			for n := range len(good) {
				bad = append(bad, string(good[:n]))
			}
			// The same fields plus field 100 (varint 1): well formed, but
			// not a field of this version.
			_, w := protowire.ConsumeVarint(good[1:])
			body := append(slices.Clone(good[1+w:]), 0xa0, 0x06, 0x01)
			unknown := append(protowire.AppendVarint([]byte{record.Version}, uint64(len(body))), body...)
			bad = append(bad, string(unknown))
			for _, in := range bad {
				if got, err := k.decode([]byte(in)); !errors.Is(err, record.ErrCorrupt) {
					t.Errorf("decode(%q) = %+v, %v; want ErrCorrupt", in, got, err)
				}
			}
			if _, err := k.decode(unknown); err == nil || !strings.Contains(err.Error(), "unknown fields") {
				t.Errorf("decode with an unknown field: %v; want ErrCorrupt for the unknown field", err)
			}
		})
	}
	// Well-formed records of values no encoder writes.
	for name, body := range map[string]string{
		"short current digest":  "\x22\x02\x01\x02",
		"short previous digest": "\x22\x20" + strings.Repeat("\x01", 32) + "\x2a\x01\x01",
		// created_at with nanos 1e9, outside a Timestamp's range
		"invalid time": "\x22\x20" + strings.Repeat("\x01", 32) + "\x42\x06\x10\x80\x94\xeb\xdc\x03",
	} {
		data := append([]byte{record.Version, byte(len(body))}, body...)
		if got, err := record.DecodeSession(data); !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("%s: DecodeSession = %+v, %v; want ErrCorrupt", name, got, err)

		}
	}
}

// FuzzDecodeSession: any input decodes or is ErrCorrupt, never a panic;
// and whatever decodes re-encodes to a record that decodes to the same
// session.
func FuzzDecodeSession(f *testing.F) {
	for _, k := range kinds() {
		if b, err := k.encode(); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{record.Version})
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
			t.Fatalf("decoded %+v does not encode: %v", s, err)
		}
		if again, err := record.DecodeSession(b); err != nil || again != s {
			t.Fatalf("re-encoded %+v decodes as %+v, %v", s, again, err)
		}
	})
}

// The summary answers liveness by storage.Session's rules.
func TestStateLiveness(t *testing.T) {
	s := storagetest.GoldenSession()
	s.RevokedAt = time.Time{}
	abs, idle := s.AbsoluteExpiresAt, s.IdleExpiresAt
	b, err := record.EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := record.DecodeState(b)
	if err != nil || st.Revoked {
		t.Fatalf("DecodeState = %+v, %v; want not revoked", st, err)
	}
	if !st.ExpiresAt().Equal(s.ExpiresAt()) {
		t.Errorf("ExpiresAt = %v; want %v", st.ExpiresAt(), s.ExpiresAt())
	}
	for _, now := range []time.Time{idle.Add(-time.Hour), idle, abs.Add(-time.Hour), abs} {
		if st.Live(now) != s.Live(now) || st.TokenLive(now) != now.Before(abs) {
			t.Errorf("at %v: Live %v TokenLive %v; session Live %v", now, st.Live(now), st.TokenLive(now), s.Live(now))
		}
	}
	s.RevokedAt = idle.Add(-2 * time.Hour)
	if b, err = record.EncodeState(s); err != nil {
		t.Fatal(err)
	}
	if st, err = record.DecodeState(b); err != nil || !st.Revoked || st.TokenLive(s.RevokedAt) || st.Live(s.RevokedAt) {
		t.Fatalf("revoked summary = %+v, %v; want revoked, not live", st, err)
	}
}
