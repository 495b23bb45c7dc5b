package tokens

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// A device proof tells Latch that a login attempt comes from a device that
// has logged in to the account before (OWASP's "device cookie"). It is
// bound to one account by an HMAC-SHA256 keyed with a server secret (one of
// the refresh-token MAC secrets, named by its id, from which a key for this
// one purpose is derived), and carries a random device id and an expiry:
//
//	base64url(keyID[8] || id[16] || exp[8, big-endian Unix seconds] || mac[32])
//
// mac = HMAC-SHA256(HMAC-SHA256(secret, "latch device proof v1"),
// userID || "\x00" || keyID || id || exp). It is not a credential: it grants
// nothing by itself and only selects which failure budget a login attempt
// is charged to.
const (
	deviceIDLen    = 16
	deviceBodyLen  = RefreshKeyIDBytes + deviceIDLen + 8
	deviceProofLen = deviceBodyLen + sha256.Size
	// MaxDeviceProofLength is the longest device proof Latch issues, in
	// characters; longer input is refused before any work.
	MaxDeviceProofLength = (deviceProofLen*8 + 5) / 6
	deviceProofLabel     = "latch device proof v1"
)

// ErrBadDeviceProof reports a device proof that is malformed, expired, or
// not one issued for the account.
var ErrBadDeviceProof = errors.New("tokens: invalid device proof")

// NewDeviceProof issues a device proof for userID that expires at exp,
// under key.
func NewDeviceProof(key RefreshKey, userID string, exp time.Time, rand io.Reader) (string, error) {
	kid, ok := decodeKeyID(key.ID)
	if !ok {
		return "", fmt.Errorf("tokens: device proof: malformed secret id")
	}
	var buf [deviceProofLen]byte
	copy(buf[:RefreshKeyIDBytes], kid[:])
	if _, err := io.ReadFull(rand, buf[RefreshKeyIDBytes:RefreshKeyIDBytes+deviceIDLen]); err != nil {
		return "", fmt.Errorf("tokens: device id: %w", err)
	}
	binary.BigEndian.PutUint64(buf[RefreshKeyIDBytes+deviceIDLen:], uint64(exp.Unix()))
	copy(buf[deviceBodyLen:], deviceMAC(key.Secret, userID, buf[:deviceBodyLen]))
	return base64.RawURLEncoding.EncodeToString(buf[:]), nil
}

// VerifyDeviceProof checks that proof was issued for userID under a secret
// that lookup knows by id and has not expired at now, and returns its device
// id (hex).
func VerifyDeviceProof(lookup func(id string) ([]byte, bool), userID, proof string, now time.Time) (string, error) {
	if len(proof) != MaxDeviceProofLength {
		return "", ErrBadDeviceProof
	}
	buf, err := base64.RawURLEncoding.Strict().DecodeString(proof)
	if err != nil || len(buf) != deviceProofLen {
		return "", ErrBadDeviceProof
	}
	secret, ok := lookup(base64.RawURLEncoding.EncodeToString(buf[:RefreshKeyIDBytes]))
	if !ok {
		return "", ErrBadDeviceProof
	}
	body := buf[:deviceBodyLen]
	if !hmac.Equal(buf[deviceBodyLen:], deviceMAC(secret, userID, body)) {
		return "", ErrBadDeviceProof
	}
	exp := int64(binary.BigEndian.Uint64(buf[RefreshKeyIDBytes+deviceIDLen:]))
	if exp <= 0 || !now.Before(time.Unix(exp, 0)) {
		return "", ErrBadDeviceProof
	}
	return hex.EncodeToString(buf[RefreshKeyIDBytes : RefreshKeyIDBytes+deviceIDLen]), nil
}

// deviceMAC is the proof's MAC under a key derived from secret for device
// proofs alone, so that no value is ever valid as both a device proof and a
// refresh token.
func deviceMAC(secret []byte, userID string, body []byte) []byte {
	k := hmac.New(sha256.New, secret)
	k.Write([]byte(deviceProofLabel))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)
}
