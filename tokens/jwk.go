package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
)

const (
	// MaxJWKSSize bounds the JSON Web Key Set documents ParseJWKS accepts.
	MaxJWKSSize = 1 << 20
	// maxJWKSKeys bounds the number of keys in a set.
	maxJWKSKeys = 100
	// maxKeyIDLength bounds a kid, in a JWK or a token header.
	maxKeyIDLength = 256
)

// JWK is a public JSON Web Key (RFC 7517) for ES256: an EC P-256 point.
type JWK struct {
	// Kty is the key type, always "EC".
	Kty string `json:"kty"`
	// Crv is the curve, always "P-256".
	Crv string `json:"crv"`
	// X and Y are the point's coordinates, 32 bytes each, base64url.
	X string `json:"x"`
	Y string `json:"y"`
	// Kid is the key id: Latch uses the RFC 7638 thumbprint.
	Kid string `json:"kid"`
	// Alg is the algorithm the key is used with, "ES256".
	Alg string `json:"alg"`
	// Use is the intended use, "sig".
	Use string `json:"use"`
}

// JWKS is a JSON Web Key Set, as served at /.well-known/jwks.json.
type JWKS struct {
	// Keys are the published keys.
	Keys []JWK `json:"keys"`
}

// NewJWK returns the JWK of a P-256 public key, with its thumbprint as kid.
func NewJWK(k *ecdsa.PublicKey) (JWK, error) {
	x, y, err := coordinates(k)
	if err != nil {
		return JWK{}, err
	}
	kid, err := Thumbprint(k)
	if err != nil {
		return JWK{}, err
	}
	return JWK{
		Kty: "EC", Crv: "P-256", Alg: Algorithm, Use: "sig", Kid: kid,
		X: strictRawURL.EncodeToString(x), Y: strictRawURL.EncodeToString(y),
	}, nil
}

// PublicKey returns the key j describes. It accepts only EC P-256 keys meant
// for ES256 signatures (alg and use, when present, must say so), with
// canonical 32-byte coordinates of a point on the curve.
func (j JWK) PublicKey() (*ecdsa.PublicKey, error) {
	switch {
	case j.Kty != "EC" || j.Crv != "P-256":
		return nil, fmt.Errorf("tokens: jwk %q: want kty EC and crv P-256", j.Kid)
	case j.Alg != "" && j.Alg != Algorithm:
		return nil, fmt.Errorf("tokens: jwk %q: alg must be %s", j.Kid, Algorithm)
	case j.Use != "" && j.Use != "sig":
		return nil, fmt.Errorf("tokens: jwk %q: use must be sig", j.Kid)
	case j.Kid == "" || len(j.Kid) > maxKeyIDLength:
		return nil, errors.New("tokens: jwk without a usable kid")
	}
	x, errX := strictRawURL.DecodeString(j.X)
	y, errY := strictRawURL.DecodeString(j.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 || !isBase64URL(j.X) || !isBase64URL(j.Y) {
		return nil, fmt.Errorf("tokens: jwk %q: x and y must be 32-byte base64url coordinates", j.Kid)
	}
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("tokens: jwk %q: not a P-256 point: %w", j.Kid, err)
	}
	return k, nil
}

// KeySource finds the public key that verifies tokens with a given kid.
// Implementations must return an error wrapping ErrUnknownKey when they hold
// no such key, and must never derive a key from the token itself.
type KeySource interface {
	PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error)
}

// KeySet is an immutable set of P-256 public keys indexed by kid. It is a
// KeySource and safe for concurrent use.
type KeySet struct {
	jwks JWKS
	byID map[string]*ecdsa.PublicKey
}

var _ KeySource = (*KeySet)(nil)

// NewKeySet returns the set of keys, each under its RFC 7638 thumbprint, in
// the order given (which is the order JWKS lists them).
func NewKeySet(keys ...*ecdsa.PublicKey) (*KeySet, error) {
	set := JWKS{Keys: make([]JWK, 0, len(keys))}
	for _, k := range keys {
		j, err := NewJWK(k)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, j)
	}
	return NewKeySetFromJWKS(set)
}

// ParseJWKS parses a JSON Web Key Set document such as Latch serves at
// /.well-known/jwks.json. Keys of other types or uses are skipped (RFC 7517
// §5); an EC P-256 key that is malformed, a duplicate kid, a document larger
// than MaxJWKSSize or a set without any usable key is an error.
func ParseJWKS(data []byte) (*KeySet, error) {
	if len(data) > MaxJWKSSize {
		return nil, fmt.Errorf("tokens: jwks larger than %d bytes", MaxJWKSSize)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if _, err := strictObject(data, nil); err != nil {
		return nil, fmt.Errorf("tokens: jwks: %w", err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("tokens: jwks: %w", err)
	}
	set := JWKS{Keys: make([]JWK, 0, len(doc.Keys))}
	for _, raw := range doc.Keys {
		var j JWK
		if err := json.Unmarshal(raw, &j); err != nil {
			continue // not an object of strings: not a key this package uses
		}
		set.Keys = append(set.Keys, j)
	}
	return NewKeySetFromJWKS(set)
}

// NewKeySetFromJWKS builds a KeySet from decoded JWKs (for example from
// Latch's GetJWKS RPC) with the same rules as ParseJWKS: keys of other types
// or uses are skipped; a malformed EC P-256 key, a duplicate kid or a set
// without any usable key is an error.
func NewKeySetFromJWKS(set JWKS) (*KeySet, error) {
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("tokens: jwks holds more than %d keys", maxJWKSKeys)
	}
	s := &KeySet{byID: make(map[string]*ecdsa.PublicKey, len(set.Keys))}
	for _, j := range set.Keys {
		if j.Kty != "EC" || j.Crv != "P-256" || (j.Use != "" && j.Use != "sig") || (j.Alg != "" && j.Alg != Algorithm) {
			continue
		}
		k, err := j.PublicKey()
		if err != nil {
			return nil, err
		}
		if _, dup := s.byID[j.Kid]; dup {
			return nil, fmt.Errorf("tokens: duplicate kid %q in key set", j.Kid)
		}
		j.Alg, j.Use = Algorithm, "sig"
		s.byID[j.Kid] = k
		s.jwks.Keys = append(s.jwks.Keys, j)
	}
	if len(s.byID) == 0 {
		return nil, errors.New("tokens: jwks holds no ES256 key")
	}
	return s, nil
}

// PublicKey implements KeySource.
func (s *KeySet) PublicKey(_ context.Context, kid string) (*ecdsa.PublicKey, error) {
	if k, ok := s.byID[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// Len returns the number of keys.
func (s *KeySet) Len() int { return len(s.byID) }

// JWKS returns the set as a JSON Web Key Set, in the set's order. The result
// is a copy the caller may keep.
func (s *KeySet) JWKS() JWKS {
	return JWKS{Keys: append([]JWK(nil), s.jwks.Keys...)}
}
