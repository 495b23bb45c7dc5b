package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// Refresh-token MAC secrets (storage.RefreshKey) follow the signing keys'
// life cycle, in their own storage transaction:
//
//	next ──(the signing key rotates)──▶ active ──▶ retired ──(window over)──▶ removed
//
// The active secret mints every new refresh token; every secret still
// stored verifies the tokens it minted. A next secret is always kept, so
// that every replica knows it (it reloads the set every
// Config.KeyReloadInterval) well before it mints. Whenever the signing key
// rotates (on schedule, or through RotateSigningKey), the next secret
// becomes active and the active one retired. A retired secret's tokens
// belong to sessions created or rotated before it retired, which live at
// most Config.RefreshMaxAge, and the device proofs it MAC'd (see
// tokens.NewDeviceProof) live at most Config.DeviceProofTTL: it is removed
// once RetiredAt + KeyReloadInterval + the longer of the two has passed,
// and never before. A replica that meets a token of a secret it does not
// know reloads the set (at most once a second) before it calls the token
// unknown.
//
// Secrets are sealed with the key-encryption key when one is given, like
// private signing keys, and are never logged or served.

// refreshAAD binds a sealed refresh secret to its id, apart from signing
// keys sealed under the same key-encryption key.
func refreshAAD(id string) string { return "refresh-key:" + id }

// refreshRing holds the refresh secrets this replica knows, opened, and the
// one that mints. It is swapped as a whole.
type refreshRing struct {
	cur    atomic.Pointer[refreshState]
	sealer *keyseal.Sealer // nil: secrets are stored in clear

	// stale is set while the stored set does not load (a secret sealed
	// under another key-encryption key, a damaged one): the ring keeps the
	// last set that loaded, and tokens of the new secrets read as unknown.
	// Ready reports it.
	stale atomic.Bool
}

type refreshState struct {
	active  tokens.RefreshKey
	byID    map[string][]byte
	version string
}

// install replaces the ring's state with one built from keys, unless keys
// are what it already holds (ids, states, times: a secret sealed anew by
// another replica changes nothing). On error the ring keeps its state and
// is marked stale.
func (r *refreshRing) install(keys []storage.RefreshKey) error {
	v := ringVersion(keys, func(k storage.RefreshKey) []any {
		return []any{k.ID, k.State, k.CreatedAt.UnixNano(), k.ActivatedAt.UnixNano(), k.RetiredAt.UnixNano()}
	})
	if cur := r.cur.Load(); cur != nil && cur.version == v {
		r.stale.Store(false)
		return nil
	}
	st := &refreshState{byID: make(map[string][]byte, len(keys)), version: v}
	for _, k := range keys {
		secret, err := openRefreshSecret(k, r.sealer)
		if err != nil {
			r.stale.Store(true)
			return err
		}
		st.byID[k.ID] = secret
		if k.State == storage.KeyActive {
			st.active = tokens.RefreshKey{ID: k.ID, Secret: secret}
		}
	}
	if st.active.ID == "" {
		r.stale.Store(true)
		return errors.New("server: no active refresh-token key")
	}
	r.cur.Store(st)
	r.stale.Store(false)
	return nil
}

// lookup is the secret lookup tokens.ParseRefreshToken takes.
func (r *refreshRing) lookup(id string) ([]byte, bool) {
	secret, ok := r.cur.Load().byID[id]
	return secret, ok
}

// minting returns the secret new refresh tokens are minted with.
func (r *refreshRing) minting() tokens.RefreshKey { return r.cur.Load().active }

// newRefreshKey generates a next secret, sealed when the ring has a sealer.
func (r *refreshRing) newRefreshKey(rand io.Reader, now time.Time) (storage.RefreshKey, error) {
	k, err := tokens.NewRefreshKey(rand)
	if err != nil {
		return storage.RefreshKey{}, fmt.Errorf("generate refresh-token key: %w", err)
	}
	secret := k.Secret
	if r.sealer != nil {
		if secret, err = r.sealer.Seal(rand, refreshAAD(k.ID), k.Secret); err != nil {
			return storage.RefreshKey{}, fmt.Errorf("seal refresh-token key: %w", err)
		}
	}
	return storage.RefreshKey{ID: k.ID, Secret: secret, State: storage.KeyNext, CreatedAt: now}, nil
}

// openRefreshSecret returns k's secret, unsealing it when it is sealed.
func openRefreshSecret(k storage.RefreshKey, sealer *keyseal.Sealer) ([]byte, error) {
	secret, err := openSealed(sealer, refreshAAD(k.ID), k.Secret)
	if err != nil {
		return nil, fmt.Errorf("server: refresh-token key %s: %w", k.ID, err)
	}
	if !tokens.ValidRefreshKeyID(k.ID) || len(secret) != tokens.RefreshSecretBytes {
		return nil, fmt.Errorf("server: refresh-token key %s: not a %d-byte secret with a valid id", k.ID, tokens.RefreshSecretBytes)
	}
	return secret, nil
}

// planRefreshKeys decides the refresh-key set that should be stored at now,
// from the stored keys alone; rotate asks for the next key to take over.
// newKey supplies fresh keys (state and times are set here).
func (p keyPolicy) planRefreshKeys(stored []storage.RefreshKey, now time.Time, rotate bool, newKey func() (storage.RefreshKey, error)) ([]storage.RefreshKey, []keyEvent, error) {
	var events []keyEvent
	keys := slices.Clone(stored)
	slices.SortFunc(keys, func(a, b storage.RefreshKey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	keys = slices.DeleteFunc(keys, func(k storage.RefreshKey) bool {
		if k.State == storage.KeyRetired && now.After(k.RetiredAt.Add(p.refreshWindow)) {
			events = append(events, keyEvent{"refresh_key_removed", k.ID})
			return true
		}
		return false
	})
	active, next := -1, -1
	for i, k := range keys {
		switch {
		case k.State == storage.KeyActive && active >= 0:
			return nil, nil, errors.New("more than one active refresh-token key is stored")
		case k.State == storage.KeyActive:
			active = i
		case k.State == storage.KeyNext && next < 0:
			next = i
		}
	}
	addNext := func() error {
		k, err := newKey()
		if err != nil {
			return err
		}
		k.State, k.CreatedAt, k.ActivatedAt, k.RetiredAt = storage.KeyNext, now, time.Time{}, time.Time{}
		events = append(events, keyEvent{"refresh_key_created", k.ID})
		keys = append(keys, k)
		return nil
	}
	if active >= 0 && rotate {
		keys[active].State, keys[active].RetiredAt = storage.KeyRetired, now
		events = append(events, keyEvent{"refresh_key_retired", keys[active].ID})
		active = -1
	}
	if active < 0 {
		if next < 0 {
			if err := addNext(); err != nil {
				return nil, nil, err
			}
			next = len(keys) - 1
		}
		keys[next].State, keys[next].ActivatedAt = storage.KeyActive, now
		events = append(events, keyEvent{"refresh_key_activated", keys[next].ID})
	}
	if !slices.ContainsFunc(keys, func(k storage.RefreshKey) bool { return k.State == storage.KeyNext }) {
		if err := addNext(); err != nil {
			return nil, nil, err
		}
	}
	return keys, events, nil
}

// applyRefreshKeys runs one life-cycle step of the refresh-token keys in
// one UpdateRefreshKeys transaction and installs the stored result in the
// ring. The caller holds keyMu.
func (s *Server) applyRefreshKeys(ctx context.Context, rotate bool) error {
	now := s.now()
	keys, events, err := updateKeySet(ctx, s.store.UpdateRefreshKeys, func(cur []storage.RefreshKey) ([]storage.RefreshKey, []keyEvent, error) {
		return s.keyPolicy.planRefreshKeys(cur, now, rotate, func() (storage.RefreshKey, error) {
			return s.refreshKeys.newRefreshKey(s.rand, now)
		})
	})
	if err != nil {
		return fmt.Errorf("update refresh-token keys: %w", err)
	}
	for _, ev := range events {
		s.log.LogAttrs(ctx, slog.LevelInfo, "refresh-token key "+strings.TrimPrefix(ev.name, "refresh_key_"),
			slog.String("event", ev.name), slog.String("refresh_key_id", ev.kid))
	}
	if err := s.refreshKeys.install(keys); err != nil {
		return fmt.Errorf("load refresh-token keys: %w", err)
	}
	return nil
}

// initRefreshKeys runs at start, before the first applyRefreshKeys: it
// refuses sealed secrets without a key-encryption key or with the wrong
// one, and seals the secrets stored in clear when a key-encryption key is
// given.
func (s *Server) initRefreshKeys(ctx context.Context) error {
	keys, err := s.store.ListRefreshKeys(ctx)
	if err != nil {
		return fmt.Errorf("server: list refresh-token keys: %w", err)
	}
	for _, k := range keys {
		if _, err := openRefreshSecret(k, s.refreshKeys.sealer); err != nil {
			return err
		}
	}
	if s.refreshKeys.sealer == nil {
		return nil
	}
	n, err := sealStored(ctx, s.store.UpdateRefreshKeys, s.refreshKeys.sealer, s.rand, func(k *storage.RefreshKey) (*[]byte, string) {
		return &k.Secret, refreshAAD(k.ID)
	})
	if err != nil {
		return fmt.Errorf("server: seal refresh-token keys: %w", err)
	}
	if n > 0 {
		s.log.LogAttrs(ctx, slog.LevelWarn, "sealed the stored refresh-token keys with the key-encryption key",
			slog.String("event", "refresh_key_encryption_migrated"), slog.Int("keys", n))
	}
	return nil
}

// parseRefresh decodes a presented refresh token and verifies its MAC,
// reloading the secrets once if it names one this replica does not know.
// A token of the last generation (which no successor could follow) is
// malformed.
func (s *Server) parseRefresh(ctx context.Context, tok string) (tokens.RefreshToken, error) {
	p, err := tokens.ParseRefreshToken(tok, s.refreshKeys.lookup)
	if errors.Is(err, tokens.ErrUnknownRefreshKey) && reloadOnMiss(ctx, s, &s.refreshMiss, s.store.ListRefreshKeys, s.refreshKeys.install) {
		p, err = tokens.ParseRefreshToken(tok, s.refreshKeys.lookup)
	}
	if err == nil && p.Generation == math.MaxUint64 {
		return tokens.RefreshToken{}, tokens.ErrMalformedRefreshToken
	}
	return p, err
}

// isCurrent reports whether the token p is sess's current refresh token.
func isCurrent(sess storage.Session, p tokens.RefreshToken) bool {
	return subtle.ConstantTimeCompare(sess.CurrentHash[:], p.Digest[:]) == 1
}

// refreshParseFailure is the logged reason a presented refresh token was
// not accepted before any storage read.
func refreshParseFailure(err error) string {
	switch {
	case errors.Is(err, tokens.ErrRefreshTokenForged):
		return "bad_mac"
	case errors.Is(err, tokens.ErrUnknownRefreshKey):
		return "unknown_key"
	default:
		return "malformed"
	}
}
