package storagetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// testKey is a signing key with recognisable fake material: storage treats
// key material as opaque bytes.
func testKey(id string, state storage.KeyState, created time.Time) storage.SigningKey {
	return storage.SigningKey{ID: id, PrivateKey: []byte("priv-" + id), PublicKey: []byte("pub-" + id), State: state, CreatedAt: created}
}

// keysByID lists the store's signing keys, indexed by id.
func keysByID(t *testing.T, s storage.Store) map[string]storage.SigningKey {
	t.Helper()
	return byID(t, s.ListSigningKeys, func(k storage.SigningKey) string { return k.ID })
}

// byID calls list and indexes what it returns by id; an id listed twice
// fails the test.
func byID[K any](t *testing.T, list func(context.Context) ([]K, error), id func(K) string) map[string]K {
	t.Helper()
	keys, err := list(ctx(t))
	if err != nil {
		t.Fatalf("listing keys: %v", err)
	}
	out := make(map[string]K, len(keys))
	for _, k := range keys {
		if _, dup := out[id(k)]; dup {
			t.Fatalf("key %s listed twice", id(k))
		}
		out[id(k)] = k
	}
	return out
}

// wantKeyStates fails unless the stored keys are exactly want (id → state).
func wantKeyStates(t *testing.T, s storage.Store, want map[string]storage.KeyState) map[string]storage.SigningKey {
	t.Helper()
	got := keysByID(t, s)
	states := make(map[string]storage.KeyState, len(got))
	for id, k := range got {
		states[id] = k.State
	}
	if !maps.Equal(states, want) {
		t.Fatalf("stored keys = %v, want %v", states, want)
	}
	return got
}

// update calls UpdateSigningKeys and fails the test on error.
func update(t *testing.T, s storage.Store, fn func([]storage.SigningKey) ([]storage.SigningKey, error)) []storage.SigningKey {
	t.Helper()
	out, err := s.UpdateSigningKeys(ctx(t), fn)
	if err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
	return out
}

// testUpdateSigningKeys walks one key through next → active → retired →
// removed, one UpdateSigningKeys call per transition.
func testUpdateSigningKeys(t *testing.T, s storage.Store) {
	c := ctx(t)
	if _, err := s.InitSigningKey(c, testKey("k1", storage.KeyActive, base)); err != nil {
		t.Fatalf("InitSigningKey: %v", err)
	}

	// Add a next key; the function sees the current set.
	var seen []string
	out := update(t, s, func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
		for _, k := range keys {
			seen = append(seen, k.ID+"="+string(k.State))
		}
		return append(keys, testKey("k2", storage.KeyNext, base.Add(time.Hour))), nil
	})
	if !slices.Equal(seen, []string{"k1=active"}) {
		t.Fatalf("fn saw %v, want [k1=active]", seen)
	}
	if len(out) != 2 {
		t.Fatalf("UpdateSigningKeys returned %d keys, want 2", len(out))
	}
	got := wantKeyStates(t, s, map[string]storage.KeyState{"k1": storage.KeyActive, "k2": storage.KeyNext})
	if k := got["k2"]; string(k.PrivateKey) != "priv-k2" || string(k.PublicKey) != "pub-k2" || !k.CreatedAt.Equal(base.Add(time.Hour)) {
		t.Fatalf("stored next key = %+v", k)
	}

	// Activate the next key and retire the active one in one call.
	activated, retired := base.Add(2*time.Hour), base.Add(2*time.Hour+time.Second)
	out = update(t, s, func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
		for i := range keys {
			switch keys[i].ID {
			case "k1":
				keys[i].State, keys[i].RetiredAt = storage.KeyRetired, retired
			case "k2":
				keys[i].State, keys[i].ActivatedAt = storage.KeyActive, activated
			}
		}
		return keys, nil
	})
	got = wantKeyStates(t, s, map[string]storage.KeyState{"k1": storage.KeyRetired, "k2": storage.KeyActive})
	if !got["k1"].RetiredAt.Equal(retired) || !got["k2"].ActivatedAt.Equal(activated) || !got["k1"].ActivatedAt.Equal(base) {
		t.Fatalf("transition times not kept: k1=%+v k2=%+v", got["k1"], got["k2"])
	}
	// The returned set is what was stored, and a copy: changing it changes
	// nothing stored.
	for i := range out {
		if out[i].ID == "k2" && out[i].State != storage.KeyActive {
			t.Fatalf("returned k2 state %s, want active", out[i].State)
		}
		out[i].PrivateKey[0] ^= 0xff
		out[i].State = storage.KeyRetired
	}
	got = wantKeyStates(t, s, map[string]storage.KeyState{"k1": storage.KeyRetired, "k2": storage.KeyActive})
	if string(got["k2"].PrivateKey) != "priv-k2" {
		t.Fatal("changing the returned key changed the stored key")
	}

	// Remove the retired key by leaving it out.
	out = update(t, s, func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
		return slices.DeleteFunc(keys, func(k storage.SigningKey) bool { return k.State == storage.KeyRetired }), nil
	})
	if len(out) != 1 || out[0].ID != "k2" {
		t.Fatalf("UpdateSigningKeys after removal returned %+v, want [k2]", out)
	}
	wantKeyStates(t, s, map[string]storage.KeyState{"k2": storage.KeyActive})

	// InitSigningKey still sees the key activated by UpdateSigningKeys.
	if k, err := s.InitSigningKey(c, testKey("k9", storage.KeyActive, base)); err != nil || k.ID != "k2" {
		t.Fatalf("InitSigningKey after update = %s, %v; want k2", k.ID, err)
	}

	// An empty set is a valid (if unusual) result.
	update(t, s, func([]storage.SigningKey) ([]storage.SigningKey, error) { return nil, nil })
	wantKeyStates(t, s, map[string]storage.KeyState{})
}

// testUpdateSigningKeysRefusals proves that invalid results and failing
// functions write nothing.
func testUpdateSigningKeysRefusals(t *testing.T, s storage.Store) {
	c := ctx(t)
	if _, err := s.InitSigningKey(c, testKey("k1", storage.KeyActive, base)); err != nil {
		t.Fatalf("InitSigningKey: %v", err)
	}
	update(t, s, func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
		return append(keys, testKey("k2", storage.KeyNext, base)), nil
	})
	before := map[string]storage.KeyState{"k1": storage.KeyActive, "k2": storage.KeyNext}

	without := func(k storage.SigningKey, f func(*storage.SigningKey)) storage.SigningKey { f(&k); return k }
	cases := []struct {
		name  string
		extra []storage.SigningKey // appended to the current set
		edit  func([]storage.SigningKey)
	}{
		{name: "two active keys", edit: func(keys []storage.SigningKey) {
			for i := range keys {
				keys[i].State = storage.KeyActive
			}
		}},
		{name: "second active added", extra: []storage.SigningKey{testKey("k3", storage.KeyActive, base)}},
		{name: "duplicate id", extra: []storage.SigningKey{testKey("k2", storage.KeyRetired, base)}},
		{name: "empty id", extra: []storage.SigningKey{without(testKey("x", storage.KeyNext, base), func(k *storage.SigningKey) { k.ID = "" })}},
		{name: "NUL in id", extra: []storage.SigningKey{testKey("a\x00b", storage.KeyNext, base)}},
		{name: "no private key", extra: []storage.SigningKey{without(testKey("k3", storage.KeyNext, base), func(k *storage.SigningKey) { k.PrivateKey = nil })}},
		{name: "no public key", extra: []storage.SigningKey{without(testKey("k3", storage.KeyNext, base), func(k *storage.SigningKey) { k.PublicKey = []byte{} })}},
		{name: "unknown state", extra: []storage.SigningKey{testKey("k3", "pending", base)}},
		{name: "empty state", extra: []storage.SigningKey{testKey("k3", "", base)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.UpdateSigningKeys(c, func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
				// Retire k2 too, so that a partial write would show.
				for i := range keys {
					if keys[i].ID == "k2" {
						keys[i].State = storage.KeyRetired
					}
				}
				if tc.edit != nil {
					tc.edit(keys)
				}
				return append(keys, tc.extra...), nil
			})
			wantErr(t, "UpdateSigningKeys with "+tc.name, err, storage.ErrInvalidArgument)
			wantKeyStates(t, s, before)
		})
	}

	t.Run("fn error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := s.UpdateSigningKeys(c, func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
			keys[0].State = storage.KeyRetired // changes to the argument must not leak into storage
			return nil, fmt.Errorf("deciding: %w", boom)
		})
		wantErr(t, "UpdateSigningKeys with failing fn", err, boom)
		got := wantKeyStates(t, s, before)
		if string(got["k1"].PrivateKey) != "priv-k1" {
			t.Fatal("failed update changed key material")
		}
	})

	t.Run("nil fn", func(t *testing.T) {
		_, err := s.UpdateSigningKeys(c, nil)
		wantErr(t, "UpdateSigningKeys with nil fn", err, storage.ErrInvalidArgument)
		wantKeyStates(t, s, before)
	})

	t.Run("cancelled context", func(t *testing.T) {
		cc, cancel := context.WithCancel(c)
		cancel()
		called := false
		_, err := s.UpdateSigningKeys(cc, func([]storage.SigningKey) ([]storage.SigningKey, error) {
			called = true
			return nil, nil
		})
		wantErr(t, "UpdateSigningKeys with cancelled ctx", err, context.Canceled)
		if called {
			t.Error("fn was called with a cancelled context")
		}
		wantKeyStates(t, s, before)
	})
}

// testConcurrentKeyUpdates runs 8 goroutines that each rotate the key set
// several times (retire the active key, activate a new one) and proves the
// updates are serialised: exactly one key is active at the end and no
// update was lost (every rotation left one retired key behind).
func testConcurrentKeyUpdates(t *testing.T, s storage.Store) {
	c := ctx(t)
	if _, err := s.InitSigningKey(c, testKey("k0", storage.KeyActive, base)); err != nil {
		t.Fatalf("InitSigningKey: %v", err)
	}
	const workers, rounds = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				id := fmt.Sprintf("w%d-r%d", w, r)
				_, err := s.UpdateSigningKeys(c, func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
					active := 0
					for i := range keys {
						if keys[i].State == storage.KeyActive {
							active++
							keys[i].State, keys[i].RetiredAt = storage.KeyRetired, base
						}
					}
					if active != 1 {
						return nil, fmt.Errorf("fn saw %d active keys, want 1", active)
					}
					return append(keys, testKey(id, storage.KeyActive, base)), nil
				})
				if err != nil {
					errs <- fmt.Errorf("update %s: %w", id, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	keys := keysByID(t, s)
	if len(keys) != 1+workers*rounds {
		t.Fatalf("%d keys stored, want %d: concurrent updates were lost", len(keys), 1+workers*rounds)
	}
	active := 0
	for _, k := range keys {
		switch k.State {
		case storage.KeyActive:
			active++
		case storage.KeyRetired:
		default:
			t.Errorf("key %s in state %s", k.ID, k.State)
		}
	}
	if active != 1 {
		t.Fatalf("%d active keys after concurrent updates, want 1", active)
	}
}
