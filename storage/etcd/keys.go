package etcd

import (
	"context"
	"slices"

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
}

// setCodec names where a kind of key set lives and how its keys encode.
type setCodec[K any] struct {
	what     string         // for errors: "signing keys", "refresh keys"
	prefix   string         // key prefix of the set's members
	guardKey string         // the guard
	id       func(K) string // a member's id (its key after prefix)
	encode   func(K) ([]byte, error)
	decode   func([]byte) (K, error)
	validate func([]K) error
	clone    func([]K) []K // a copy that shares no bytes
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
	}
	return gs, nil
}

// writeSet replaces the stored set by next if the guard has not moved since
// gs was read; it reports whether it did.
func writeSet[K any](ctx context.Context, s *Store, c setCodec[K], gs guardedSet[K], next []K) (bool, error) {
	ops := []clientv3.Op{clientv3.OpPut(c.guardKey, "")} // every put moves its ModRevision
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

// update reads the set, calls fn with a copy, validates the result and
// writes it with a Txn guarded by the set's revision, retried (calling fn
// again) when another process changed the set first. So two processes
// rotating at once never leave two active keys: the second one's fn sees
// the first one's result.
func (c setCodec[K]) update(ctx context.Context, s *Store, fn func([]K) ([]K, error)) (out []K, err error) {
	if fn == nil {
		return nil, invalid("update "+c.what, "nil update function")
	}
	err = s.run(ctx, "update "+c.what, func(ctx context.Context) error {
		for range maxRetries {
			ks, err := readSet(ctx, s, c)
			if err != nil {
				return err
			}
			next, err := fn(c.clone(ks.keys))
			if err != nil {
				return err
			}
			if err := c.validate(next); err != nil {
				return err
			}
			ok, err := writeSet(ctx, s, c, ks, next)
			if ok || err != nil {
				out = c.clone(next)
				return err
			}
		}
		return errContention
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// list reads the set.
func (c setCodec[K]) list(ctx context.Context, s *Store) (keys []K, err error) {
	err = s.run(ctx, "list "+c.what, func(ctx context.Context) error {
		ks, err := readSet(ctx, s, c)
		keys = ks.keys
		return err
	})
	return keys, err
}

// signingKeys is the signing-key set's codec.
func (s *Store) signingKeys() setCodec[storage.SigningKey] {
	return setCodec[storage.SigningKey]{what: "signing keys", prefix: s.keyKey(""), guardKey: s.keysetKey(),
		id: func(k storage.SigningKey) string { return k.ID }, encode: record.EncodeKey, decode: record.DecodeKey,
		validate: storage.ValidateSigningKeys, clone: func(keys []storage.SigningKey) []storage.SigningKey {
			out := slices.Clone(keys)
			for i := range out {
				out[i].PrivateKey, out[i].PublicKey = slices.Clone(out[i].PrivateKey), slices.Clone(out[i].PublicKey)
			}
			return out
		}}
}

// refreshKeys is the refresh-secret set's codec.
func (s *Store) refreshKeys() setCodec[storage.RefreshKey] {
	return setCodec[storage.RefreshKey]{what: "refresh keys", prefix: s.refreshKeyKey(""), guardKey: s.refreshKeysetKey(),
		id: func(k storage.RefreshKey) string { return k.ID }, encode: record.EncodeRefreshKey, decode: record.DecodeRefreshKey,
		validate: storage.ValidateRefreshKeys, clone: func(keys []storage.RefreshKey) []storage.RefreshKey {
			out := slices.Clone(keys)
			for i := range out {
				out[i].Secret = slices.Clone(out[i].Secret)
			}
			return out
		}}
}

// ListSigningKeys implements storage.KeyStore.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	return s.signingKeys().list(ctx, s)
}

// InitSigningKey implements storage.KeyStore with a Txn guarded by the key
// set's revision: of concurrent callers on any number of processes, one
// stores its candidate and the others read it back.
func (s *Store) InitSigningKey(ctx context.Context, candidate storage.SigningKey) (out storage.SigningKey, err error) {
	if !storage.ValidID(candidate.ID) || len(candidate.PrivateKey) == 0 || len(candidate.PublicKey) == 0 {
		return storage.SigningKey{}, invalid("init signing key", "id and key material are required")
	}
	c := s.signingKeys()
	err = s.run(ctx, "init signing key", func(ctx context.Context) error {
		for range maxRetries {
			ks, err := readSet(ctx, s, c)
			if err != nil {
				return err
			}
			if i := slices.IndexFunc(ks.keys, func(k storage.SigningKey) bool { return k.State == storage.KeyActive }); i >= 0 {
				out = ks.keys[i]
				return nil
			}
			out = storage.ActivateCandidate(candidate)
			if ok, err := writeSet(ctx, s, c, ks, append(ks.keys, out)); ok || err != nil {
				return err
			}
		}
		return errContention
	})
	if err != nil {
		return storage.SigningKey{}, err
	}
	return out, nil
}

// UpdateSigningKeys implements storage.KeyAdmin (see setCodec.update).
func (s *Store) UpdateSigningKeys(ctx context.Context, fn func([]storage.SigningKey) ([]storage.SigningKey, error)) ([]storage.SigningKey, error) {
	return s.signingKeys().update(ctx, s, fn)
}

// ListRefreshKeys implements storage.RefreshKeyStore.
func (s *Store) ListRefreshKeys(ctx context.Context) ([]storage.RefreshKey, error) {
	return s.refreshKeys().list(ctx, s)
}

// UpdateRefreshKeys implements storage.RefreshKeyStore (see
// setCodec.update).
func (s *Store) UpdateRefreshKeys(ctx context.Context, fn func([]storage.RefreshKey) ([]storage.RefreshKey, error)) ([]storage.RefreshKey, error) {
	return s.refreshKeys().update(ctx, s, fn)
}
