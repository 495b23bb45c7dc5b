package storage

import "fmt"

// ValidateSigningKeys checks a complete key set the way KeyAdmin's
// UpdateSigningKeys must: every key has a ValidID id, private and public key
// material and a known state (next, active or retired), and no two keys
// share an id; at most one key is active. Failures wrap ErrInvalidArgument.
// Backends call it so that they all refuse the same sets.
func ValidateSigningKeys(keys []SigningKey) error {
	seen := make(map[string]bool, len(keys))
	active := 0
	for i, k := range keys {
		switch {
		case !ValidID(k.ID):
			return fmt.Errorf("signing key %d: id must be 1 to 512 bytes without NUL: %w", i, ErrInvalidArgument)
		case len(k.PrivateKey) == 0 || len(k.PublicKey) == 0:
			return fmt.Errorf("signing key %s: private and public key material are required: %w", k.ID, ErrInvalidArgument)
		case k.State != KeyNext && k.State != KeyActive && k.State != KeyRetired:
			return fmt.Errorf("signing key %s: unknown state %q: %w", k.ID, k.State, ErrInvalidArgument)
		case seen[k.ID]:
			return fmt.Errorf("signing key %s: listed twice: %w", k.ID, ErrInvalidArgument)
		}
		seen[k.ID] = true
		if k.State == KeyActive {
			active++
		}
	}
	if active > 1 {
		return fmt.Errorf("%d active signing keys, at most one may be active: %w", active, ErrInvalidArgument)
	}
	return nil
}

// MaxRefreshKeys bounds a stored refresh-key set. The life cycle keeps at
// most a few (one active, one next, the retired ones whose tokens may
// still be live); the bound keeps a runaway caller from growing the set.
const MaxRefreshKeys = 64

// ValidateRefreshKeys checks a complete refresh-key set the way
// RefreshKeyStore's UpdateRefreshKeys must: every key has an id of the
// form ValidID accepts, a secret and a known state; no two keys share an
// id; at most one key is active; at most MaxRefreshKeys keys. Failures wrap
// ErrInvalidArgument.
func ValidateRefreshKeys(keys []RefreshKey) error {
	if len(keys) > MaxRefreshKeys {
		return fmt.Errorf("%d refresh keys, at most %d may be stored: %w", len(keys), MaxRefreshKeys, ErrInvalidArgument)
	}
	seen := make(map[string]bool, len(keys))
	active := 0
	for i, k := range keys {
		switch {
		case !ValidID(k.ID):
			return fmt.Errorf("refresh key %d: id must be 1 to 512 bytes without NUL: %w", i, ErrInvalidArgument)
		case len(k.Secret) == 0:
			return fmt.Errorf("refresh key %s: a secret is required: %w", k.ID, ErrInvalidArgument)
		case k.State != KeyNext && k.State != KeyActive && k.State != KeyRetired:
			return fmt.Errorf("refresh key %s: unknown state %q: %w", k.ID, k.State, ErrInvalidArgument)
		case seen[k.ID]:
			return fmt.Errorf("refresh key %s: listed twice: %w", k.ID, ErrInvalidArgument)
		}
		seen[k.ID] = true
		if k.State == KeyActive {
			active++
		}
	}
	if active > 1 {
		return fmt.Errorf("%d active refresh keys, at most one may be active: %w", active, ErrInvalidArgument)
	}
	return nil
}
