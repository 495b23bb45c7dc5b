package bolt

import (
	"bytes"
	"context"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
	"github.com/latchauth/latch/storage/storagetest"
)

// TestRowsHoldSharedRecords: every row that holds a record (session,
// session summary, user, signing key, refresh key) holds exactly the
// encoding of storage/internal/record, the one storage/etcd writes too,
// and reads back as the value written.
func TestRowsHoldSharedRecords(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if err := storagetest.StoreGolden(ctx, s); err != nil {
		t.Fatal(err)
	}
	sess, user, key, rk := storagetest.GoldenSession(), storagetest.GoldenUser(), storagetest.GoldenKey(), storagetest.GoldenRefreshKey()
	for _, c := range []struct {
		bucket []byte
		key    string
		want   func() ([]byte, error)
	}{
		{bucketSessions, sess.ID, func() ([]byte, error) { return record.EncodeSession(sess) }},
		{bucketSessState, sess.ID, func() ([]byte, error) { return record.EncodeState(sess) }},
		{bucketUsers, user.ID, func() ([]byte, error) { return record.EncodeUser(user) }},
		{bucketKeys, key.ID, func() ([]byte, error) { return record.EncodeKey(key) }},
		{bucketRefreshKeys, rk.ID, func() ([]byte, error) { return record.EncodeRefreshKey(rk) }},
	} {
		want, err := c.want()
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		s.db.View(func(tx *bbolt.Tx) error {
			got = bytes.Clone(tx.Bucket(c.bucket).Get([]byte(c.key)))
			return nil
		})
		if len(got) == 0 || got[0] != record.Version || !bytes.Equal(got, want) {
			t.Errorf("%s/%s stored as %x; want the version-%d record %x", c.bucket, c.key, got, record.Version, want)
		}
	}
	if got, err := s.GetSession(ctx, sess.ID); err != nil || got != sess {
		t.Errorf("GetSession = %+v, %v; want %+v", got, err, sess)
	}
	if got, err := s.GetUser(ctx, user.ID); err != nil || !equalUsers(got, user) {
		t.Errorf("GetUser = %+v, %v; want %+v", got, err, user)
	}
	if got, err := s.ListSigningKeys(ctx); err != nil || len(got) != 1 || !bytes.Equal(got[0].PrivateKey, key.PrivateKey) || got[0].ActivatedAt != key.ActivatedAt {
		t.Errorf("ListSigningKeys = %+v, %v; want [%+v]", got, err, key)
	}
	if got, err := s.ListRefreshKeys(ctx); err != nil || len(got) != 1 || !bytes.Equal(got[0].Secret, rk.Secret) || got[0].RetiredAt != rk.RetiredAt {
		t.Errorf("ListRefreshKeys = %+v, %v; want [%+v]", got, err, rk)
	}
}

func equalUsers(a, b storage.User) bool {
	return a.ID == b.ID && a.Email == b.Email && a.PasswordHash == b.PasswordHash && a.Disabled == b.Disabled &&
		a.CreatedAt == b.CreatedAt && a.UpdatedAt == b.UpdatedAt && len(a.Roles) == len(b.Roles)
}
