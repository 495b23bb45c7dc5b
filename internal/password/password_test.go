package password

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testParams keep tests fast; the format and code paths are the same.
func testParams() Params {
	return Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}
}

func newTestHasher(t *testing.T, p Params) *Hasher {
	t.Helper()
	h, err := NewHasher(p, 2)
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	return h
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestHashVerify(t *testing.T) {
	h := newTestHasher(t, testParams())
	enc, err := h.Hash(ctx(t), "correct horse battery staple")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("Hash = %q, want PHC argon2id prefix", enc)
	}
	for _, tc := range []struct {
		pw         string
		wantOK     bool
		wantRehash bool
	}{
		{"correct horse battery staple", true, false},
		{"correct horse battery stapl", false, false},
		{"", false, false},
		{strings.Repeat("a", MaxLength+1), false, false},
	} {
		ok, rehash, err := h.Verify(ctx(t), tc.pw, enc)
		if err != nil || ok != tc.wantOK || rehash != tc.wantRehash {
			t.Errorf("Verify(len %d) = %v, %v, %v; want %v, %v, nil", len(tc.pw), ok, rehash, err, tc.wantOK, tc.wantRehash)
		}
	}
}

func TestSaltsDiffer(t *testing.T) {
	h := newTestHasher(t, testParams())
	a, _ := h.Hash(ctx(t), "same password")
	b, _ := h.Hash(ctx(t), "same password")
	if a == b {
		t.Errorf("two hashes of one password are equal: salts are not random")
	}
}

func TestRehashOnParamChange(t *testing.T) {
	old := newTestHasher(t, testParams())
	enc, _ := old.Hash(ctx(t), "password123")
	p := testParams()
	p.Time = 2
	cur := newTestHasher(t, p)
	ok, rehash, err := cur.Verify(ctx(t), "password123", enc)
	if !ok || !rehash || err != nil {
		t.Errorf("Verify with old params = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
}

func TestBcryptImport(t *testing.T) {
	h := newTestHasher(t, testParams())
	long := strings.Repeat("x", 72)
	enc, err := bcrypt.GenerateFromPassword([]byte(long), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ok, rehash, err := h.Verify(ctx(t), long, string(enc))
	if !ok || !rehash || err != nil {
		t.Errorf("bcrypt Verify = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
	// bcrypt would accept this (it truncates at 72 bytes); we must not.
	ok, _, err = h.Verify(ctx(t), long+"extra", string(enc))
	if ok || err != nil {
		t.Errorf("bcrypt Verify of a 77-byte password = %v, %v; want false, nil", ok, err)
	}
	ok, _, _ = h.Verify(ctx(t), "wrong", string(enc))
	if ok {
		t.Errorf("bcrypt Verify of a wrong password = true")
	}
}

func TestUnreadableHashes(t *testing.T) {
	h := newTestHasher(t, testParams())
	for _, enc := range []string{
		"", "plaintext", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!!$aGFzaA",
		"$argon2id$v=19$m=64,t=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		ok, _, err := h.Verify(ctx(t), "password", enc)
		if ok || !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("Verify(%q) = %v, %v; want false, ErrUnknownFormat", enc, ok, err)
		}
	}
}

func TestDummyNeverMatches(t *testing.T) {
	h := newTestHasher(t, testParams())
	if err := h.VerifyDummy(ctx(t), "latch-dummy-password-for-unknown-users"); err != nil {
		t.Errorf("VerifyDummy: %v", err)
	}
}

func TestConcurrencyBoundHonoursContext(t *testing.T) {
	h, err := NewHasher(testParams(), 1)
	if err != nil {
		t.Fatal(err)
	}
	h.sem <- struct{}{} // occupy the only slot
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(c, "password123"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash with full slots and canceled ctx = %v, want context.Canceled", err)
	}
	<-h.sem
}

func TestCheckLength(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want error
	}{{7, ErrTooShort}, {8, nil}, {1024, nil}, {1025, ErrTooLong}} {
		if got := CheckLength(strings.Repeat("p", tc.n)); !errors.Is(got, tc.want) {
			t.Errorf("CheckLength(%d bytes) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestDefaultParamsAreOWASPMinimum(t *testing.T) {
	p := DefaultParams()
	if p.Memory != 19456 || p.Time != 2 || p.Threads != 1 {
		t.Errorf("DefaultParams = %+v, want m=19456 t=2 p=1", p)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("DefaultParams invalid: %v", err)
	}
}

func BenchmarkHashDefault(b *testing.B) {
	h, err := NewHasher(DefaultParams(), 1)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := h.Hash(context.Background(), "benchmark password"); err != nil {
			b.Fatal(err)
		}
	}
}
