package etcd

import (
	"context"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// guardedSet is a stored key set (signing keys or refresh-token secrets),
// each key's encoding, and the revision of the guard key it was read with
// (0 when no set was ever written). Every change to a set is one Txn that
// requires the guard to be where it was read and moves it.
type guardedSet[K any] struct {
	keys    []K
	encoded map[string]string
	guard   int64
	version int64
}

// setCodec names where a kind of key set lives and how its keys encode.
type setCodec[K any] struct {
	what     string         // for errors: "signing keys", "refresh keys"
	prefix   string         // key prefix of the set's members
	guardKey string         // the guard
	id       func(K) string // a member's id (its key after prefix)
	encode   func(K) ([]byte, error)
	decode   func([]byte) (K, error)
}

// readSet reads the set and its guard in one Txn (one revision).
func readSet[K any](ctx context.Context, s *Store, c setCodec[K]) (guardedSet[K], error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(c.prefix, clientv3.WithPrefix()),
		clientv3.OpGet(c.guardKey),
	).Commit()
	if err != nil {
		return guardedSet[K]{}, wrapErr(ctx, "read "+c.what, err)
	}
	gs := guardedSet[K]{encoded: map[string]string{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		k, err := c.decode(kv.Value)
		if err != nil {
			return guardedSet[K]{}, err
		}
		gs.keys = append(gs.keys, k)
		gs.encoded[c.id(k)] = string(kv.Value)
	}
	if g := resp.Responses[1].GetResponseRange().Kvs; len(g) == 1 {
		gs.guard = g[0].ModRevision
		gs.version, _ = strconv.ParseInt(string(g[0].Value), 10, 64)
	}
	return gs, nil
}

// writeSet replaces the stored set by next if the guard has not moved since
// gs was read; it reports whether it did.
func writeSet[K any](ctx context.Context, s *Store, c setCodec[K], gs guardedSet[K], next []K) (bool, error) {
	ops := []clientv3.Op{clientv3.OpPut(c.guardKey, strconv.FormatInt(gs.version+1, 10))}
	keep := map[string]bool{}
	for _, k := range next {
		id := c.id(k)
		keep[id] = true
		data, err := c.encode(k)
		if err != nil {
			return false, err
		}
		if gs.encoded[id] != string(data) {
			ops = append(ops, clientv3.OpPut(c.prefix+id, string(data)))
		}
	}
	for id := range gs.encoded {
		if !keep[id] {
			ops = append(ops, clientv3.OpDelete(c.prefix+id))
		}
	}
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(c.guardKey), "=", gs.guard)).Then(ops...).Commit()
	if err != nil {
		return false, wrapErr(ctx, "write "+c.what, err)
	}
	return resp.Succeeded, nil
}

// signingKeys is the signing-key set's codec.
func (s *Store) signingKeys() setCodec[storage.SigningKey] {
	return setCodec[storage.SigningKey]{what: "signing keys", prefix: s.keyKey(""), guardKey: s.keysetKey(),
		id: func(k storage.SigningKey) string { return k.ID }, encode: record.EncodeKey, decode: record.DecodeKey}
}

// readKeySet reads the signing keys and their guard.
func (s *Store) readKeySet(ctx context.Context) (guardedSet[storage.SigningKey], error) {
	return readSet(ctx, s, s.signingKeys())
}

// writeKeySet replaces the stored signing keys by next if the guard has
// not moved since ks was read.
func (s *Store) writeKeySet(ctx context.Context, ks guardedSet[storage.SigningKey], next []storage.SigningKey) (bool, error) {
	return writeSet(ctx, s, s.signingKeys(), ks, next)
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
