package tokens

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// Algorithm is the only JWS algorithm Latch signs with or accepts.
	Algorithm = "ES256"
	// AccessTokenType is the typ header of access tokens (RFC 9068 §2.1).
	AccessTokenType = "at+jwt"
)

// Claims are the claims of a Latch access token.
type Claims struct {
	// Issuer (iss) is the Latch instance's issuer URL.
	Issuer string
	// Subject (sub) is the user id, never the email.
	Subject string
	// Audience (aud) names the services the token is for.
	Audience []string
	// ExpiresAt (exp), NotBefore (nbf) and IssuedAt (iat), at second
	// precision. NotBefore may be zero (absent).
	ExpiresAt time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	// ID (jti) is the token's unique id, the key of its revocation.
	ID string
	// SessionID (sid) is the session (refresh family) the token belongs to.
	SessionID string
	// Roles are the user's roles when the token was minted.
	Roles []string
	// ClientID (client_id, RFC 9068 §2.2) names the client the session was
	// created for: the audience its Login asked for. It stays the same for
	// every token of the session, also when a Refresh asks for Latch's own
	// audience. Sign omits it when empty, and Verifier accepts tokens
	// without it.
	ClientID string
}

// HasRole reports whether the claims carry role.
func (c Claims) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// wireClaims is the JSON form of Claims, in a fixed member order.
type wireClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  any      `json:"aud"`
	ExpiresAt int64    `json:"exp"`
	NotBefore int64    `json:"nbf,omitempty"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
	SessionID string   `json:"sid"`
	Roles     []string `json:"roles"`
	ClientID  string   `json:"client_id,omitempty"`
}

// Signer signs access tokens with one P-256 private key. It is safe for
// concurrent use.
type Signer struct {
	key    *ecdsa.PrivateKey
	kid    string
	header string // the encoded protected header, the same for every token
}

// NewSigner returns a Signer for key, whose kid is the key's RFC 7638
// thumbprint.
func NewSigner(key *ecdsa.PrivateKey) (*Signer, error) {
	if key == nil {
		return nil, errNotP256
	}
	kid, err := Thumbprint(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{Algorithm, AccessTokenType, kid})
	if err != nil {
		return nil, fmt.Errorf("tokens: encode header: %w", err)
	}
	return &Signer{key: key, kid: kid, header: base64.RawURLEncoding.EncodeToString(h)}, nil
}

// KeyID returns the kid the Signer puts in every token.
func (s *Signer) KeyID() string { return s.kid }

// Sign returns the compact JWS of c. It refuses claims that Verifier would
// reject for their shape: empty iss, sub, aud, jti or sid, or an exp not
// after iat.
func (s *Signer) Sign(c Claims) (string, error) {
	switch {
	case c.Issuer == "" || c.Subject == "" || c.ID == "" || c.SessionID == "":
		return "", errors.New("tokens: sign: iss, sub, jti and sid are required")
	case len(c.Audience) == 0 || slices.Contains(c.Audience, ""):
		return "", errors.New("tokens: sign: aud is required")
	case c.IssuedAt.IsZero() || !c.ExpiresAt.After(c.IssuedAt):
		return "", errors.New("tokens: sign: exp must be after iat")
	}
	w := wireClaims{
		Issuer: c.Issuer, Subject: c.Subject, ExpiresAt: c.ExpiresAt.Unix(), IssuedAt: c.IssuedAt.Unix(),
		ID: c.ID, SessionID: c.SessionID, Roles: c.Roles, ClientID: c.ClientID,
	}
	if w.Roles == nil {
		w.Roles = []string{}
	}
	if len(c.Audience) == 1 {
		w.Audience = c.Audience[0]
	} else {
		w.Audience = c.Audience
	}
	if !c.NotBefore.IsZero() {
		w.NotBefore = c.NotBefore.Unix()
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return "", fmt.Errorf("tokens: encode claims: %w", err)
	}
	signing := s.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := jwt.SigningMethodES256.Sign(signing, s.key)
	if err != nil {
		return "", fmt.Errorf("tokens: sign: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
