package etcd

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/storagetest"
)

// TestRecordEncodingIsStable pins the bytes this backend stores for a
// session, a user and a signing key: a change would make data already in
// etcd unreadable.
func TestRecordEncodingIsStable(t *testing.T) {
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
	if _, err := s.InitSigningKey(ctx, storagetest.GoldenKey()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, want string }{
		{s.sessionKey(storagetest.GoldenSession().ID), storagetest.GoldenSessionRecord},
		{s.userKey(storagetest.GoldenUser().ID), storagetest.GoldenUserRecord},
		{s.keyKey(storagetest.GoldenKey().ID), storagetest.GoldenKeyRecord},
	} {
		resp, err := s.cli.Get(ctx, c.key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 {
			t.Errorf("%s: %d values, want 1", c.key, len(resp.Kvs))
			continue
		}
		if got := string(resp.Kvs[0].Value); got != c.want {
			t.Errorf("%s stored as\n%q\nwant\n%q", c.key, got, c.want)
		}
	}
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
