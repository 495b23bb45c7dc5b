package etcd

import (
	"context"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// keySet is the stored key set, each key's encoding, and the revision of
// the guard key it was read with (0 when no set was ever written).
type keySet struct {
	keys    []storage.SigningKey
	encoded map[string]string
	guard   int64
	version int64
}

// readKeySet reads the keys and the guard in one Txn (one revision).
func (s *Store) readKeySet(ctx context.Context) (keySet, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.p+"keys/", clientv3.WithPrefix()),
		clientv3.OpGet(s.keysetKey()),
	).Commit()
	if err != nil {
		return keySet{}, wrapErr(ctx, "read signing keys", err)
	}
	ks := keySet{encoded: map[string]string{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		k, err := record.DecodeKey(kv.Value)
		if err != nil {
			return keySet{}, err
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

// writeKeySet replaces the stored set by next if the guard has not moved
// since ks was read; it reports whether it did.
func (s *Store) writeKeySet(ctx context.Context, ks keySet, next []storage.SigningKey) (bool, error) {
	ops := []clientv3.Op{clientv3.OpPut(s.keysetKey(), strconv.FormatInt(ks.version+1, 10))}
	keep := map[string]bool{}
	for _, k := range next {
		keep[k.ID] = true
		data, err := record.EncodeKey(k)
		if err != nil {
			return false, err
		}
		if ks.encoded[k.ID] != string(data) {
			ops = append(ops, clientv3.OpPut(s.keyKey(k.ID), string(data)))
		}
	}
	for id := range ks.encoded {
		if !keep[id] {
			ops = append(ops, clientv3.OpDelete(s.keyKey(id)))
		}
	}
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.keysetKey()), "=", ks.guard)).Then(ops...).Commit()
	if err != nil {
		return false, wrapErr(ctx, "write signing keys", err)
	}
	return resp.Succeeded, nil
}

// ListSigningKeys implements storage.KeyStore.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	ctx, cancel, err := s.begin(ctx, "list signing keys")
	if err != nil {
		return nil, err
	}
	defer cancel()
	ks, err := s.readKeySet(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd: list signing keys: %w", err)
	}
	return ks.keys, nil
}

// InitSigningKey implements storage.KeyStore with a Txn guarded by the key
// set's revision: of concurrent callers on any number of processes, one
// stores its candidate and the others read it back.
func (s *Store) InitSigningKey(ctx context.Context, candidate storage.SigningKey) (storage.SigningKey, error) {
	ctx, cancel, err := s.begin(ctx, "init signing key")
	if err != nil {
		return storage.SigningKey{}, err
	}
	defer cancel()
	if !storage.ValidID(candidate.ID) || len(candidate.PrivateKey) == 0 || len(candidate.PublicKey) == 0 {
		return storage.SigningKey{}, fmt.Errorf("etcd: init signing key: id and key material are required: %w", storage.ErrInvalidArgument)
	}
	for range maxRetries {
		ks, err := s.readKeySet(ctx)
		if err != nil {
			return storage.SigningKey{}, fmt.Errorf("etcd: init signing key: %w", err)
		}
		for _, k := range ks.keys {
			if k.State == storage.KeyActive {
				return k, nil
			}
		}
		out := candidate
		out.State = storage.KeyActive
		if out.ActivatedAt.IsZero() {
			out.ActivatedAt = out.CreatedAt
		}
		ok, err := s.writeKeySet(ctx, ks, append(ks.keys, out))
		if err != nil {
			return storage.SigningKey{}, fmt.Errorf("etcd: init signing key: %w", err)
		}
		if ok {
			return out, nil
		}
	}
	return storage.SigningKey{}, fmt.Errorf("etcd: init signing key: %w", errContention)
}

// UpdateSigningKeys implements storage.KeyAdmin: read, fn, and a Txn
// guarded by the key set's revision, retried (calling fn again) when another
// process changed the set first. So two processes rotating at once never
// leave two active keys: the second one's fn sees the first one's result.
func (s *Store) UpdateSigningKeys(ctx context.Context, fn func([]storage.SigningKey) ([]storage.SigningKey, error)) ([]storage.SigningKey, error) {
	ctx, cancel, err := s.begin(ctx, "update signing keys")
	if err != nil {
		return nil, err
	}
	defer cancel()
	if fn == nil {
		return nil, fmt.Errorf("etcd: update signing keys: nil update function: %w", storage.ErrInvalidArgument)
	}
	for range maxRetries {
		ks, err := s.readKeySet(ctx)
		if err != nil {
			return nil, fmt.Errorf("etcd: update signing keys: %w", err)
		}
		next, err := fn(cloneKeys(ks.keys))
		if err != nil {
			return nil, fmt.Errorf("etcd: update signing keys: %w", err)
		}
		if err := storage.ValidateSigningKeys(next); err != nil {
			return nil, fmt.Errorf("etcd: update signing keys: %w", err)
		}
		ok, err := s.writeKeySet(ctx, ks, next)
		if err != nil {
			return nil, fmt.Errorf("etcd: update signing keys: %w", err)
		}
		if ok {
			return cloneKeys(next), nil
		}
	}
	return nil, fmt.Errorf("etcd: update signing keys: %w", errContention)
}

func cloneKeys(keys []storage.SigningKey) []storage.SigningKey {
	out := make([]storage.SigningKey, len(keys))
	for i, k := range keys {
		k.PrivateKey = append([]byte(nil), k.PrivateKey...)
		k.PublicKey = append([]byte(nil), k.PublicKey...)
		out[i] = k
	}
	return out
}
