package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// Signing-key life cycle (docs/key-rotation.md):
//
//	next ──(rotation due and published ≥ lead)──▶ active ──▶ retired ──(window over)──▶ removed
//
// Every decision is a pure function of the stored keys' timestamps and the
// clock (plan), applied in one storage.KeyAdmin.UpdateSigningKeys
// transaction that re-plans from what is stored. Replicas sharing one store
// therefore make the same decisions, and when two decide at once the second
// transaction finds the change already made and does nothing: two replicas
// never activate two keys, and never rotate twice for one due date.
//
// The timings, with R = Config.KeyRotation, L = Config.KeyPublishLead and
// I = Config.KeyReloadInterval (how long another replica may take to see a
// change in the store):
//
//   - a next key is always kept; it is published by every replica at most
//     I after its CreatedAt, so it counts as published for L at
//     CreatedAt + I + L (its ready time);
//   - the active key is replaced when it has been active for R and the next
//     key is ready: the next key becomes active (ActivatedAt = now), the
//     active one retired (RetiredAt = now), and a fresh next key is created;
//   - a retired key may still sign on a replica that has not yet reloaded
//     (up to I after RetiredAt), and its tokens live AccessTTL and are
//     accepted for Leeway beyond: it is removed once
//     RetiredAt + I + AccessTTL + Leeway has passed, and never before.

// KeyInfo is the public description of one signing key: never its private
// part.
type KeyInfo struct {
	// ID is the key's kid (RFC 7638 thumbprint).
	ID string
	// State is next, active or retired.
	State storage.KeyState
	// PublicJWK is the public key as published in the JWKS.
	PublicJWK tokens.JWK
	// CreatedAt, ActivatedAt and RetiredAt record transitions (zero when
	// not yet made).
	CreatedAt, ActivatedAt, RetiredAt time.Time
	// ActivatesAt is, for the next key, when the schedule will make it
	// active (zero when scheduled rotation is off); RemovedAt is, for a
	// retired key, the end of its window, after which it is removed and no
	// longer published. Zero otherwise.
	ActivatesAt, RemovedAt time.Time
}

// ErrKeyNotReady reports an on-demand rotation refused because the next key
// has not been published for the publication lead time yet. The error is a
// *KeyNotReadyError, which says when it will be.
var ErrKeyNotReady = errors.New("the next signing key has not been published long enough to sign")

// KeyNotReadyError is the error of RotateSigningKey(ctx, false) when the
// next key is not ready: verifiers that cached the key set before it was
// published could not verify its tokens yet. Retry at ReadyAt, or rotate
// with immediate true if the active key is compromised.
type KeyNotReadyError struct {
	// KeyID is the next key's kid.
	KeyID string
	// ReadyAt is the first moment it may be activated.
	ReadyAt time.Time
}

func (e *KeyNotReadyError) Error() string {
	return fmt.Sprintf("%v: key %s may be activated from %s", ErrKeyNotReady, e.KeyID, e.ReadyAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrKeyNotReady) true.
func (e *KeyNotReadyError) Is(target error) bool { return target == ErrKeyNotReady }

// MaxRetiredKeys bounds the retired keys published at once. The schedule
// never comes near it (one retired key at a time); a burst of on-demand or
// immediate rotations that would pass it is refused with a
// *TooManyRetiredKeysError, so that the JWKS stays small enough for every
// verifier to accept it.
const MaxRetiredKeys = 16

// ErrTooManyRetiredKeys reports a rotation refused because MaxRetiredKeys
// retired keys are still published. The error is a
// *TooManyRetiredKeysError, which says when the oldest goes.
var ErrTooManyRetiredKeys = errors.New("too many retired signing keys are still published")

// TooManyRetiredKeysError is the error of RotateSigningKey when
// MaxRetiredKeys retired keys are still inside their windows.
type TooManyRetiredKeysError struct {
	// RetryAt is when the first of them is removed.
	RetryAt time.Time
}

func (e *TooManyRetiredKeysError) Error() string {
	return fmt.Sprintf("%v (%d); the first is removed after %s", ErrTooManyRetiredKeys, MaxRetiredKeys, e.RetryAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrTooManyRetiredKeys) true.
func (e *TooManyRetiredKeysError) Is(target error) bool { return target == ErrTooManyRetiredKeys }

// keyPolicy is the life cycle's timing, from Config.
type keyPolicy struct {
	rotation time.Duration // 0: no scheduled rotation
	lead     time.Duration
	reload   time.Duration
	window   time.Duration // retired window: reload + access ttl + leeway
	// refreshWindow is a retired refresh-token key's window: reload + the
	// longer of the refresh max age and the device-proof lifetime.
	refreshWindow time.Duration
}

func newKeyPolicy(c Config) keyPolicy {
	return keyPolicy{rotation: max(c.KeyRotation, 0), lead: c.KeyPublishLead, reload: c.KeyReloadInterval,
		window: c.KeyReloadInterval + c.AccessTTL + c.Leeway, refreshWindow: c.KeyReloadInterval + max(c.RefreshMaxAge, c.DeviceProofTTL)}
}

// readyAt is when a next key has been published everywhere for the lead.
func (p keyPolicy) readyAt(next storage.SigningKey) time.Time {
	return next.CreatedAt.Add(p.reload + p.lead)
}

// removeAt is the end of a retired key's window; it is removed after it.
func (p keyPolicy) removeAt(retired storage.SigningKey) time.Time {
	return retired.RetiredAt.Add(p.window)
}

// activatesAt is when the schedule will activate next (zero: never, because
// scheduled rotation is off).
func (p keyPolicy) activatesAt(active, next storage.SigningKey) time.Time {
	if p.rotation == 0 {
		return time.Time{}
	}
	due := active.ActivatedAt.Add(p.rotation)
	if ready := p.readyAt(next); ready.After(due) {
		return ready
	}
	return due
}

// keyAction is what a plan is asked to do beyond the schedule.
type keyAction int

const (
	actSchedule  keyAction = iota // only what is due
	actRotate                     // also activate the next key now, if ready
	actImmediate                  // also activate a brand-new key now
)

// keyEvent is one transition, logged (with the kid only) once committed.
type keyEvent struct {
	name string // key_created, key_activated, key_retired, key_removed
	kid  string
}

// planResult is a plan's outcome.
type planResult struct {
	keys    []storage.SigningKey
	events  []keyEvent
	refused error // an on-demand rotation could not be made: *KeyNotReadyError or *TooManyRetiredKeysError
}

// plan decides the key set that should be stored at now, from the stored
// keys alone. newKey supplies fresh keys (state and times are set here).
func (p keyPolicy) plan(stored []storage.SigningKey, now time.Time, act keyAction, newKey func() (storage.SigningKey, error)) (planResult, error) {
	var res planResult
	keys := slices.Clone(stored)
	// addNext adds a fresh next key and returns its index.
	addNext := func() (int, error) {
		k, err := newKey()
		if err != nil {
			return 0, err
		}
		k.State, k.CreatedAt, k.ActivatedAt, k.RetiredAt = storage.KeyNext, now, time.Time{}, time.Time{}
		res.events = append(res.events, keyEvent{"key_created", k.ID})
		keys = append(keys, k)
		return len(keys) - 1, nil
	}
	// remove removes the keys drop names.
	remove := func(drop func(storage.SigningKey) bool) {
		keys = slices.DeleteFunc(keys, func(k storage.SigningKey) bool {
			if !drop(k) {
				return false
			}
			res.events = append(res.events, keyEvent{"key_removed", k.ID})
			return true
		})
	}
	slices.SortFunc(keys, compareKeys)
	// Retired keys past their window go.
	remove(func(k storage.SigningKey) bool { return k.State == storage.KeyRetired && now.After(p.removeAt(k)) })
	active, next := -1, -1 // indexes; next is the oldest next key
	for i, k := range keys {
		switch {
		case k.State == storage.KeyActive && active >= 0:
			return planResult{}, errors.New("more than one active signing key is stored")
		case k.State == storage.KeyActive:
			active = i
		case k.State == storage.KeyNext && next < 0:
			next = i
		}
	}
	retire := func() {
		if active >= 0 {
			keys[active].State, keys[active].RetiredAt = storage.KeyRetired, now
			res.events = append(res.events, keyEvent{"key_retired", keys[active].ID})
			active = -1
		}
	}
	activate := func(i int) {
		keys[i].State, keys[i].ActivatedAt = storage.KeyActive, now
		res.events = append(res.events, keyEvent{"key_activated", keys[i].ID})
	}

	var firstRemoval time.Time
	retired := 0
	for _, k := range keys {
		if k.State == storage.KeyRetired {
			retired++
			if at := p.removeAt(k); firstRemoval.IsZero() || at.Before(firstRemoval) {
				firstRemoval = at
			}
		}
	}

	switch {
	case act != actSchedule && active >= 0 && retired >= MaxRetiredKeys:
		res.refused = &TooManyRetiredKeysError{RetryAt: firstRemoval}
	case act == actImmediate:
		// The active key may be compromised, and with it (same store) the
		// next one, which has never signed: drop it, and sign with a key
		// nobody has seen.
		retire()
		remove(func(k storage.SigningKey) bool { return k.State == storage.KeyNext })
		i, err := addNext()
		if err != nil {
			return planResult{}, err
		}
		activate(i)
	case active < 0 && next >= 0:
		// No key signs (a store damaged by hand, or a first start that
		// died half-way): the best available is the published next key.
		activate(next)
	case active < 0:
		i, err := addNext()
		if err != nil {
			return planResult{}, err
		}
		activate(i)
	case next < 0:
		// Nothing to activate: a next key is created below, and an
		// on-demand rotation must wait for it.
	case !now.Before(p.readyAt(keys[next])) &&
		(act == actRotate || (p.rotation > 0 && !now.Before(keys[active].ActivatedAt.Add(p.rotation)))):
		retire()
		activate(next)
	case act == actRotate:
		res.refused = &KeyNotReadyError{KeyID: keys[next].ID, ReadyAt: p.readyAt(keys[next])}
	}

	if !slices.ContainsFunc(keys, func(k storage.SigningKey) bool { return k.State == storage.KeyNext }) {
		i, err := addNext()
		if err != nil {
			return planResult{}, err
		}
		if act == actRotate && res.refused == nil && next < 0 {
			res.refused = &KeyNotReadyError{KeyID: keys[i].ID, ReadyAt: p.readyAt(keys[i])}
		}
	}
	res.keys = keys
	return res, nil
}

// errNoChange aborts an update transaction that would write nothing new.
var errNoChange = errors.New("no change")

// keySetUpdate is a backend's read-modify-write of one key set
// (storage.KeyAdmin.UpdateSigningKeys, storage.RefreshKeyStore.UpdateRefreshKeys).
type keySetUpdate[K any] func(context.Context, func([]K) ([]K, error)) ([]K, error)

// updateKeySet runs plan on the stored set in one update transaction and
// returns the set stored after it and the transitions plan made. A plan
// that makes none writes nothing. A backend that runs plan again (another
// replica changed the set first) gets a fresh plan of the new set, and the
// last run's transitions are the ones made.
func updateKeySet[K any](ctx context.Context, update keySetUpdate[K], plan func([]K) ([]K, []keyEvent, error)) ([]K, []keyEvent, error) {
	var events []keyEvent
	var unchanged []K
	keys, err := update(ctx, func(cur []K) ([]K, error) {
		next, evs, err := plan(cur)
		events, unchanged = evs, cur
		if err == nil && len(evs) == 0 {
			err = errNoChange
		}
		return next, err
	})
	if errors.Is(err, errNoChange) {
		return unchanged, nil, nil
	}
	return keys, events, err
}

// sealStored seals, in one update transaction, every key of a set that is
// stored in clear, and returns how many it sealed. part is a key's secret
// part and the id its seal is bound to.
func sealStored[K any](ctx context.Context, update keySetUpdate[K], sealer *keyseal.Sealer, rand io.Reader, part func(*K) (*[]byte, string)) (int, error) {
	sealed := 0
	_, err := update(ctx, func(cur []K) ([]K, error) {
		sealed = 0
		for i := range cur {
			secret, aad := part(&cur[i])
			if keyseal.IsSealed(*secret) {
				continue
			}
			b, err := sealer.Seal(rand, aad, *secret)
			if err != nil {
				return nil, err
			}
			*secret = b
			sealed++
		}
		if sealed == 0 {
			return nil, errNoChange
		}
		return cur, nil
	})
	if errors.Is(err, errNoChange) {
		return 0, nil
	}
	return sealed, err
}

// rotationKind is the metrics label of a rotation made for each action.
var rotationKind = map[keyAction]string{actSchedule: RotationScheduled, actRotate: RotationManual, actImmediate: RotationImmediate}

// applyKeys runs one life-cycle step in one UpdateSigningKeys transaction
// and installs the stored result in the key ring. It returns the stored
// keys and, for on-demand rotations, why one was refused.
func (s *Server) applyKeys(ctx context.Context, act keyAction) ([]storage.SigningKey, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	now := s.now()
	var refused error
	keys, events, err := updateKeySet(ctx, s.store.UpdateSigningKeys, func(cur []storage.SigningKey) ([]storage.SigningKey, []keyEvent, error) {
		res, err := s.keyPolicy.plan(cur, now, act, func() (storage.SigningKey, error) {
			return s.keys.newSigningKey(s.rand, now)
		})
		refused = res.refused
		return res.keys, res.events, err
	})
	if err != nil {
		return nil, fmt.Errorf("update signing keys: %w", err)
	}
	rotated := false
	for _, ev := range events {
		s.log.LogAttrs(ctx, slog.LevelInfo, "signing key "+strings.TrimPrefix(ev.name, "key_"),
			slog.String("event", ev.name), slog.String("kid", ev.kid))
		if ev.name == "key_retired" { // an active key replaced: one rotation
			rotated = true
			s.metrics.KeyRotated(rotationKind[act])
		}
	}
	if err := s.keys.install(keys); err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	// The refresh-token key rotates with the signing key.
	if err := s.applyRefreshKeys(ctx, rotated); err != nil {
		return nil, err
	}
	return keys, refused
}

// SyncSigningKeys runs one step of the key manager: it applies every
// transition that is due (activation, retirement, removal, a missing next
// key) in one storage transaction, and reloads the server's key ring from
// storage, so that this replica publishes and signs with what the store
// says. RunKeyManager calls it every Config.KeyReloadInterval.
func (s *Server) SyncSigningKeys(ctx context.Context) error {
	_, err := s.applyKeys(ctx, actSchedule)
	if err != nil {
		return fmt.Errorf("server: sync signing keys: %w", err)
	}
	return nil
}

// RunKeyManager runs the signing-key life cycle until ctx ends: every
// Config.KeyReloadInterval it calls SyncSigningKeys, logging failures (event
// key_sync_failed) and retrying at the next tick. Each replica sharing a
// store runs one; their decisions agree because they are made from the
// stored timestamps, in transactions.
func (s *Server) RunKeyManager(ctx context.Context) {
	t := time.NewTicker(s.cfg.KeyReloadInterval)
	defer t.Stop()
	for {
		if err := s.SyncSigningKeys(ctx); err != nil && ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelError, "signing-key sync failed; retrying",
				slog.String("event", "key_sync_failed"), slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RotateSigningKey rotates the signing key now and returns the key set
// after the change.
//
// With immediate false it is the scheduled rotation brought forward: the
// published next key becomes active and the active key retired, provided
// the next key has been published for the publication lead time (so every
// verifier has it). Otherwise nothing is activated and the error is a
// *KeyNotReadyError (errors.Is ErrKeyNotReady; FAILED_PRECONDITION through
// the status mapper) saying when the next key will be ready; if there was
// no next key, one is created and published first.
//
// With immediate true (for a compromised key) a brand-new key signs at
// once, the active key is retired and the unused next key is deleted, and
// a fresh next key is published. Verifiers that cached the old set see an
// unknown kid and refetch (the interceptors do, at most once per their
// minimum refetch interval); sidecars that never refetch on an unknown kid
// reject the new key's tokens until their next refresh. The retired key
// stays published for its window so that tokens it signed stay valid.
//
// Either kind is refused with a *TooManyRetiredKeysError (errors.Is
// ErrTooManyRetiredKeys; FAILED_PRECONDITION) while MaxRetiredKeys retired
// keys are still published.
func (s *Server) RotateSigningKey(ctx context.Context, immediate bool) ([]KeyInfo, error) {
	act := actRotate
	if immediate {
		act = actImmediate
	}
	keys, err := s.applyKeys(ctx, act)
	if errors.Is(err, ErrKeyNotReady) || errors.Is(err, ErrTooManyRetiredKeys) {
		return nil, err // as it is: *KeyNotReadyError or *TooManyRetiredKeysError
	}
	if err != nil {
		return nil, fmt.Errorf("server: rotate signing key: %w", err)
	}
	return s.keyInfos(keys)
}

// ListSigningKeys returns every stored key's public description, as
// stored now: active first, then next, then retired.
func (s *Server) ListSigningKeys(ctx context.Context) ([]KeyInfo, error) {
	keys, err := s.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: list signing keys: %w", err)
	}
	return s.keyInfos(keys)
}

func (s *Server) keyInfos(keys []storage.SigningKey) ([]KeyInfo, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, compareKeys) // the active key first, then the oldest next key
	out := make([]KeyInfo, len(keys))
	for i, k := range keys {
		pub, err := tokens.ParsePublicKey(k.PublicKey)
		var jwk tokens.JWK
		if err == nil {
			jwk, err = tokens.NewJWK(pub)
		}
		if err != nil {
			return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
		}
		out[i] = KeyInfo{ID: k.ID, State: k.State, PublicJWK: jwk, CreatedAt: k.CreatedAt, ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt}
		switch {
		case k.State == storage.KeyNext && i == 1 && keys[0].State == storage.KeyActive:
			out[i].ActivatesAt = s.keyPolicy.activatesAt(keys[0], k)
		case k.State == storage.KeyRetired:
			out[i].RemovedAt = s.keyPolicy.removeAt(k)
		}
	}
	return out, nil
}

// reloadOnMiss reloads a ring from storage for an id it does not know
// (another replica may have just activated it): list reads the stored set
// and install loads it. It runs at most once per limit's interval (so that
// made-up ids cannot turn into a flood of storage reads) and never while
// the key manager is busy. It logs a failure and reports whether the
// reload ran and loaded.
func reloadOnMiss[K any](ctx context.Context, s *Server, limit *missReloader, list func(context.Context) ([]K, error), install func([]K) error) bool {
	if !limit.allow(s.now()) || !s.keyMu.TryLock() {
		return false
	}
	defer s.keyMu.Unlock()
	keys, err := list(ctx)
	if err == nil {
		err = install(keys)
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "key reload failed", slog.String("event", "key_sync_failed"), slog.String("error", err.Error()))
		return false
	}
	return true
}

// initKeys runs at start: it refuses sealed keys without a key-encryption
// key or with the wrong one, seals plaintext keys when a key-encryption key
// is given for the first time, makes sure an active and a next key exist,
// and loads the key ring.
func (s *Server) initKeys(ctx context.Context) error {
	keys, err := s.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("server: list signing keys: %w", err)
	}
	// Every stored private key is opened and checked against its id now, so
	// that a wrong key-encryption key or a damaged key is found at start.
	for _, k := range keys {
		if _, err := newSigner(k, s.keys.sealer); err != nil {
			return err // "server: signing key <kid>: ..."
		}
	}
	if s.keys.sealer == nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "private signing keys are stored unencrypted; give a key-encryption key to seal them",
			slog.String("event", "key_encryption_disabled"))
	} else if n, err := sealStored(ctx, s.store.UpdateSigningKeys, s.keys.sealer, s.rand, func(k *storage.SigningKey) (*[]byte, string) {
		return &k.PrivateKey, k.ID
	}); err != nil {
		return fmt.Errorf("server: seal signing keys: %w", err)
	} else if n > 0 {
		s.log.LogAttrs(ctx, slog.LevelWarn, "sealed the stored private signing keys with the key-encryption key; copies made before (backups, free pages of the database file) still hold them in clear: rotate the signing key if they may have leaked",
			slog.String("event", "key_encryption_migrated"), slog.Int("keys", n))
	}
	if err := s.initRefreshKeys(ctx); err != nil {
		return err
	}
	if _, err := s.applyKeys(ctx, actSchedule); err != nil {
		return fmt.Errorf("server: signing keys: %w", err)
	}
	return nil
}
