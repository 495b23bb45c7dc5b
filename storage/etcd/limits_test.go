package etcd_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
)

// limitRows returns the keys of the stored buckets under s's prefix.
func limitRows(t *testing.T, s *etcd.Store) []string {
	t.Helper()
	resp, err := s.Client().Get(ctxT(t), s.Prefix()+"limits/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// TestSharedBucketsAcrossClients: 90 concurrent takes through three
// clients (three Latch processes) of two buckets at once get exactly the
// smaller burst, and each success is charged to both buckets, each refusal
// to neither.
func TestSharedBucketsAcrossClients(t *testing.T) {
	srv := etcdtest.Start(t)
	peers := openPeers(t, srv, 3)
	acct := storage.Bucket{Key: "acct:victim@example.com", Burst: 10, Refill: time.Hour}
	rate := storage.Bucket{Key: "login:victim@example.com", Burst: 50, Refill: time.Hour}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 90 {
		wg.Go(func() {
			<-start
			r, _, err := peers[i%3].TakeTokens(ctxT(t), base, acct, rate)
			switch {
			case err != nil:
				t.Error(err)
			case len(r) == 0:
				ok.Add(1)
			case len(r) == 1 && r[0] == acct.Key:
				refused.Add(1)
			default:
				t.Errorf("refused %v, want only %s", r, acct.Key)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 10 || refused.Load() != 80 {
		t.Fatalf("90 concurrent takes: %d taken, %d refused; want 10 and 80", ok.Load(), refused.Load())
	}
	for i := range 40 {
		if r, _, err := peers[i%3].TakeTokens(ctxT(t), base, rate); err != nil || len(r) != 0 {
			t.Fatalf("take %d of the rate bucket's 40 left = %v, %v", i+1, r, err)
		}
	}
	r, wait, err := peers[0].TakeTokens(ctxT(t), base, rate)
	if err != nil || len(r) != 1 || wait != time.Hour {
		t.Fatalf("take from the spent rate bucket = %v, %v, %v; want refused, retry after 1h", r, wait, err)
	}
	for _, k := range limitRows(t, peers[0]) {
		if strings.Contains(k, "victim") {
			t.Errorf("bucket row %q holds the bucket's name", k)
		}
	}
}

// TestSharedBucketRefillAndReturn: a bucket refills with time, a returned
// token can be taken again, a key named twice is charged twice, and a
// bucket back at its burst leaves no row.
func TestSharedBucketRefillAndReturn(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv)
	b := storage.Bucket{Key: "acct:a@example.com", Burst: 2, Refill: 30 * time.Minute}
	take := func(now time.Time, bs ...storage.Bucket) ([]string, time.Duration) {
		t.Helper()
		r, wait, err := s.TakeTokens(ctxT(t), now, bs...)
		if err != nil {
			t.Fatal(err)
		}
		return r, wait
	}
	if r, _ := take(base, b, b); len(r) != 0 {
		t.Fatalf("two tokens from a full bucket of 2 refused: %v", r)
	}
	if r, wait := take(base, b); len(r) != 1 || wait != 30*time.Minute {
		t.Fatalf("take from an empty bucket = %v, retry %v; want refused, retry after 30m", r, wait)
	}
	if err := s.ReturnToken(ctxT(t), base, b); err != nil {
		t.Fatal(err)
	}
	if r, _ := take(base, b); len(r) != 0 {
		t.Fatalf("the returned token could not be taken: %v", r)
	}
	later := base.Add(30 * time.Minute)
	if r, _ := take(later, b); len(r) != 0 {
		t.Fatalf("the token refilled after 30m could not be taken: %v", r)
	}
	if r, _ := take(later, b); len(r) != 1 {
		t.Fatal("a second token taken before it refilled")
	}
	for range 2 {
		if err := s.ReturnToken(ctxT(t), later, b); err != nil {
			t.Fatal(err)
		}
	}
	if rows := limitRows(t, s); len(rows) != 0 {
		t.Fatalf("a full bucket left rows %v", rows)
	}
	if err := s.ReturnToken(ctxT(t), later, b); err != nil {
		t.Fatalf("returning a token to a full bucket: %v", err)
	}
	if rows := limitRows(t, s); len(rows) != 0 {
		t.Fatalf("returning to a full bucket wrote rows %v", rows)
	}
}

// TestSharedBucketRowsExpire: the row of a bucket that refills is deleted
// by etcd itself (its lease ends once it is full), so keys charged once,
// such as a stream of made-up emails, do not stay in the store.
func TestSharedBucketRowsExpire(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv, etcd.WithLeaseSlack(0), etcd.WithLeaseBucket(time.Second))
	for _, email := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		b := storage.Bucket{Key: "acct:" + email, Burst: 5, Refill: time.Second}
		if r, _, err := s.TakeTokens(ctxT(t), time.Now(), b); err != nil || len(r) != 0 {
			t.Fatalf("take = %v, %v", r, err)
		}
	}
	if rows := limitRows(t, s); len(rows) != 3 {
		t.Fatalf("%d bucket rows after charging 3 keys, want 3", len(rows))
	}
	for len(limitRows(t, s)) > 0 {
		select {
		case <-ctxT(t).Done():
			t.Fatal("the lease never deleted the refilled buckets")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestSharedBucketRefusals: a bucket without a key, burst or refill is
// ErrInvalidArgument and nothing is charged, not even the valid buckets
// of the same call; with etcd gone a take is ErrUnavailable.
func TestSharedBucketRefusals(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, srv, etcd.WithOpTimeout(time.Second))
	good := storage.Bucket{Key: "acct:a@example.com", Burst: 1, Refill: time.Hour}
	for _, bad := range []storage.Bucket{
		{Burst: 1, Refill: time.Hour},
		{Key: "k", Refill: time.Hour},
		{Key: "k", Burst: 1},
		{Key: "k", Burst: 1, Refill: -time.Second},
	} {
		if _, _, err := s.TakeTokens(ctxT(t), base, good, bad); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("TakeTokens(%+v) = %v, want ErrInvalidArgument", bad, err)
		}
		if err := s.ReturnToken(ctxT(t), base, bad); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("ReturnToken(%+v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	if rows := limitRows(t, s); len(rows) != 0 {
		t.Fatalf("refused calls wrote rows %v", rows)
	}
	srv.Stop()
	if _, _, err := s.TakeTokens(context.Background(), base, good); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("TakeTokens with etcd stopped = %v, want ErrUnavailable", err)
	}
}

// TestSharedBucketReturnsAcrossClients: concurrent returns through three
// clients each give back exactly one token: 30 returns to a bucket of 30
// that gave 30 leave it full (no row), and it then gives 30 again.
func TestSharedBucketReturnsAcrossClients(t *testing.T) {
	srv := etcdtest.Start(t)
	peers := openPeers(t, srv, 3)
	b := storage.Bucket{Key: "acct:busy@example.com", Burst: 30, Refill: time.Hour}
	concurrently := func(fn func(i int)) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 30 {
			wg.Go(func() { <-start; fn(i) })
		}
		close(start)
		wg.Wait()
	}
	var taken atomic.Int64
	take := func(i int) {
		r, _, err := peers[i%3].TakeTokens(ctxT(t), base, b)
		if err != nil {
			t.Error(err)
		} else if len(r) == 0 {
			taken.Add(1)
		}
	}
	concurrently(take)
	if taken.Load() != 30 {
		t.Fatalf("%d of 30 concurrent takes from a full bucket of 30 succeeded", taken.Load())
	}
	concurrently(func(i int) {
		if err := peers[i%3].ReturnToken(ctxT(t), base, b); err != nil {
			t.Error(err)
		}
	})
	if rows := limitRows(t, peers[0]); len(rows) != 0 {
		t.Fatalf("a bucket given back every token left rows %v", rows)
	}
	taken.Store(0)
	concurrently(take)
	if r, _, err := peers[1].TakeTokens(ctxT(t), base, b); taken.Load() != 30 || err != nil || len(r) != 1 {
		t.Fatalf("after the returns: %d of 30 takes succeeded, then the 31st = %v, %v; want 30 and refused", taken.Load(), r, err)
	}
}
