package tokens_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/tokens"
)

func TestDeviceProof(t *testing.T) {
	key, err := tokens.NewRefreshKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := tokens.NewRefreshKey(rand.Reader)
	lookup := func(k tokens.RefreshKey) func(string) ([]byte, bool) {
		return func(id string) ([]byte, bool) { return k.Secret, id == k.ID }
	}
	sameIDOtherSecret := tokens.RefreshKey{ID: key.ID, Secret: bytes.Repeat([]byte{8}, 32)}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p, err := tokens.NewDeviceProof(key, "user-1", now.Add(time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != tokens.MaxDeviceProofLength {
		t.Errorf("proof length %d, want %d", len(p), tokens.MaxDeviceProofLength)
	}
	id, err := tokens.VerifyDeviceProof(lookup(key), "user-1", p, now)
	if err != nil || len(id) != 32 {
		t.Fatalf("VerifyDeviceProof = %q, %v", id, err)
	}
	other, _ := tokens.NewDeviceProof(key, "user-1", now.Add(time.Hour), rand.Reader)
	if id2, _ := tokens.VerifyDeviceProof(lookup(key), "user-1", other, now); id2 == id {
		t.Error("two proofs share a device id")
	}
	flipped := []byte(p)
	flipped[5] ^= 1
	for name, tc := range map[string]struct {
		key         tokens.RefreshKey
		user, proof string
		now         time.Time
	}{
		"another account": {key, "user-2", p, now},
		"unknown secret":  {otherKey, "user-1", p, now},
		"another secret":  {sameIDOtherSecret, "user-1", p, now},
		"expired":         {key, "user-1", p, now.Add(time.Hour)},
		"tampered":        {key, "user-1", string(flipped), now},
		"truncated":       {key, "user-1", p[:len(p)-1], now},
		"padded":          {key, "user-1", p + "=", now},
		"empty":           {key, "user-1", "", now},
		"not base64url":   {key, "user-1", strings.Repeat("*", len(p)), now},
	} {
		if _, err := tokens.VerifyDeviceProof(lookup(tc.key), tc.user, tc.proof, tc.now); !errors.Is(err, tokens.ErrBadDeviceProof) {
			t.Errorf("%s: err = %v, want ErrBadDeviceProof", name, err)
		}
	}
}

// FuzzVerifyDeviceProof: no input panics, and nothing but the proofs issued
// under the key for the account verifies.
func FuzzVerifyDeviceProof(f *testing.F) {
	key := tokens.RefreshKey{ID: "AAAAAAAAAAA", Secret: bytes.Repeat([]byte{7}, 32)}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	// Deterministic, so that every fuzzing worker builds the same proof.
	good, err := tokens.NewDeviceProof(key, "user-1", now.Add(time.Hour), bytes.NewReader(bytes.Repeat([]byte{9}, 16)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add(strings.Repeat("A", len(good)))
	lookup := func(id string) ([]byte, bool) { return key.Secret, id == key.ID }
	f.Fuzz(func(t *testing.T, proof string) {
		id, err := tokens.VerifyDeviceProof(lookup, "user-1", proof, now)
		if err == nil && proof != good {
			t.Fatalf("a proof not issued verified: %q (device %s)", proof, id)
		}
	})
}
