// Package keyseal encrypts signing keys at rest with a key-encryption key
// (KEK): AES-256-GCM, a fresh random 96-bit nonce per seal, and the key's id
// as additional authenticated data, so that a sealed key cannot be moved to
// another id, altered or truncated without Open failing.
//
// A sealed key is an envelope:
//
//	"LSK1" | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)
//
// "LSK1" (Latch sealed key, version 1) can never begin a PKCS #8 DER
// encoding (which begins with 0x30), so IsSealed tells sealed keys from
// plaintext ones and a later format can use another prefix.
//
// The KEK itself is 32 random bytes, given to Latch in standard base64
// (RFC 4648 §4, 44 characters with padding), for example generated with
//
//	head -c32 /dev/urandom | base64
package keyseal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// KeySize is the length of a key-encryption key in bytes (AES-256).
const KeySize = 32

// prefix marks, and versions, a sealed key.
var prefix = []byte("LSK1")

const nonceSize = 12

// Errors returned by Open and Parse.
var (
	// ErrAuthentication reports a sealed key that does not authenticate
	// under the KEK: the KEK is not the one it was sealed with, or the
	// data was altered. It deliberately says no more.
	ErrAuthentication = errors.New("keyseal: sealed key does not authenticate (wrong key-encryption key, or damaged data)")
	// ErrNotSealed reports that Open was given bytes without the envelope
	// prefix.
	ErrNotSealed = errors.New("keyseal: not a sealed key")
	// ErrBadKey reports a key-encryption key that is not 32 bytes in
	// standard base64.
	ErrBadKey = errors.New("keyseal: bad key-encryption key")
)

// Sealer seals and opens private keys under one KEK. It is safe for
// concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// New returns a Sealer for kek, which must be exactly KeySize bytes. The
// Sealer keeps its own expanded copy: the caller may clear kek afterwards.
func New(kek []byte) (*Sealer, error) {
	if len(kek) != KeySize {
		return nil, fmt.Errorf("%w: it is %d bytes, want %d", ErrBadKey, len(kek), KeySize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keyseal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keyseal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Parse decodes a KEK from its text form: exactly 32 bytes in standard
// base64 with padding, surrounding white space (a file's trailing newline)
// ignored. Anything else fails with ErrBadKey and a message that says what
// was wrong without repeating the text.
func Parse(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("%w: it is empty; generate one with `head -c32 /dev/urandom | base64`", ErrBadKey)
	}
	kek, err := base64.StdEncoding.Strict().DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("%w: it is not standard base64 (%d characters; want 44, e.g. from `head -c32 /dev/urandom | base64`)", ErrBadKey, len(text))
	}
	if len(kek) != KeySize {
		return nil, fmt.Errorf("%w: it decodes to %d bytes, want %d (generate one with `head -c32 /dev/urandom | base64`)", ErrBadKey, len(kek), KeySize)
	}
	return kek, nil
}

// IsSealed reports whether b carries the sealed-key envelope prefix (of any
// version: "LSK" and a version character).
func IsSealed(b []byte) bool {
	return len(b) >= len(prefix) && bytes.Equal(b[:len(prefix)-1], prefix[:len(prefix)-1])
}

// Seal encrypts plaintext, the private key of the key with id kid, with a
// fresh nonce read from rand.
func (s *Sealer) Seal(rand io.Reader, kid string, plaintext []byte) ([]byte, error) {
	out := make([]byte, len(prefix)+nonceSize, len(prefix)+nonceSize+len(plaintext)+s.aead.Overhead())
	copy(out, prefix)
	nonce := out[len(prefix):]
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("keyseal: nonce: %w", err)
	}
	return s.aead.Seal(out, nonce, plaintext, additionalData(kid)), nil
}

// Open decrypts a sealed private key of the key with id kid. A key sealed
// for another id, under another KEK, or altered in any byte fails with
// ErrAuthentication.
func (s *Sealer) Open(kid string, sealed []byte) ([]byte, error) {
	if !IsSealed(sealed) {
		return nil, ErrNotSealed
	}
	if !bytes.Equal(sealed[:len(prefix)], prefix) {
		return nil, fmt.Errorf("keyseal: sealed key format %q is not supported by this version", sealed[len(prefix)-1:len(prefix)])
	}
	if len(sealed) < len(prefix)+nonceSize+s.aead.Overhead() {
		return nil, ErrAuthentication
	}
	nonce := sealed[len(prefix) : len(prefix)+nonceSize]
	plain, err := s.aead.Open(nil, nonce, sealed[len(prefix)+nonceSize:], additionalData(kid))
	if err != nil {
		return nil, ErrAuthentication
	}
	return plain, nil
}

// additionalData binds a sealed key to its envelope version and its id.
func additionalData(kid string) []byte {
	return append(append([]byte(nil), prefix...), kid...)
}
