package server_test

import (
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
)

// A device proof is documented as valid for 180 days (DeviceProofTTL). Under
// the default key life cycle (signing key, and with it the refresh secret,
// rotating every 30 days; RefreshMaxAge 30 days) the secret that MACs the
// proof is deleted about 30-60 days after the proof was handed out, and
// the owner's proof stops keeping her in during an attack.
func TestDeviceProofOutlivesItsSecret(t *testing.T) {
	cfg := baseConfig() // default KeyRotation, RefreshMaxAge, DeviceProofTTL
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	first, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}
	proof := first.GetDeviceProof()
	// One ordinary rotation, as the 30-day schedule or an operator does.
	e.clock.Advance(2 * time.Hour)
	if _, err := e.srv.RotateSigningKey(ctxT(t), false); err != nil {
		t.Fatal(err)
	}
	// 40 days later (well inside 180 days), after a key reload.
	for range 40 {
		e.clock.Advance(24 * time.Hour)
		if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	// A distributed attacker empties Alice's shared budget.
	for range 10 {
		_, _ = e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "guess"})
	}
	_, err = e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password", DeviceProof: proof})
	if err != nil {
		t.Fatalf("owner with a 40-day-old device proof (documented lifetime 180 days): %v", err)
	}
}
