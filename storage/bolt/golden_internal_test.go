package bolt

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage/storagetest"
)

// TestRecordEncodingIsStable pins the bytes this backend stores for a
// session, a user and a signing key: a change would make existing database
// files unreadable.
func TestRecordEncodingIsStable(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateUser(ctx, storagetest.GoldenUser()); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, storagetest.GoldenSession()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InitSigningKey(ctx, storagetest.GoldenKey()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bucket []byte
		key    string
		want   string
	}{
		{bucketSessions, storagetest.GoldenSession().ID, storagetest.GoldenSessionRecord},
		{bucketUsers, storagetest.GoldenUser().ID, storagetest.GoldenUserRecord},
		{bucketKeys, storagetest.GoldenKey().ID, storagetest.GoldenKeyRecord},
	} {
		var got string
		if err := s.db.View(func(tx *bbolt.Tx) error {
			got = string(tx.Bucket(c.bucket).Get([]byte(c.key)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s/%s stored as\n%q\nwant\n%q", c.bucket, c.key, got, c.want)
		}
	}
	// And they read back as the values written.
	if got, err := s.GetSession(ctx, storagetest.GoldenSession().ID); err != nil || got != storagetest.GoldenSession() {
		t.Errorf("GetSession = %+v, %v; want %+v", got, err, storagetest.GoldenSession())
	}
	if got, err := s.GetUser(ctx, storagetest.GoldenUser().ID); err != nil || !reflect.DeepEqual(got, storagetest.GoldenUser()) {
		t.Errorf("GetUser = %+v, %v; want %+v", got, err, storagetest.GoldenUser())
	}
	if got, err := s.ListSigningKeys(ctx); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], storagetest.GoldenKey()) {
		t.Errorf("ListSigningKeys = %+v, %v; want [%+v]", got, err, storagetest.GoldenKey())
	}
}
