package bolt

import (
	"context"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

func listRefreshKeys(tx *bbolt.Tx) ([]storage.RefreshKey, error) {
	return listSet(tx.Bucket(bucketRefreshKeys), record.DecodeRefreshKey)
}

// ListRefreshKeys implements storage.RefreshKeyStore.
func (s *Store) ListRefreshKeys(ctx context.Context) ([]storage.RefreshKey, error) {
	if err := ctxErr(ctx, "list refresh keys"); err != nil {
		return nil, err
	}
	var keys []storage.RefreshKey
	err := s.db.View(func(tx *bbolt.Tx) (err error) {
		keys, err = listRefreshKeys(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: list refresh keys: %w", err)
	}
	return keys, nil
}

// UpdateRefreshKeys implements storage.RefreshKeyStore. It runs fn once,
// inside one write transaction (bbolt serialises writers, so no retry is
// ever needed), validates what fn returns and replaces the stored set with
// it.
func (s *Store) UpdateRefreshKeys(ctx context.Context, fn func([]storage.RefreshKey) ([]storage.RefreshKey, error)) ([]storage.RefreshKey, error) {
	if err := ctxErr(ctx, "update refresh keys"); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, fmt.Errorf("bolt: update refresh keys: nil update function: %w", storage.ErrInvalidArgument)
	}
	var out []storage.RefreshKey
	err := s.db.Update(func(tx *bbolt.Tx) error {
		cur, err := listRefreshKeys(tx)
		if err != nil {
			return err
		}
		stored := make([]string, len(cur))
		for i, k := range cur {
			stored[i] = k.ID
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if err := storage.ValidateRefreshKeys(next); err != nil {
			return err
		}
		err = replaceSet(tx.Bucket(bucketRefreshKeys), stored, next, func(k storage.RefreshKey) string { return k.ID }, record.EncodeRefreshKey)
		if err != nil {
			return err
		}
		out = make([]storage.RefreshKey, 0, len(next))
		for _, k := range next {
			k.Secret = slices.Clone(k.Secret) // fn's slices stay fn's
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: update refresh keys: %w", err)
	}
	return out, nil
}
