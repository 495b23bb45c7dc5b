package etcd_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
)

// Beyond the conformance suite: what only a networked backend can get wrong
// (more sessions than one etcd Txn holds, concurrent key-set changes through
// independent clients).

func TestUserAndSessionAdmin(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv)
	c := ctxT(t)
	for _, id := range []string{"u3", "u1", "u2", "u4"} {
		if err := s.CreateUser(c, storage.User{ID: id, Email: id + "@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for after := ""; ; {
		page, err := s.ListUsers(c, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page {
			ids = append(ids, u.ID)
		}
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(ids, []string{"u1", "u2", "u3", "u4"}) {
		t.Fatalf("ListUsers pages = %v", ids)
	}
	if _, err := s.ListUsers(c, "", 0); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("ListUsers limit 0 = %v", err)
	}

	// u1: 60 live sessions (more than one Txn holds), one revoked, one expired.
	now := base.Add(time.Hour)
	for i := range 60 {
		newSession(t, s, fmt.Sprintf("live-%02d", i), "u1", base.Add(time.Duration(i)*time.Second))
	}
	newSession(t, s, "revoked", "u1", base)
	if _, _, err := s.RevokeSession(c, "revoked", storage.ReasonRevoked, base); err != nil {
		t.Fatal(err)
	}
	newSession(t, s, "expired", "u1", base.Add(-40*24*time.Hour))
	newSession(t, s, "other", "u2", base)

	all, err := s.ListUserSessions(c, "u1")
	if err != nil || len(all) != 62 {
		t.Fatalf("ListUserSessions = %d sessions, %v; want 62", len(all), err)
	}
	if all[0].ID != "live-59" || all[len(all)-1].ID != "expired" {
		t.Fatalf("ListUserSessions not newest first: first %s, last %s", all[0].ID, all[len(all)-1].ID)
	}
	if got, err := s.ListUserSessions(c, "nobody"); err != nil || len(got) != 0 {
		t.Fatalf("ListUserSessions(unknown) = %v, %v", got, err)
	}
	if n, err := s.CountLiveSessions(c, now); err != nil || n != 61 {
		t.Fatalf("CountLiveSessions = %d, %v; want 61", n, err)
	}

	revoked, err := s.RevokeUserSessions(c, "u1", storage.ReasonAdmin, now)
	if err != nil || len(revoked) != 60 {
		t.Fatalf("RevokeUserSessions = %d, %v; want the 60 live ones", len(revoked), err)
	}
	for _, r := range revoked {
		if !r.Revoked() || r.RevokeReason != storage.ReasonAdmin {
			t.Fatalf("returned session %s not revoked: %+v", r.ID, r)
		}
	}
	if got, _ := s.GetSession(c, "revoked"); got.RevokeReason != storage.ReasonRevoked {
		t.Fatalf("already revoked session changed reason: %+v", got)
	}
	if n, _ := s.CountLiveSessions(c, now); n != 1 {
		t.Fatalf("CountLiveSessions after revoking u1 = %d, want 1 (u2's)", n)
	}
	if again, err := s.RevokeUserSessions(c, "u1", storage.ReasonAdmin, now); err != nil || len(again) != 0 {
		t.Fatalf("second RevokeUserSessions = %d, %v; want none", len(again), err)
	}

	// DeleteUser revokes u2's live session and frees the email.
	gone, err := s.DeleteUser(c, "u2", now)
	if err != nil || len(gone) != 1 || gone[0].ID != "other" || gone[0].RevokeReason != storage.ReasonUserChanged {
		t.Fatalf("DeleteUser = %+v, %v", gone, err)
	}
	if _, err := s.GetUser(c, "u2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted user still there: %v", err)
	}
	if err := s.CreateUser(c, storage.User{ID: "u9", Email: "u2@example.com"}); err != nil {
		t.Fatalf("email of a deleted user not freed: %v", err)
	}
	if revoked, _ := s.AccessTokenRevoked(c, "j", "other", now); !revoked {
		t.Fatal("deleted user's session still live")
	}
	if _, err := s.DeleteUser(c, "u2", now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteUser twice = %v", err)
	}
}

// TestUpdateSigningKeysAcrossClients: three processes each try to activate
// their own key at once; the guard makes each fn see the previous result,
// so the set never holds two active keys and every activation is kept.
func TestUpdateSigningKeysAcrossClients(t *testing.T) {
	srv := etcdtest.Start(t)
	peers := openPeers(t, srv, 3)
	key := func(id string, st storage.KeyState) storage.SigningKey {
		return storage.SigningKey{ID: id, PrivateKey: []byte("priv-" + id), PublicKey: []byte("pub-" + id), State: st, CreatedAt: base}
	}
	if _, err := peers[0].InitSigningKey(ctxT(t), key("k0", storage.KeyNext)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			_, err := p.UpdateSigningKeys(ctxT(t), func(keys []storage.SigningKey) ([]storage.SigningKey, error) {
				for j := range keys {
					if keys[j].State == storage.KeyActive {
						keys[j].State = storage.KeyRetired
					}
				}
				return append(keys, key(fmt.Sprintf("k%d", i+1), storage.KeyActive)), nil
			})
			if err != nil {
				t.Errorf("peer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	keys, err := peers[1].ListSigningKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, k := range keys {
		if k.State == storage.KeyActive {
			active++
		}
	}
	if len(keys) != 4 || active != 1 {
		t.Fatalf("after 3 concurrent rotations: %d keys, %d active; want 4 keys, 1 active: %+v", len(keys), active, keys)
	}

	refuse := func(name string, fn func([]storage.SigningKey) ([]storage.SigningKey, error)) {
		t.Helper()
		if _, err := peers[2].UpdateSigningKeys(ctxT(t), fn); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Fatalf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	refuse("two active", func(k []storage.SigningKey) ([]storage.SigningKey, error) {
		return append(k, key("k9", storage.KeyActive)), nil
	})
	refuse("same id twice", func(k []storage.SigningKey) ([]storage.SigningKey, error) {
		return append(k, key("k0", storage.KeyNext)), nil
	})
	refuse("no material", func(k []storage.SigningKey) ([]storage.SigningKey, error) {
		return append(k, storage.SigningKey{ID: "bare"}), nil
	})
	boom := errors.New("boom")
	if _, err := peers[2].UpdateSigningKeys(ctxT(t), func([]storage.SigningKey) ([]storage.SigningKey, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error = %v", err)
	}
	// Dropping keys deletes them.
	got, err := peers[2].UpdateSigningKeys(ctxT(t), func(k []storage.SigningKey) ([]storage.SigningKey, error) {
		return slices.DeleteFunc(k, func(k storage.SigningKey) bool { return k.State != storage.KeyActive }), nil
	})
	if err != nil || len(got) != 1 {
		t.Fatalf("drop retired = %v, %v", got, err)
	}
	if keys, _ := peers[0].ListSigningKeys(ctxT(t)); len(keys) != 1 || keys[0].ID != got[0].ID {
		t.Fatalf("after drop, stored = %+v", keys)
	}
}
