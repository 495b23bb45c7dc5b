package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// errNotP256 reports a key of another type or curve.
var errNotP256 = errors.New("tokens: key is not an ECDSA P-256 key")

// GenerateKey returns a new P-256 signing key. r is the source of
// randomness; pass crypto/rand.Reader outside tests (the standard library
// may ignore r and use its own secure source).
func GenerateKey(r io.Reader) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, fmt.Errorf("tokens: generate P-256 key: %w", err)
	}
	return k, nil
}

// MarshalPrivateKey encodes k as PKCS #8 DER. The result is secret.
func MarshalPrivateKey(k *ecdsa.PrivateKey) ([]byte, error) {
	if k == nil || k.Curve != elliptic.P256() {
		return nil, errNotP256
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode private key: %w", err)
	}
	return der, nil
}

// ParsePrivateKey decodes a PKCS #8 DER private key and accepts only P-256
// ECDSA keys.
func ParsePrivateKey(der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("tokens: decode private key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errNotP256
	}
	return ek, nil
}

// MarshalPublicKey encodes k as PKIX (SubjectPublicKeyInfo) DER.
func MarshalPublicKey(k *ecdsa.PublicKey) ([]byte, error) {
	if k == nil || k.Curve != elliptic.P256() {
		return nil, errNotP256
	}
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode public key: %w", err)
	}
	return der, nil
}

// ParsePublicKey decodes a PKIX DER public key and accepts only P-256 ECDSA
// keys.
func ParsePublicKey(der []byte) (*ecdsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("tokens: decode public key: %w", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errNotP256
	}
	return ek, nil
}

// coordinates returns the 32-byte big-endian x and y of a P-256 public key.
func coordinates(k *ecdsa.PublicKey) (x, y []byte, err error) {
	if k == nil || k.Curve != elliptic.P256() {
		return nil, nil, errNotP256
	}
	b, err := k.Bytes() // 0x04 || x || y
	if err != nil || len(b) != 65 {
		return nil, nil, fmt.Errorf("tokens: invalid public key: %w", errNotP256)
	}
	return b[1:33], b[33:], nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint of k (SHA-256, base64url),
// which Latch uses as the key id (kid).
func Thumbprint(k *ecdsa.PublicKey) (string, error) {
	x, y, err := coordinates(k)
	if err != nil {
		return "", err
	}
	// RFC 7638 §3.2: the required members in lexicographic order, no
	// whitespace.
	enc := base64.RawURLEncoding
	canon := `{"crv":"P-256","kty":"EC","x":"` + enc.EncodeToString(x) + `","y":"` + enc.EncodeToString(y) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return enc.EncodeToString(sum[:]), nil
}
