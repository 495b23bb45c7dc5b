package etcd

import (
	"context"
	"fmt"
	"slices"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// refreshKeys is the refresh-secret set's codec.
func (s *Store) refreshKeys() setCodec[storage.RefreshKey] {
	return setCodec[storage.RefreshKey]{what: "refresh keys", prefix: s.refreshKeyKey(""), guardKey: s.refreshKeysetKey(),
		id: func(k storage.RefreshKey) string { return k.ID }, encode: record.EncodeRefreshKey, decode: record.DecodeRefreshKey}
}

// ListRefreshKeys implements storage.RefreshKeyStore.
func (s *Store) ListRefreshKeys(ctx context.Context) ([]storage.RefreshKey, error) {
	ctx, cancel, err := s.begin(ctx, "list refresh keys")
	if err != nil {
		return nil, err
	}
	defer cancel()
	ks, err := readSet(ctx, s, s.refreshKeys())
	if err != nil {
		return nil, fmt.Errorf("etcd: list refresh keys: %w", err)
	}
	return ks.keys, nil
}

// UpdateRefreshKeys implements storage.RefreshKeyStore: read, fn, and a Txn
// guarded by the set's revision, retried (calling fn again) when another
// process changed the set first.
func (s *Store) UpdateRefreshKeys(ctx context.Context, fn func([]storage.RefreshKey) ([]storage.RefreshKey, error)) ([]storage.RefreshKey, error) {
	ctx, cancel, err := s.begin(ctx, "update refresh keys")
	if err != nil {
		return nil, err
	}
	defer cancel()
	if fn == nil {
		return nil, fmt.Errorf("etcd: update refresh keys: nil update function: %w", storage.ErrInvalidArgument)
	}
	for range maxRetries {
		ks, err := readSet(ctx, s, s.refreshKeys())
		if err != nil {
			return nil, fmt.Errorf("etcd: update refresh keys: %w", err)
		}
		next, err := fn(cloneRefreshKeys(ks.keys))
		if err != nil {
			return nil, fmt.Errorf("etcd: update refresh keys: %w", err)
		}
		if err := storage.ValidateRefreshKeys(next); err != nil {
			return nil, fmt.Errorf("etcd: update refresh keys: %w", err)
		}
		ok, err := writeSet(ctx, s, s.refreshKeys(), ks, next)
		if err != nil {
			return nil, fmt.Errorf("etcd: update refresh keys: %w", err)
		}
		if ok {
			return cloneRefreshKeys(next), nil
		}
	}
	return nil, fmt.Errorf("etcd: update refresh keys: %w", errContention)
}

func cloneRefreshKeys(keys []storage.RefreshKey) []storage.RefreshKey {
	out := make([]storage.RefreshKey, len(keys))
	for i, k := range keys {
		k.Secret = slices.Clone(k.Secret)
		out[i] = k
	}
	return out
}
