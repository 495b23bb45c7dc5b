package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// ES256 (RFC 7518 §3.4) straight on crypto/ecdsa's ASN.1 API, which the
// big.Int API (ecdsa.Sign, ecdsa.Verify, and golang-jwt's ES256 on top of
// them) converts to and from anyway: each call there allocates r and s as
// big.Ints and re-encodes them. The nonce is crypto/ecdsa's own in both: a
// hedged nonce from crypto/rand mixed with the key and digest
// (draft-irtf-cfrg-det-sigs-with-noise), on every public signing path that
// takes a random source. Only the deterministic RFC 6979 path (a nil
// source) is cheaper, and it gives up the hedge against fault attacks, so
// it is not used.

// es256Size is the length of a raw r||s signature.
const es256Size = 64

var errSignatureEncoding = errors.New("tokens: ecdsa returned a malformed signature")

// signES256 signs the SHA-256 of msg with key and returns r||s, each
// left-padded to 32 bytes (RFC 7518 §3.4).
func signES256(key *ecdsa.PrivateKey, msg []byte) ([es256Size]byte, error) {
	var out [es256Size]byte
	digest := sha256.Sum256(msg)
	der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return out, err
	}
	var inner, r, s cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1(&r, asn1.INTEGER) || !inner.ReadASN1(&s, asn1.INTEGER) || !inner.Empty() ||
		!putScalar(out[:32], r) || !putScalar(out[32:], s) {
		return out, errSignatureEncoding
	}
	return out, nil
}

// putScalar writes the DER INTEGER contents v (a positive integer, minimal
// encoding) into dst, left-padded with zeros. It reports false when v does
// not fit.
func putScalar(dst []byte, v []byte) bool {
	if len(v) > 0 && v[0] == 0 { // sign byte of a positive integer with its top bit set
		v = v[1:]
	}
	if len(v) == 0 || len(v) > len(dst) {
		return false
	}
	clear(dst[:len(dst)-len(v)])
	copy(dst[len(dst)-len(v):], v)
	return true
}

// verifyES256 reports whether sig (r||s) is a valid signature of the
// SHA-256 of msg under pub. r or s equal to zero or not below the curve
// order fail (crypto/ecdsa checks both), as do keys not on P-256.
func verifyES256(pub *ecdsa.PublicKey, msg []byte, sig *[es256Size]byte) bool {
	if pub == nil || pub.Curve == nil || pub.Curve.Params() != elliptic.P256().Params() {
		return false
	}
	// SEQUENCE { INTEGER r, INTEGER s }: at most 2 + 2×(2+33) bytes, in
	// one 72-byte allocation (ecdsa.VerifyASN1 lets its signature escape,
	// so buf cannot stay on the stack).
	var buf [2 + 2*(2+33)]byte
	der := append(buf[:0], 0x30, 0)
	der = appendInteger(der, sig[:32])
	der = appendInteger(der, sig[32:])
	der[1] = byte(len(der) - 2)
	digest := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(pub, digest[:], der)
}

// appendInteger appends the DER INTEGER of the unsigned big-endian v:
// leading zeros dropped (zero stays one zero byte), a zero sign byte added
// when the top bit is set.
func appendInteger(der, v []byte) []byte {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	n := len(v)
	if v[0]&0x80 != 0 {
		n++
	}
	der = append(der, 0x02, byte(n))
	if n > len(v) {
		der = append(der, 0)
	}
	return append(der, v...)
}
