package server

import (
	"cmp"
	"fmt"
	"time"

	"github.com/latchauth/latch/internal/keyseal"
)

// Key life-cycle defaults.
const (
	// DefaultKeyRotation is how long a signing key signs (30 days).
	DefaultKeyRotation = 30 * 24 * time.Hour
	// KeyPublishMargin is added to the JWKS max-age for the default
	// publication lead: it covers sidecars that refresh on their own
	// schedule and never refetch on an unknown kid (Istio's istiod every
	// 20 minutes, Envoy's remote JWKS cache 5–10 minutes).
	KeyPublishMargin = time.Hour
	// DefaultKeyReloadInterval is how often the key ring is reloaded from
	// storage.
	DefaultKeyReloadInterval = 5 * time.Second
)

// WithKeySealer seals private signing keys with a key-encryption key before
// they reach storage (see package keyseal). Default nil: private keys are
// stored as plain PKCS #8, readable by anyone who reads the database file or
// a backup of it; New warns (event key_encryption_disabled). With a sealer,
// New seals plaintext keys it finds, and refuses sealed keys that the sealer
// does not open.
func WithKeySealer(s *keyseal.Sealer) Option { return func(o *options) { o.sealer = s } }

// keyDefaults fills the key life-cycle fields; JWKSMaxAge must be filled.
func (c Config) keyDefaults() Config {
	c.KeyRotation = cmp.Or(c.KeyRotation, DefaultKeyRotation)
	c.KeyPublishLead = cmp.Or(c.KeyPublishLead, c.JWKSMaxAge+KeyPublishMargin)
	c.KeyReloadInterval = cmp.Or(c.KeyReloadInterval, DefaultKeyReloadInterval)
	return c
}

// validateKeys reports every problem with the key life-cycle fields.
func (c Config) validateKeys() []error {
	var errs []error
	if c.KeyPublishLead < c.JWKSMaxAge {
		errs = append(errs, fmt.Errorf("config: KeyPublishLead %v must be at least the JWKS max-age %v: verifiers may cache the key set that long, and must see a new key before it signs; raise KeyPublishLead",
			c.KeyPublishLead, c.JWKSMaxAge))
	}
	if c.KeyReloadInterval < 100*time.Millisecond || c.KeyReloadInterval > 10*time.Minute {
		errs = append(errs, fmt.Errorf("config: KeyReloadInterval %v must be in [100ms, 10m]", c.KeyReloadInterval))
	}
	if c.KeyRotation > 0 {
		if minimum := c.KeyPublishLead + c.AccessTTL + c.Leeway + c.KeyReloadInterval; c.KeyRotation < minimum {
			errs = append(errs, fmt.Errorf("config: KeyRotation %v must be at least KeyPublishLead %v + AccessTTL %v + Leeway %v + KeyReloadInterval %v = %v, so that each key is published long enough before it signs and at most one retired key is published at a time: raise KeyRotation, lower KeyPublishLead (not below the JWKS max-age) or AccessTTL, or disable scheduled rotation to rotate only on demand",
				c.KeyRotation, c.KeyPublishLead, c.AccessTTL, c.Leeway, c.KeyReloadInterval, minimum))
		}
	}
	return errs
}
