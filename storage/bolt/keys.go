package bolt

import (
	"context"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

func listKeys(tx *bbolt.Tx) ([]storage.SigningKey, error) {
	return listSet(tx.Bucket(bucketKeys), record.DecodeKey)
}

// listSet decodes every member of a key set's bucket.
func listSet[K any](b *bbolt.Bucket, decode func([]byte) (K, error)) ([]K, error) {
	var out []K
	err := b.ForEach(func(_, v []byte) error {
		k, err := decode(v)
		if err != nil {
			return err
		}
		out = append(out, k)
		return nil
	})
	return out, err
}

// ListSigningKeys implements storage.KeyStore.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	if err := ctxErr(ctx, "list signing keys"); err != nil {
		return nil, err
	}
	var keys []storage.SigningKey
	err := s.db.View(func(tx *bbolt.Tx) (err error) {
		keys, err = listKeys(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: list signing keys: %w", err)
	}
	return keys, nil
}

// InitSigningKey implements storage.KeyStore.
func (s *Store) InitSigningKey(ctx context.Context, candidate storage.SigningKey) (storage.SigningKey, error) {
	if err := ctxErr(ctx, "init signing key"); err != nil {
		return storage.SigningKey{}, err
	}
	if !storage.ValidID(candidate.ID) || len(candidate.PrivateKey) == 0 || len(candidate.PublicKey) == 0 {
		return storage.SigningKey{}, fmt.Errorf("bolt: init signing key: id and key material are required: %w", storage.ErrInvalidArgument)
	}
	var out storage.SigningKey
	err := s.db.Update(func(tx *bbolt.Tx) error {
		keys, err := listKeys(tx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.State == storage.KeyActive {
				out = k
				return nil
			}
		}
		out = candidate
		out.State = storage.KeyActive
		if out.ActivatedAt.IsZero() {
			out.ActivatedAt = out.CreatedAt
		}
		data, err := record.EncodeKey(out)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketKeys).Put([]byte(out.ID), data)
	})
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("bolt: init signing key: %w", err)
	}
	return out, nil
}

// UpdateSigningKeys implements storage.KeyAdmin. It runs fn once, inside one
// write transaction (bbolt serialises writers, so no retry is ever needed),
// validates what fn returns and replaces the stored set with it.
func (s *Store) UpdateSigningKeys(ctx context.Context, fn func([]storage.SigningKey) ([]storage.SigningKey, error)) ([]storage.SigningKey, error) {
	if err := ctxErr(ctx, "update signing keys"); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, fmt.Errorf("bolt: update signing keys: nil update function: %w", storage.ErrInvalidArgument)
	}
	var out []storage.SigningKey
	err := s.db.Update(func(tx *bbolt.Tx) error {
		cur, err := listKeys(tx)
		if err != nil {
			return err
		}
		// fn owns its argument and may reorder or overwrite it: note the
		// stored ids first.
		stored := make([]string, len(cur))
		for i, k := range cur {
			stored[i] = k.ID
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if err := storage.ValidateSigningKeys(next); err != nil {
			return err
		}
		err = replaceSet(tx.Bucket(bucketKeys), stored, next, func(k storage.SigningKey) string { return k.ID }, record.EncodeKey)
		if err != nil {
			return err
		}
		out = make([]storage.SigningKey, 0, len(next))
		for _, k := range next {
			// A copy: fn's slices stay fn's.
			k.PrivateKey, k.PublicKey = slices.Clone(k.PrivateKey), slices.Clone(k.PublicKey)
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: update signing keys: %w", err)
	}
	return out, nil
}

// replaceSet makes next the whole content of b, a key set whose stored ids
// are stored: every stored id next lacks is deleted, every member of next
// is put under its id.
func replaceSet[K any](b *bbolt.Bucket, stored []string, next []K, id func(K) string, encode func(K) ([]byte, error)) error {
	keep := make(map[string]bool, len(next))
	for _, k := range next {
		keep[id(k)] = true
	}
	for _, old := range stored {
		if !keep[old] {
			if err := b.Delete([]byte(old)); err != nil {
				return err
			}
		}
	}
	for _, k := range next {
		data, err := encode(k)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(id(k)), data); err != nil {
			return err
		}
	}
	return nil
}
