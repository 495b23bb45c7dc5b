package tokens

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// A refresh token is the unpadded base64url encoding of
//
//	offset  size  field
//	0       1     version (1)
//	1       8     id of the MAC secret (RefreshKeyIDBytes)
//	9       8     generation, big-endian: the session's rotation count
//	              when the token was minted
//	17      1     length n of the session id (1 to 255)
//	18      n     session id
//	18+n    32    random bytes (crypto/rand)
//	50+n    32    HMAC-SHA256 under the MAC secret of every byte before it
//
// Everything before the MAC is the token's body; storage keeps only the
// SHA-256 of the body (RefreshToken.Digest). The MAC lets the server trust
// the session id and generation a token names before it reads storage, so
// that a token it did not mint can never act on a session, and an old
// generation of a session can be recognised without keeping its digest.
const (
	refreshVersion = 1
	// RefreshKeyIDBytes is the size of a MAC secret's id inside a token.
	RefreshKeyIDBytes = 8
	// RefreshSecretBytes is the size of a MAC secret.
	RefreshSecretBytes = 32
	// refreshRandomBytes is the entropy of a refresh token.
	refreshRandomBytes = 32
	refreshMACBytes    = sha256.Size
	refreshHeaderBytes = 1 + RefreshKeyIDBytes + 8 + 1
	// maxRefreshSessionID is the longest session id a token can carry.
	maxRefreshSessionID = 255
	// MaxRefreshTokenLength is the length of the longest refresh token
	// string (a 255-byte session id); a 22-character session id makes a
	// 139-character token.
	MaxRefreshTokenLength = (refreshHeaderBytes+maxRefreshSessionID+refreshRandomBytes+refreshMACBytes)*4/3 + 1
	// idBytes is the entropy of session ids and jtis.
	idBytes = 16
)

// Refresh-token errors. None of them contains the token.
var (
	// ErrMalformedRefreshToken reports a string that cannot be a refresh
	// token Latch issued (wrong length, alphabet or layout, or a
	// non-canonical encoding).
	ErrMalformedRefreshToken = errors.New("tokens: malformed refresh token")
	// ErrUnknownRefreshKey reports a well-formed token whose MAC secret id
	// the caller does not know.
	ErrUnknownRefreshKey = errors.New("tokens: refresh token names an unknown MAC secret")
	// ErrRefreshTokenForged reports a well-formed token whose MAC does not
	// verify under the secret it names: it was not minted by Latch, or was
	// altered.
	ErrRefreshTokenForged = errors.New("tokens: refresh token MAC does not verify")
)

// RefreshToken is what a verified refresh token says.
type RefreshToken struct {
	// KeyID is the id of the MAC secret that minted it.
	KeyID string
	// SessionID is the session (refresh family) it belongs to.
	SessionID string
	// Generation is the session's rotation count when it was minted.
	Generation uint64
	// Digest is the SHA-256 of the token's body: the only form of it that
	// is stored.
	Digest [32]byte
}

// RefreshKey is a MAC secret for refresh tokens and its id.
type RefreshKey struct {
	// ID is NewRefreshKeyID's encoding of RefreshKeyIDBytes random bytes.
	ID string
	// Secret is RefreshSecretBytes random bytes.
	Secret []byte
}

// strictRawURL decodes unpadded base64url and refuses non-zero trailing bits,
// so that every byte string has exactly one accepted encoding.
var strictRawURL = base64.RawURLEncoding.Strict()

// NewRefreshKey returns a new MAC secret with a new id, both read from r (a
// cryptographically secure source: crypto/rand.Reader outside tests).
func NewRefreshKey(r io.Reader) (RefreshKey, error) {
	var raw [RefreshKeyIDBytes + RefreshSecretBytes]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return RefreshKey{}, fmt.Errorf("tokens: read randomness: %w", err)
	}
	return RefreshKey{ID: base64.RawURLEncoding.EncodeToString(raw[:RefreshKeyIDBytes]),
		Secret: raw[RefreshKeyIDBytes:]}, nil
}

// ValidRefreshKeyID reports whether id is the form NewRefreshKey gives ids:
// RefreshKeyIDBytes in canonical unpadded base64url.
func ValidRefreshKeyID(id string) bool {
	_, ok := decodeKeyID(id)
	return ok
}

func decodeKeyID(id string) ([RefreshKeyIDBytes]byte, bool) {
	var raw [RefreshKeyIDBytes + 2]byte
	var out [RefreshKeyIDBytes]byte
	if len(id) != base64.RawURLEncoding.EncodedLen(RefreshKeyIDBytes) || !isBase64URL(id) {
		return out, false
	}
	n, err := strictRawURL.Decode(raw[:], []byte(id))
	if err != nil || n != RefreshKeyIDBytes {
		return out, false
	}
	copy(out[:], raw[:n])
	return out, true
}

// NewRefreshToken mints the refresh token of generation gen of session
// sessionID under key, with fresh random bytes from r (crypto/rand.Reader
// outside tests). It returns the token and what it says, including the
// digest to store. The session id must be 1 to 255 bytes.
func NewRefreshToken(r io.Reader, key RefreshKey, sessionID string, gen uint64) (string, RefreshToken, error) {
	kid, ok := decodeKeyID(key.ID)
	switch {
	case !ok:
		return "", RefreshToken{}, errors.New("tokens: refresh MAC secret id is malformed")
	case len(key.Secret) != RefreshSecretBytes:
		return "", RefreshToken{}, fmt.Errorf("tokens: refresh MAC secret is %d bytes, want %d", len(key.Secret), RefreshSecretBytes)
	case len(sessionID) == 0 || len(sessionID) > maxRefreshSessionID:
		return "", RefreshToken{}, fmt.Errorf("tokens: session id of %d bytes cannot be carried by a refresh token (1 to %d)", len(sessionID), maxRefreshSessionID)
	}
	b := make([]byte, 0, refreshHeaderBytes+len(sessionID)+refreshRandomBytes+refreshMACBytes)
	b = append(b, refreshVersion)
	b = append(b, kid[:]...)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = append(b, byte(len(sessionID)))
	b = append(b, sessionID...)
	body := len(b) + refreshRandomBytes
	b = b[:body]
	if _, err := io.ReadFull(r, b[body-refreshRandomBytes:]); err != nil {
		return "", RefreshToken{}, fmt.Errorf("tokens: read randomness: %w", err)
	}
	b = refreshMAC(key.Secret, b[:body]).Sum(b)
	return base64.RawURLEncoding.EncodeToString(b), RefreshToken{KeyID: key.ID, SessionID: sessionID,
		Generation: gen, Digest: sha256.Sum256(b[:body])}, nil
}

func refreshMAC(secret, body []byte) hash.Hash {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m
}

// ParseRefreshToken decodes token, verifies its MAC under the secret that
// secret returns for the token's key id, and returns what the token says.
// It accepts only the canonical encoding of the layout above, so that two
// different strings never name the same token. Failures:
// ErrMalformedRefreshToken (not a refresh token's form),
// ErrUnknownRefreshKey (secret reports no secret for the id),
// ErrRefreshTokenForged (the MAC does not verify). A token that fails says
// nothing: callers must not act on its session id.
func ParseRefreshToken(token string, secret func(keyID string) ([]byte, bool)) (RefreshToken, error) {
	const minLen = refreshHeaderBytes + 1 + refreshRandomBytes + refreshMACBytes
	if len(token) < base64.RawURLEncoding.EncodedLen(minLen) || len(token) > MaxRefreshTokenLength || !isBase64URL(token) {
		return RefreshToken{}, ErrMalformedRefreshToken
	}
	var buf [MaxRefreshTokenLength * 3 / 4]byte
	n, err := strictRawURL.Decode(buf[:], []byte(token))
	if err != nil {
		return RefreshToken{}, ErrMalformedRefreshToken
	}
	b := buf[:n]
	if b[0] != refreshVersion || int(b[refreshHeaderBytes-1]) == 0 ||
		n != refreshHeaderBytes+int(b[refreshHeaderBytes-1])+refreshRandomBytes+refreshMACBytes {
		return RefreshToken{}, ErrMalformedRefreshToken
	}
	body, tag := b[:n-refreshMACBytes], b[n-refreshMACBytes:]
	keyID := base64.RawURLEncoding.EncodeToString(b[1 : 1+RefreshKeyIDBytes])
	key, ok := secret(keyID)
	if !ok {
		return RefreshToken{}, ErrUnknownRefreshKey
	}
	if !hmac.Equal(refreshMAC(key, body).Sum(nil), tag) {
		return RefreshToken{}, ErrRefreshTokenForged
	}
	return RefreshToken{
		KeyID:      keyID,
		Generation: binary.BigEndian.Uint64(b[1+RefreshKeyIDBytes:]),
		SessionID:  string(b[refreshHeaderBytes : refreshHeaderBytes+int(b[refreshHeaderBytes-1])]),
		Digest:     sha256.Sum256(body),
	}, nil
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
