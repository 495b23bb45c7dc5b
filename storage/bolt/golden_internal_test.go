package bolt

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
	"github.com/latchauth/latch/storage/storagetest"
)

// TestRecordEncodingIsStable pins the bytes this backend stores for a
// session (the binary version 2), a user and a signing key: a change would
// make existing database files unreadable.
func TestRecordEncodingIsStable(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if err := storagetest.StoreGolden(ctx, s); err != nil {
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
		{bucketSessions, storagetest.GoldenSession().ID, storagetest.GoldenSessionRecordV2},
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

// A session record written as JSON (version 1, what schemas 1 and 2 wrote)
// still reads, rotates, and is rewritten as version 2 by the rotation.
func TestVersion1SessionRecordStillReads(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	golden := storagetest.GoldenSession()
	golden.RevokedAt, golden.RevokeReason = time.Time{}, ""
	storagetest.EnsureUser(t, s, golden.UserID)
	if err := s.CreateSession(ctx, golden); err != nil {
		t.Fatal(err)
	}
	v1, err := record.EncodeSessionV1(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketSessions).Put([]byte(golden.ID), v1) }); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSession(ctx, golden.ID); err != nil || got != golden {
		t.Fatalf("GetSession of a v1 record = %+v, %v; want %+v", got, err, golden)
	}
	now := golden.LastRotatedAt.Add(time.Minute)
	rotated, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: golden.ID, Generation: golden.Generation, Presented: golden.CurrentHash, Next: storagetest.Digest(t), Now: now, IdleTTL: time.Hour})
	if err != nil {
		t.Fatalf("rotation of a v1 session: %v", err)
	}
	var stored []byte
	s.db.View(func(tx *bbolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketSessions).Get([]byte(golden.ID)))
		return nil
	})
	if len(stored) == 0 || stored[0] != record.SessionVersion {
		t.Fatalf("rotated session stored as %q; want a version-2 record", stored)
	}
	if got, err := s.GetSession(ctx, golden.ID); err != nil || got != rotated {
		t.Fatalf("GetSession after rotation = %+v, %v; want %+v", got, err, rotated)
	}
}
