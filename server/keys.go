package server

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// ErrKeyEncryptionKeyRequired reports a database whose private keys are
// sealed when no key-encryption key was given.
var ErrKeyEncryptionKeyRequired = errors.New("the signing keys in the database are encrypted, but no key-encryption key was given")

// ErrKeyEncryptionKeyWrong reports sealed keys that do not open with the
// key-encryption key given (or that were damaged). It says nothing more.
var ErrKeyEncryptionKeyWrong = errors.New("the key-encryption key does not open the signing keys in the database (wrong key, or damaged data)")

// keyRing holds the signer of the active key and the published key set. It
// is swapped as a whole (atomic pointer), so that a rotation never shows a
// half-updated state to a concurrent request: a request signs with the old
// active key or the new one, and either verifies.
type keyRing struct {
	cur    atomic.Pointer[keyState]
	sealer *keyseal.Sealer // nil: private keys are stored as plain PKCS #8

	// onMiss, when set, reloads the ring from storage for a kid it does
	// not know (another replica may have just activated it) and reports
	// whether the ring changed.
	onMiss func(ctx context.Context) bool

	// stale is set while the stored key set does not load (a key sealed
	// under another key-encryption key, a damaged key): the ring still
	// holds the last set that loaded, so it may sign with a key the store
	// has retired, and publishes none of the new ones. Ready reports it.
	stale atomic.Bool
}

type keyState struct {
	signer    *tokens.Signer
	published *tokens.KeySet
	// keys are the stored keys the state was built from, without their
	// private parts; version identifies them (ids, states, times).
	keys    []storage.SigningKey
	version string
}

// ringVersion identifies a key set by what a ring depends on (line gives
// a key's id, state and times), so that a reload that finds nothing new
// keeps the current state: for signing keys, with it the verified-token
// cache, whose epoch is the state.
func ringVersion[K any](keys []K, line func(K) []any) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%v|%v|%v|%v|%v", line(k)...)
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}

// install replaces the ring's state with one built from keys, unless keys
// are what it already holds. On error the ring keeps its state and is
// marked stale.
func (r *keyRing) install(keys []storage.SigningKey) error {
	v := ringVersion(keys, func(k storage.SigningKey) []any {
		return []any{k.ID, k.State, k.CreatedAt.UnixNano(), k.ActivatedAt.UnixNano(), k.RetiredAt.UnixNano()}
	})
	if cur := r.cur.Load(); cur == nil || cur.version != v {
		st, err := buildKeyState(keys, r.sealer)
		if err != nil {
			r.stale.Store(true)
			return err
		}
		st.version = v
		r.cur.Store(st)
	}
	r.stale.Store(false)
	return nil
}

// newSigningKey generates a next P-256 key, its private part sealed when
// the ring has a sealer.
func (r *keyRing) newSigningKey(rand io.Reader, now time.Time) (storage.SigningKey, error) {
	priv, err := tokens.GenerateKey(rand)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	kid, err := tokens.Thumbprint(&priv.PublicKey)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("thumbprint: %w", err)
	}
	privDER, err := tokens.MarshalPrivateKey(priv)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("encode signing key: %w", err)
	}
	if r.sealer != nil {
		sealed, err := r.sealer.Seal(rand, kid, privDER)
		clear(privDER)
		if err != nil {
			return storage.SigningKey{}, fmt.Errorf("seal signing key: %w", err)
		}
		privDER = sealed
	}
	pubDER, err := tokens.MarshalPublicKey(&priv.PublicKey)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("encode public key: %w", err)
	}
	return storage.SigningKey{ID: kid, PrivateKey: privDER, PublicKey: pubDER, State: storage.KeyNext, CreatedAt: now}, nil
}

// buildKeyState orders the published keys active first, then next (oldest
// first), then retired (newest first), and builds the signer from the
// active one.
func buildKeyState(keys []storage.SigningKey, sealer *keyseal.Sealer) (*keyState, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, compareKeys)
	var signer *tokens.Signer
	pubs := make([]*ecdsa.PublicKey, 0, len(keys))
	public := make([]storage.SigningKey, 0, len(keys))
	for _, k := range keys {
		pub, err := tokens.ParsePublicKey(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
		}
		if k.State == storage.KeyActive {
			if signer != nil {
				return nil, errors.New("server: more than one active signing key")
			}
			if signer, err = newSigner(k, sealer); err != nil {
				return nil, err
			}
		}
		pubs = append(pubs, pub)
		k.PrivateKey = nil
		public = append(public, k)
	}
	if signer == nil {
		return nil, errors.New("server: no active signing key")
	}
	set, err := tokens.NewKeySet(pubs...)
	if err != nil {
		return nil, fmt.Errorf("server: key set: %w", err)
	}
	return &keyState{signer: signer, published: set, keys: public}, nil
}

// newSigner opens k's private key, unsealing it when it is sealed, and
// checks that it is the private half of the key's id.
func newSigner(k storage.SigningKey, sealer *keyseal.Sealer) (*tokens.Signer, error) {
	der, err := openSealed(sealer, k.ID, k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
	}
	if keyseal.IsSealed(k.PrivateKey) {
		defer clear(der) // the opened copy; the stored bytes stay as they are
	}
	priv, err := tokens.ParsePrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
	}
	signer, err := tokens.NewSigner(priv)
	if err != nil {
		return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
	}
	if signer.KeyID() != k.ID {
		return nil, fmt.Errorf("server: signing key %s: stored id is not its thumbprint", k.ID)
	}
	return signer, nil
}

// openSealed returns data, opened with sealer under aad when it is sealed:
// ErrKeyEncryptionKeyRequired without a sealer, ErrKeyEncryptionKeyWrong
// when it does not open.
func openSealed(sealer *keyseal.Sealer, aad string, data []byte) ([]byte, error) {
	if !keyseal.IsSealed(data) {
		return data, nil
	}
	if sealer == nil {
		return nil, ErrKeyEncryptionKeyRequired
	}
	plain, err := sealer.Open(aad, data)
	if errors.Is(err, keyseal.ErrAuthentication) {
		return nil, ErrKeyEncryptionKeyWrong
	}
	return plain, err
}

// keyRank orders states as the JWKS lists them.
var keyRank = map[storage.KeyState]int{storage.KeyActive: 0, storage.KeyNext: 1, storage.KeyRetired: 2}

// compareKeys orders keys active, next (oldest first), retired (most
// recently retired first), ties by id.
func compareKeys(a, b storage.SigningKey) int {
	byTime := a.CreatedAt.Compare(b.CreatedAt)
	if a.State == storage.KeyRetired {
		byTime = b.RetiredAt.Compare(a.RetiredAt)
	}
	return cmp.Or(cmp.Compare(keyRank[a.State], keyRank[b.State]), byTime, strings.Compare(a.ID, b.ID))
}

// PublicKey implements tokens.KeySource over the published keys. A kid the
// ring does not know triggers a (rate-limited) reload from storage, so that
// a replica verifies a token signed with a key another replica has just
// activated without waiting for its next scheduled reload.
func (r *keyRing) PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	k, err := r.cur.Load().published.PublicKey(ctx, kid)
	if err == nil || r.onMiss == nil || !errors.Is(err, tokens.ErrUnknownKey) {
		return k, err
	}
	if !r.onMiss(ctx) {
		return nil, err
	}
	return r.cur.Load().published.PublicKey(ctx, kid)
}

func (r *keyRing) signer() *tokens.Signer { return r.cur.Load().signer }

func (r *keyRing) jwks() tokens.JWKS { return r.cur.Load().published.JWKS() }

// missReloader rate-limits reloads caused by unknown kids to at most one
// per interval, so that tokens with made-up kids cannot turn into a flood
// of storage reads. Callers that are refused do not wait.
type missReloader struct {
	mu       sync.Mutex
	last     time.Time
	interval time.Duration
}

func (m *missReloader) allow(now time.Time) bool {
	if !m.mu.TryLock() {
		return false
	}
	defer m.mu.Unlock()
	if !m.last.IsZero() && now.Sub(m.last) < m.interval && now.Sub(m.last) >= 0 {
		return false
	}
	m.last = now
	return true
}
