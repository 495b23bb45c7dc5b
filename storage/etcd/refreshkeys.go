package etcd

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// refreshKeySet is the stored refresh-key set, each key's encoding, and the
// revision of its guard key (meta/refreshkeyset) it was read with (0 when
// no set was ever written).
type refreshKeySet struct {
	keys    []storage.RefreshKey
	encoded map[string]string
	guard   int64
	version int64
}

// readRefreshKeySet reads the keys and the guard in one Txn (one revision).
func (s *Store) readRefreshKeySet(ctx context.Context) (refreshKeySet, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.refreshKeyKey(""), clientv3.WithPrefix()),
		clientv3.OpGet(s.refreshKeysetKey()),
	).Commit()
	if err != nil {
		return refreshKeySet{}, wrapErr(ctx, "read refresh keys", err)
	}
	ks := refreshKeySet{encoded: map[string]string{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		k, err := record.DecodeRefreshKey(kv.Value)
		if err != nil {
			return refreshKeySet{}, err
		}
		ks.keys = append(ks.keys, k)
		ks.encoded[k.ID] = string(kv.Value)
	}
	if g := resp.Responses[1].GetResponseRange().Kvs; len(g) == 1 {
		ks.guard = g[0].ModRevision
		ks.version, _ = strconv.ParseInt(string(g[0].Value), 10, 64)
	}
	return ks, nil
}

// writeRefreshKeySet replaces the stored set by next if the guard has not
// moved since ks was read; it reports whether it did.
func (s *Store) writeRefreshKeySet(ctx context.Context, ks refreshKeySet, next []storage.RefreshKey) (bool, error) {
	ops := []clientv3.Op{clientv3.OpPut(s.refreshKeysetKey(), strconv.FormatInt(ks.version+1, 10))}
	keep := map[string]bool{}
	for _, k := range next {
		keep[k.ID] = true
		data, err := record.EncodeRefreshKey(k)
		if err != nil {
			return false, err
		}
		if ks.encoded[k.ID] != string(data) {
			ops = append(ops, clientv3.OpPut(s.refreshKeyKey(k.ID), string(data)))
		}
	}
	for id := range ks.encoded {
		if !keep[id] {
			ops = append(ops, clientv3.OpDelete(s.refreshKeyKey(id)))
		}
	}
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.refreshKeysetKey()), "=", ks.guard)).Then(ops...).Commit()
	if err != nil {
		return false, wrapErr(ctx, "write refresh keys", err)
	}
	return resp.Succeeded, nil
}

// ListRefreshKeys implements storage.RefreshKeyStore.
func (s *Store) ListRefreshKeys(ctx context.Context) ([]storage.RefreshKey, error) {
	ctx, cancel, err := s.begin(ctx, "list refresh keys")
	if err != nil {
		return nil, err
	}
	defer cancel()
	ks, err := s.readRefreshKeySet(ctx)
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
		ks, err := s.readRefreshKeySet(ctx)
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
		ok, err := s.writeRefreshKeySet(ctx, ks, next)
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
