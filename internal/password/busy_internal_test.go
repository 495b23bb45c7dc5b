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

// TestReservedSlot: a reserved slot counts against the bound until it is
// released (once, however often Release is called), verifies in it
// without waiting, and refuses to verify after it is released.
func TestReservedSlot(t *testing.T) {
	h, err := NewHasher(Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}, 1, WithQueueTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	encoded, err := h.Hash(context.Background(), "password-1")
	if err != nil {
		t.Fatal(err)
	}
	slot, err := h.Reserve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Reserve(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("Reserve with the only slot reserved = %v, want ErrBusy", err)
	}
	if ok, _, err := slot.Verify("password-1", encoded); !ok || err != nil {
		t.Fatalf("Verify in the reserved slot = %v, %v; want a match", ok, err)
	}
	if err := slot.VerifyDummy("password-1"); err != nil {
		t.Fatalf("VerifyDummy in the reserved slot: %v", err)
	}
	slot.Release()
	slot.Release()
	if _, _, err := slot.Verify("password-1", encoded); err == nil {
		t.Fatal("Verify in a released slot succeeded")
	}
	if len(h.sem) != 0 {
		t.Fatalf("%d slots held after two Releases of one, want 0", len(h.sem))
	}
	if _, err := h.Hash(context.Background(), "password-1"); err != nil {
		t.Fatalf("Hash after the slot was released: %v", err)
	}
}
