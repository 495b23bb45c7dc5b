package storagetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

func refreshKeyIDs(t *testing.T, s storage.Store) map[string]storage.RefreshKey {
	t.Helper()
	return byID(t, s.ListRefreshKeys, func(k storage.RefreshKey) string { return k.ID })
}

// testRefreshKeys: UpdateRefreshKeys replaces the whole set in one
// transaction, refuses invalid sets and writes nothing when fn fails.
func testRefreshKeys(t *testing.T, s storage.Store) {
	c := ctx(t)
	if got := refreshKeyIDs(t, s); len(got) != 0 {
		t.Fatalf("new store holds refresh keys %v", got)
	}
	a := storage.RefreshKey{ID: "AAAAAAAAAAA", Secret: bytes.Repeat([]byte{1}, 32), State: storage.KeyActive,
		CreatedAt: base, ActivatedAt: base}
	b := storage.RefreshKey{ID: "BBBBBBBBBBA", Secret: bytes.Repeat([]byte{2}, 32), State: storage.KeyNext, CreatedAt: base}
	stored, err := s.UpdateRefreshKeys(c, func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
		return append(cur, a, b), nil
	})
	if err != nil || len(stored) != 2 {
		t.Fatalf("UpdateRefreshKeys(add two) = %v, %v", stored, err)
	}
	got := refreshKeyIDs(t, s)
	if k := got[a.ID]; !bytes.Equal(k.Secret, a.Secret) || k.State != a.State || !k.CreatedAt.Equal(a.CreatedAt) || !k.ActivatedAt.Equal(a.ActivatedAt) {
		t.Fatalf("stored key %+v; want %+v", k, a)
	}
	// Rotate: b becomes active, a retired; then drop a.
	now := base.Add(time.Hour)
	_, err = s.UpdateRefreshKeys(c, func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
		for i := range cur {
			switch cur[i].ID {
			case a.ID:
				cur[i].State, cur[i].RetiredAt = storage.KeyRetired, now
			case b.ID:
				cur[i].State, cur[i].ActivatedAt = storage.KeyActive, now
			}
		}
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := refreshKeyIDs(t, s); got[a.ID].State != storage.KeyRetired || !got[a.ID].RetiredAt.Equal(now) || got[b.ID].State != storage.KeyActive {
		t.Fatalf("after rotation: %+v", got)
	}
	_, err = s.UpdateRefreshKeys(c, func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
		return slices.DeleteFunc(cur, func(k storage.RefreshKey) bool { return k.ID == a.ID }), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := refreshKeyIDs(t, s); len(got) != 1 || got[b.ID].ID == "" {
		t.Fatalf("after removal: %+v; want only %s", got, b.ID)
	}
	// Refusals change nothing.
	boom := errors.New("boom")
	for name, fn := range map[string]func([]storage.RefreshKey) ([]storage.RefreshKey, error){
		"fn error":   func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) { return nil, boom },
		"two active": func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) { return append(cur, a), nil },
		"no secret": func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
			return []storage.RefreshKey{{ID: "x", State: storage.KeyNext}}, nil
		},
		"no id": func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
			return []storage.RefreshKey{{Secret: a.Secret, State: storage.KeyNext}}, nil
		},
		"unknown state": func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
			return []storage.RefreshKey{{ID: "x", Secret: a.Secret, State: "old"}}, nil
		},
		"listed twice": func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
			k := b
			k.State = storage.KeyNext
			return append(cur, k), nil
		},
	} {
		_, err := s.UpdateRefreshKeys(c, fn)
		if name == "fn error" {
			wantErr(t, name, err, boom)
		} else {
			wantErr(t, name, err, storage.ErrInvalidArgument)
		}
		if got := refreshKeyIDs(t, s); len(got) != 1 || got[b.ID].State != storage.KeyActive {
			t.Fatalf("refused update (%s) changed the set: %+v", name, got)
		}
	}
}
