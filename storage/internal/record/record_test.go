package record_test

import (
	"errors"
	"reflect"
	"testing"

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
	if got := enc(record.EncodeSession(storagetest.GoldenSession())); got != storagetest.GoldenSessionRecord {
		t.Errorf("EncodeSession = %q, want %q", got, storagetest.GoldenSessionRecord)
	}
	if got := enc(record.EncodeUser(storagetest.GoldenUser())); got != storagetest.GoldenUserRecord {
		t.Errorf("EncodeUser = %q, want %q", got, storagetest.GoldenUserRecord)
	}
	if got := enc(record.EncodeKey(storagetest.GoldenKey())); got != storagetest.GoldenKeyRecord {
		t.Errorf("EncodeKey = %q, want %q", got, storagetest.GoldenKeyRecord)
	}
	if s, err := record.DecodeSession([]byte(storagetest.GoldenSessionRecord)); err != nil || s != storagetest.GoldenSession() {
		t.Errorf("DecodeSession = %+v, %v", s, err)
	}
	if u, err := record.DecodeUser([]byte(storagetest.GoldenUserRecord)); err != nil || !reflect.DeepEqual(u, storagetest.GoldenUser()) {
		t.Errorf("DecodeUser = %+v, %v", u, err)
	}
	if k, err := record.DecodeKey([]byte(storagetest.GoldenKeyRecord)); err != nil || !reflect.DeepEqual(k, storagetest.GoldenKey()) {
		t.Errorf("DecodeKey = %+v, %v", k, err)
	}
}

// A session that never rotated has no previous digest and round-trips so.
func TestSessionWithoutPreviousDigest(t *testing.T) {
	in := storagetest.GoldenSession()
	in.PreviousHash = storage.TokenHash{}
	b, err := record.EncodeSession(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := record.DecodeSession(b)
	if err != nil || out != in {
		t.Fatalf("round trip = %+v, %v; want %+v", out, err, in)
	}
}

// Damaged records are ErrCorrupt, never a panic or a zero value.
func TestCorruptRecords(t *testing.T) {
	for name, data := range map[string]string{
		"empty":            "",
		"version only":     "\x01",
		"unknown version":  "\x02{}",
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
