package etcd_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/storagetest"
)

// TestNoSpace: under etcd's NOSPACE alarm every kind of write (a Txn, a
// lease grant) fails with an error matching both storage.ErrNoSpace and
// storage.ErrUnavailable and changes nothing, reads work, and CheckSpace
// reports the alarm (storage.ErrNoSpace); once it is disarmed CheckSpace is nil and the same
// store writes again.
func TestNoSpace(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithQuotaBackendBytes(2<<20))
	s := openStore(t, srv)
	c := ctxT(t)
	sess := newSession(t, s, "s1", "u1", base)
	if err := s.CheckSpace(c); err != nil {
		t.Fatalf("CheckSpace before the quota is reached: %v", err)
	}

	op, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	junk := strings.Repeat("x", 128<<10)
	for i := 0; ; i++ {
		_, err := op.Put(c, "/junk/"+strings.Repeat("k", i+1), junk)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil || i > 400 {
			t.Fatalf("filling etcd: %d puts, %v", i, err)
		}
	}

	wantNoSpace := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrNoSpace) || !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s under NOSPACE: %v, want storage.ErrNoSpace and storage.ErrUnavailable", what, err)
		}
	}
	if err := s.CheckSpace(c); !errors.Is(err, storage.ErrNoSpace) {
		t.Errorf("CheckSpace under NOSPACE: %v, want storage.ErrNoSpace", err)
	}
	next := storagetest.Digest(t)
	_, err = s.RotateRefreshToken(c, storage.Rotation{SessionID: "s1", Presented: sess.CurrentHash, Next: next, Now: base.Add(time.Minute), IdleTTL: time.Hour})
	wantNoSpace("RotateRefreshToken", err)
	_, _, err = s.RevokeSession(c, "s1", storage.ReasonRevoked, base.Add(time.Minute))
	wantNoSpace("RevokeSession", err)
	_, err = s.DenyAccessToken(c, "jti-1", base.Add(time.Hour)) // a new lease: a grant refused
	wantNoSpace("DenyAccessToken", err)
	got, err := s.GetSession(c, "s1")
	if err != nil || got.Revoked() || got.CurrentHash != sess.CurrentHash {
		t.Fatalf("GetSession under NOSPACE = %+v, %v; want the session unchanged", got, err)
	}

	if _, err := op.Delete(c, "/junk/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	st, err := op.Status(c, srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Compact(c, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Defragment(c, srv.Endpoint); err != nil {
		t.Fatal(err)
	}
	if _, err := op.AlarmDisarm(c, &clientv3.AlarmMember{}); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSpace(c); err != nil {
		t.Fatalf("CheckSpace after the alarm was disarmed: %v", err)
	}
	if _, err := s.RotateRefreshToken(c, storage.Rotation{SessionID: "s1", Presented: sess.CurrentHash, Next: next, Now: base.Add(time.Minute), IdleTTL: time.Hour}); err != nil {
		t.Fatalf("RotateRefreshToken after the alarm was disarmed: %v", err)
	}
	if _, err := s.DenyAccessToken(c, "jti-1", base.Add(time.Hour)); err != nil {
		t.Fatalf("DenyAccessToken after the alarm was disarmed: %v", err)
	}
}
