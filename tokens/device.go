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
// bound to one account by an HMAC-SHA256 keyed with a server secret, and
// carries a random device id and an expiry:
//
//	base64url(id[16] || exp[8, big-endian Unix seconds] || mac[32])
//
// mac = HMAC-SHA256(key, "latch device proof v1\x00" || userID || "\x00" ||
// id || exp). It is not a credential: it grants nothing by itself and only
// selects which failure budget a login attempt is charged to.
const (
	deviceIDLen    = 16
	deviceProofLen = deviceIDLen + 8 + sha256.Size
	// MaxDeviceProofLength is the longest device proof Latch issues, in
	// characters; longer input is refused before any work.
	MaxDeviceProofLength = (deviceProofLen*8 + 5) / 6
	deviceProofLabel     = "latch device proof v1\x00"
)

// ErrBadDeviceProof reports a device proof that is malformed, expired, or
// not one issued for the account.
var ErrBadDeviceProof = errors.New("tokens: invalid device proof")

// NewDeviceProof issues a device proof for userID that expires at exp.
func NewDeviceProof(key []byte, userID string, exp time.Time, rand io.Reader) (string, error) {
	var buf [deviceProofLen]byte
	if _, err := io.ReadFull(rand, buf[:deviceIDLen]); err != nil {
		return "", fmt.Errorf("tokens: device id: %w", err)
	}
	binary.BigEndian.PutUint64(buf[deviceIDLen:], uint64(exp.Unix()))
	copy(buf[deviceIDLen+8:], deviceMAC(key, userID, buf[:deviceIDLen+8]))
	return base64.RawURLEncoding.EncodeToString(buf[:]), nil
}

// VerifyDeviceProof checks that proof was issued for userID under key and
// has not expired at now, and returns its device id (hex).
func VerifyDeviceProof(key []byte, userID, proof string, now time.Time) (string, error) {
	if len(proof) != MaxDeviceProofLength {
		return "", ErrBadDeviceProof
	}
	buf, err := base64.RawURLEncoding.Strict().DecodeString(proof)
	if err != nil || len(buf) != deviceProofLen {
		return "", ErrBadDeviceProof
	}
	body := buf[:deviceIDLen+8]
	if !hmac.Equal(buf[deviceIDLen+8:], deviceMAC(key, userID, body)) {
		return "", ErrBadDeviceProof
	}
	exp := int64(binary.BigEndian.Uint64(buf[deviceIDLen:]))
	if exp <= 0 || !now.Before(time.Unix(exp, 0)) {
		return "", ErrBadDeviceProof
	}
	return hex.EncodeToString(buf[:deviceIDLen]), nil
}

func deviceMAC(key []byte, userID string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(deviceProofLabel))
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)
}
