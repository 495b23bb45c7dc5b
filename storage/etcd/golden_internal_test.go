package etcd

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/internal/record"
	"github.com/latchauth/latch/storage/storagetest"
)

// TestKeysHoldSharedRecords: every key that holds a record (session,
// session summary, user, signing key, refresh key) holds exactly the
// encoding of storage/internal/record, the one storage/bolt writes too,
// and reads back as the value written.
func TestKeysHoldSharedRecords(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{Endpoints: []string{srv.Endpoint}, Prefix: "/golden/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := storagetest.StoreGolden(ctx, s); err != nil {
		t.Fatal(err)
	}
	sess, user, key, rk := storagetest.GoldenSession(), storagetest.GoldenUser(), storagetest.GoldenKey(), storagetest.GoldenRefreshKey()
	for _, c := range []struct {
		key  string
		want func() ([]byte, error)
	}{
		{s.sessionKey(sess.ID), func() ([]byte, error) { return record.EncodeSession(sess) }},
		{s.sessStateKey(sess.ID), func() ([]byte, error) { return record.EncodeState(sess) }},
		{s.userKey(user.ID), func() ([]byte, error) { return record.EncodeUser(user) }},
		{s.keyKey(key.ID), func() ([]byte, error) { return record.EncodeKey(key) }},
		{s.refreshKeyKey(rk.ID), func() ([]byte, error) { return record.EncodeRefreshKey(rk) }},
	} {
		want, err := c.want()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.cli.Get(ctx, c.key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 {
			t.Errorf("%s: %d values, want 1", c.key, len(resp.Kvs))
			continue
		}
		if got := resp.Kvs[0].Value; len(got) == 0 || got[0] != record.Version || !bytes.Equal(got, want) {
			t.Errorf("%s stored as %x; want the version-%d record %x", c.key, got, record.Version, want)
		}
	}
	if got, err := s.GetSession(ctx, sess.ID); err != nil || got != sess {
		t.Errorf("GetSession = %+v, %v; want %+v", got, err, sess)
	}
	if got, err := s.GetUser(ctx, user.ID); err != nil || got.Email != user.Email || got.UpdatedAt != user.UpdatedAt || len(got.Roles) != 2 {
		t.Errorf("GetUser = %+v, %v; want %+v", got, err, user)
	}
	if got, err := s.ListRefreshKeys(ctx); err != nil || len(got) != 1 || !bytes.Equal(got[0].Secret, rk.Secret) || got[0].RetiredAt != rk.RetiredAt {
		t.Errorf("ListRefreshKeys = %+v, %v; want [%+v]", got, err, rk)
	}
}
