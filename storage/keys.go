package storage

import "fmt"

// ValidateSigningKeys checks a complete key set the way KeyAdmin's
// UpdateSigningKeys must: every key has a ValidID id, private and public key
// material and a known state (next, active or retired), and no two keys
// share an id; at most one key is active. Failures wrap ErrInvalidArgument.
// Backends call it so that they all refuse the same sets.
func ValidateSigningKeys(keys []SigningKey) error {
	members := make([]setMember, len(keys))
	for i, k := range keys {
		members[i] = setMember{k.ID, len(k.PrivateKey) > 0 && len(k.PublicKey) > 0, k.State}
	}
	return validateSet("signing key", "private and public key material are required", members)
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
	members := make([]setMember, len(keys))
	for i, k := range keys {
		members[i] = setMember{k.ID, len(k.Secret) > 0, k.State}
	}
	return validateSet("refresh key", "a secret is required", members)
}

// setMember is what validateSet checks of a key.
type setMember struct {
	id          string
	hasMaterial bool
	state       KeyState
}

func validateSet(what, material string, keys []setMember) error {
	seen := make(map[string]bool, len(keys))
	active := 0
	for i, k := range keys {
		switch {
		case !ValidID(k.id):
			return fmt.Errorf("%s %d: id must be 1 to 512 bytes without NUL: %w", what, i, ErrInvalidArgument)
		case !k.hasMaterial:
			return fmt.Errorf("%s %s: %s: %w", what, k.id, material, ErrInvalidArgument)
		case k.state != KeyNext && k.state != KeyActive && k.state != KeyRetired:
			return fmt.Errorf("%s %s: unknown state %q: %w", what, k.id, k.state, ErrInvalidArgument)
		case seen[k.id]:
			return fmt.Errorf("%s %s: listed twice: %w", what, k.id, ErrInvalidArgument)
		}
		seen[k.id] = true
		if k.state == KeyActive {
			active++
		}
	}
	if active > 1 {
		return fmt.Errorf("%d active %ss, at most one may be active: %w", active, what, ErrInvalidArgument)
	}
	return nil
}

// ActivateCandidate returns the key KeyStore.InitSigningKey stores when no
// key is active: candidate, active, activated at its creation unless it
// says otherwise.
func ActivateCandidate(candidate SigningKey) SigningKey {
	candidate.State = KeyActive
	if candidate.ActivatedAt.IsZero() {
		candidate.ActivatedAt = candidate.CreatedAt
	}
	return candidate
}
