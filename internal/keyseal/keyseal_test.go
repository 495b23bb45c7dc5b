package keyseal_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/tokens"
)

func newSealer(t *testing.T) (*keyseal.Sealer, []byte) {
	t.Helper()
	kek := make([]byte, keyseal.KeySize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	s, err := keyseal.New(kek)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, kek
}

// pkcs8 returns a real private key's PKCS #8 encoding, the plaintext Latch
// seals.
func pkcs8(t *testing.T) []byte {
	t.Helper()
	k, err := tokens.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := tokens.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestSealOpenRoundTrip(t *testing.T) {
	s, kek := newSealer(t)
	plain := pkcs8(t)
	sealed, err := s.Seal(rand.Reader, "kid-1", plain)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if !keyseal.IsSealed(sealed) || keyseal.IsSealed(plain) {
		t.Fatalf("IsSealed(sealed)=%v IsSealed(pkcs8)=%v, want true, false", keyseal.IsSealed(sealed), keyseal.IsSealed(plain))
	}
	if !bytes.HasPrefix(sealed, []byte("LSK1")) {
		t.Fatalf("sealed key starts %q, want the versioned prefix LSK1", sealed[:4])
	}
	if bytes.Contains(sealed, plain) || bytes.Contains(sealed, plain[len(plain)-32:]) {
		t.Fatal("sealed key contains the plaintext")
	}
	got, err := s.Open("kid-1", sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %x, %v; want the plaintext", got, err)
	}
	// Another Sealer on the same KEK (a restart) opens it too.
	s2, err := keyseal.New(kek)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Open("kid-1", sealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open after restart = %v", err)
	}
	// Sealing twice never repeats a nonce or a ciphertext.
	again, err := s.Seal(rand.Reader, "kid-1", plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again[4:16], sealed[4:16]) || bytes.Equal(again, sealed) {
		t.Fatal("two seals of one key share a nonce")
	}
}

func TestOpenRefuses(t *testing.T) {
	s, _ := newSealer(t)
	other, _ := newSealer(t)
	plain := pkcs8(t)
	sealed, err := s.Seal(rand.Reader, "kid-1", plain)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	cases := []struct {
		name   string
		sealer *keyseal.Sealer
		kid    string
		data   []byte
		want   error
	}{
		{"wrong KEK", other, "kid-1", sealed, keyseal.ErrAuthentication},
		{"other kid (moved to another key)", s, "kid-2", sealed, keyseal.ErrAuthentication},
		{"nonce altered", s, "kid-1", flip(5), keyseal.ErrAuthentication},
		{"ciphertext altered", s, "kid-1", flip(20), keyseal.ErrAuthentication},
		{"tag altered", s, "kid-1", flip(len(sealed) - 1), keyseal.ErrAuthentication},
		{"truncated", s, "kid-1", sealed[:len(sealed)-1], keyseal.ErrAuthentication},
		{"only the prefix", s, "kid-1", sealed[:4], keyseal.ErrAuthentication},
		{"plaintext", s, "kid-1", plain, keyseal.ErrNotSealed},
		{"empty", s, "kid-1", nil, keyseal.ErrNotSealed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.sealer.Open(tc.kid, tc.data)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("Open = %x, %v; want nil, %v", got, err, tc.want)
			}
			if strings.Contains(err.Error(), string(plain)) {
				t.Fatal("error carries key material")
			}
		})
	}
	t.Run("future version", func(t *testing.T) {
		b := bytes.Clone(sealed)
		b[3] = '2'
		if !keyseal.IsSealed(b) {
			t.Fatal("IsSealed(LSK2...) = false; a later format must still count as sealed")
		}
		if _, err := s.Open("kid-1", b); err == nil || errors.Is(err, keyseal.ErrAuthentication) || !strings.Contains(err.Error(), "not supported") {
			t.Fatalf("Open(LSK2) = %v, want a not-supported error", err)
		}
	})
}

func TestParse(t *testing.T) {
	raw := bytes.Repeat([]byte{0xA5}, 32)
	good := base64.StdEncoding.EncodeToString(raw)
	kek, err := keyseal.Parse(" " + good + "\n")
	if err != nil || !bytes.Equal(kek, raw) {
		t.Fatalf("Parse(good with white space) = %x, %v", kek, err)
	}
	secretish := "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" // must never be echoed
	for name, text := range map[string]string{
		"empty":              "  \n",
		"hex":                strings.Repeat("a5", 32),
		"16 bytes":           base64.StdEncoding.EncodeToString(raw[:16]),
		"33 bytes":           base64.StdEncoding.EncodeToString(append(raw, 1)),
		"url alphabet":       strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 16))),
		"unpadded":           base64.RawStdEncoding.EncodeToString(append(raw[:31:31], 7)),
		"secret-ish garbage": secretish,
		"raw bytes":          string(raw),
	} {
		t.Run(name, func(t *testing.T) {
			kek, err := keyseal.Parse(text)
			if !errors.Is(err, keyseal.ErrBadKey) || kek != nil {
				t.Fatalf("Parse = %x, %v; want ErrBadKey", kek, err)
			}
			if strings.TrimSpace(text) != "" && strings.Contains(err.Error(), strings.TrimSpace(text)) {
				t.Fatalf("error %q repeats the key text", err)
			}
			if !strings.Contains(err.Error(), "base64") {
				t.Fatalf("error %q does not say how to make a good key", err)
			}
		})
	}
	if _, err := keyseal.New(raw[:31]); !errors.Is(err, keyseal.ErrBadKey) {
		t.Fatalf("New(31 bytes) = %v, want ErrBadKey", err)
	}
}
