package etcd

import (
	"context"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
)

// TestChargeDoesNotWaitOnAHeldStripe: a charge whose bucket's stripe is
// held (as by a charge stuck on a frozen etcd member, for up to the op
// timeout) goes ahead without the lock instead of failing with it, and
// still takes exactly its token.
func TestChargeDoesNotWaitOnAHeldStripe(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openInternal(t, srv, "/stripe/")
	b := storage.Bucket{Key: "acct:held@example.com", Burst: 2, Refill: time.Hour}
	unlock, err := s.lockBuckets(t.Context(), []sharedBucket{{Bucket: b}})
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	for i, want := range []bool{true, true, false} {
		refused, _, err := s.TakeTokens(ctx, time.Now(), b)
		if err != nil {
			t.Fatalf("charge %d with the stripe held: %v", i+1, err)
		}
		if got := len(refused) == 0; got != want {
			t.Fatalf("charge %d of a burst of 2 taken = %v, want %v", i+1, got, want)
		}
	}
}
