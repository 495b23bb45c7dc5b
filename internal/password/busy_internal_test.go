package password

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestQueueTimeoutSheds: when every hashing slot stays busy beyond the
// queue timeout, work is refused with ErrBusy instead of queueing forever.
func TestQueueTimeoutSheds(t *testing.T) {
	h, err := NewHasher(Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}, 1, WithQueueTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	h.sem <- struct{}{} // a hash that never finishes
	if _, err := h.Hash(context.Background(), "password-1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash with every slot busy = %v, want ErrBusy", err)
	}
	if _, _, err := h.Verify(context.Background(), "password-1", h.dummy); !errors.Is(err, ErrBusy) {
		t.Fatalf("Verify with every slot busy = %v, want ErrBusy", err)
	}
	<-h.sem
	if _, err := h.Hash(context.Background(), "password-1"); err != nil {
		t.Fatalf("Hash with a free slot: %v", err)
	}
}
