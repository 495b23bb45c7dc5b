package bolt

import (
	"context"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// keySet is where a kind of key set (signing keys, refresh-token secrets)
// lives in the file and how its members are encoded, checked and copied.
type keySet[K any] struct {
	what     string // for errors: "signing keys", "refresh keys"
	bucket   []byte
	id       func(K) string
	encode   func(K) ([]byte, error)
	decode   func([]byte) (K, error)
	validate func([]K) error
	clone    func(K) K // a copy that shares no bytes
}

var (
	signingKeys = keySet[storage.SigningKey]{what: "signing keys", bucket: bucketKeys,
		id: func(k storage.SigningKey) string { return k.ID }, encode: record.EncodeKey, decode: record.DecodeKey,
		validate: storage.ValidateSigningKeys, clone: func(k storage.SigningKey) storage.SigningKey {
			k.PrivateKey, k.PublicKey = slices.Clone(k.PrivateKey), slices.Clone(k.PublicKey)
			return k
		}}
	refreshKeys = keySet[storage.RefreshKey]{what: "refresh keys", bucket: bucketRefreshKeys,
		id: func(k storage.RefreshKey) string { return k.ID }, encode: record.EncodeRefreshKey, decode: record.DecodeRefreshKey,
		validate: storage.ValidateRefreshKeys, clone: func(k storage.RefreshKey) storage.RefreshKey {
			k.Secret = slices.Clone(k.Secret)
			return k
		}}
)

// list decodes every member of the set (decoding copies out of tx).
func (ks keySet[K]) list(tx *bbolt.Tx) ([]K, error) {
	var out []K
	err := tx.Bucket(ks.bucket).ForEach(func(_, v []byte) error {
		k, err := ks.decode(v)
		out = append(out, k)
		return err
	})
	return out, err
}

// put stores k under its id.
func (ks keySet[K]) put(tx *bbolt.Tx, k K) error {
	data, err := ks.encode(k)
	if err != nil {
		return err
	}
	return tx.Bucket(ks.bucket).Put([]byte(ks.id(k)), data)
}

// read lists the set in a read transaction.
func (ks keySet[K]) read(ctx context.Context, s *Store) (keys []K, err error) {
	err = s.view(ctx, "list "+ks.what, func(tx *bbolt.Tx) error {
		keys, err = ks.list(tx)
		return err
	})
	return keys, err
}

// update runs fn once, inside one write transaction (bbolt serialises
// writers, so no retry is ever needed), validates what it returns and
// replaces the stored set with it: members fn drops are deleted. It
// returns a copy of the new set.
func (ks keySet[K]) update(ctx context.Context, s *Store, fn func([]K) ([]K, error)) ([]K, error) {
	op := "update " + ks.what
	if fn == nil {
		return nil, invalid(op, "nil update function")
	}
	var out []K
	err := s.update(ctx, op, func(tx *bbolt.Tx) error {
		cur, err := ks.list(tx)
		if err != nil {
			return err
		}
		drop := make(map[string]bool, len(cur))
		for _, k := range cur { // before fn, which owns cur and may change it
			drop[ks.id(k)] = true
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if err := ks.validate(next); err != nil {
			return err
		}
		out = make([]K, 0, len(next))
		for _, k := range next {
			delete(drop, ks.id(k))
			if err := ks.put(tx, k); err != nil {
				return err
			}
			out = append(out, ks.clone(k)) // fn's slices stay fn's
		}
		for id := range drop {
			if err := tx.Bucket(ks.bucket).Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListSigningKeys implements storage.KeyStore.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	return signingKeys.read(ctx, s)
}

// InitSigningKey implements storage.KeyStore.
func (s *Store) InitSigningKey(ctx context.Context, candidate storage.SigningKey) (storage.SigningKey, error) {
	if !storage.ValidID(candidate.ID) || len(candidate.PrivateKey) == 0 || len(candidate.PublicKey) == 0 {
		return storage.SigningKey{}, invalid("init signing key", "id and key material are required")
	}
	var out storage.SigningKey
	err := s.update(ctx, "init signing key", func(tx *bbolt.Tx) error {
		keys, err := signingKeys.list(tx)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(keys, func(k storage.SigningKey) bool { return k.State == storage.KeyActive }); i >= 0 {
			out = keys[i]
			return nil
		}
		out = storage.ActivateCandidate(candidate)
		return signingKeys.put(tx, out)
	})
	if err != nil {
		return storage.SigningKey{}, err
	}
	return out, nil
}

// UpdateSigningKeys implements storage.KeyAdmin.
func (s *Store) UpdateSigningKeys(ctx context.Context, fn func([]storage.SigningKey) ([]storage.SigningKey, error)) ([]storage.SigningKey, error) {
	return signingKeys.update(ctx, s, fn)
}

// ListRefreshKeys implements storage.RefreshKeyStore.
func (s *Store) ListRefreshKeys(ctx context.Context) ([]storage.RefreshKey, error) {
	return refreshKeys.read(ctx, s)
}

// UpdateRefreshKeys implements storage.RefreshKeyStore.
func (s *Store) UpdateRefreshKeys(ctx context.Context, fn func([]storage.RefreshKey) ([]storage.RefreshKey, error)) ([]storage.RefreshKey, error) {
	return refreshKeys.update(ctx, s, fn)
}
