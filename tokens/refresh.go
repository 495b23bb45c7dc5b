package tokens

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

const (
	// refreshTokenBytes is the entropy of a refresh token.
	refreshTokenBytes = 32
	// RefreshTokenLength is the length of a refresh token string: 32 bytes
	// in unpadded base64url.
	RefreshTokenLength = 43
	// idBytes is the entropy of session ids and jtis.
	idBytes = 16
)

// ErrMalformedRefreshToken reports a string that cannot be a refresh token
// Latch issued (wrong length or alphabet, or a non-canonical encoding).
var ErrMalformedRefreshToken = errors.New("tokens: malformed refresh token")

// strictRawURL decodes unpadded base64url and refuses non-zero trailing bits,
// so that every byte string has exactly one accepted encoding.
var strictRawURL = base64.RawURLEncoding.Strict()

// NewRefreshToken returns a new refresh token and the SHA-256 digest under
// which it is stored. r must be a cryptographically secure source
// (crypto/rand.Reader outside tests).
func NewRefreshToken(r io.Reader) (token string, digest [32]byte, err error) {
	var raw [refreshTokenBytes]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return "", digest, fmt.Errorf("tokens: read randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw[:]), sha256.Sum256(raw[:]), nil
}

// HashRefreshToken returns the digest of a refresh token as NewRefreshToken
// computed it. It accepts only the canonical encoding, so that two different
// strings never name the same token; anything else is
// ErrMalformedRefreshToken. The error never contains the token.
func HashRefreshToken(token string) ([32]byte, error) {
	var raw [refreshTokenBytes + 2]byte // room to detect overlong input
	if len(token) != RefreshTokenLength || !isBase64URL(token) {
		return [32]byte{}, ErrMalformedRefreshToken
	}
	n, err := strictRawURL.Decode(raw[:], []byte(token))
	if err != nil || n != refreshTokenBytes {
		return [32]byte{}, ErrMalformedRefreshToken
	}
	return sha256.Sum256(raw[:n]), nil
}

// NewID returns a new random identifier (128 bits, unpadded base64url, 22
// characters) for sessions, users and token ids.
func NewID(r io.Reader) (string, error) {
	var raw [idBytes]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return "", fmt.Errorf("tokens: read randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// isBase64URL reports whether s holds only the unpadded base64url alphabet
// (the decoder alone would skip newlines). It runs over every byte of every
// presented token, so it tests each byte against a bitmap of the alphabet
// instead of a chain of range comparisons.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		var m uint64
		switch c >> 6 {
		case 0:
			m = base64URLLow
		case 1:
			m = base64URLHigh
		default:
			return false
		}
		if m>>(c&63)&1 == 0 {
			return false
		}
	}
	return true
}

// The base64url alphabet as two 64-bit bitmaps: bytes 0-63 ('-' and the
// digits) and 64-127 ('A'-'Z', '_', 'a'-'z').
const (
	base64URLLow  = 1<<'-' | (1<<10-1)<<'0'
	base64URLHigh = (1<<26-1)<<('A'-64) | 1<<('_'-64) | (1<<26-1)<<('a'-64)
)
