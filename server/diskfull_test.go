package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc/codes"
)

// diskFullStore fails every write of the real store with ENOSPC while full
// is set, as bbolt does when its file cannot grow.
type diskFullStore struct {
	storage.Store
	full atomic.Bool
}

func (d *diskFullStore) err(op string) error {
	if d.full.Load() {
		return fmt.Errorf("bolt: %s: write latch.db: %w", op, syscall.ENOSPC)
	}
	return nil
}

func (d *diskFullStore) CreateSession(ctx context.Context, s storage.Session) error {
	if err := d.err("create session"); err != nil {
		return err
	}
	return d.Store.CreateSession(ctx, s)
}

func (d *diskFullStore) RotateRefreshToken(ctx context.Context, r storage.Rotation) (storage.Session, error) {
	if err := d.err("rotate"); err != nil {
		return storage.Session{}, err
	}
	return d.Store.RotateRefreshToken(ctx, r)
}

func (d *diskFullStore) RevokeSession(ctx context.Context, id, reason string, now time.Time) (storage.Session, bool, error) {
	if err := d.err("revoke session"); err != nil {
		return storage.Session{}, false, err
	}
	return d.Store.RevokeSession(ctx, id, reason, now)
}

func (d *diskFullStore) DenyAccessToken(ctx context.Context, jti string, exp time.Time) (bool, error) {
	if err := d.err("deny"); err != nil {
		return false, err
	}
	return d.Store.DenyAccessToken(ctx, jti, exp)
}

// TestDiskFull: while writes fail, every RPC that must write answers
// INTERNAL "internal error" (a Revoke that could not be made durable never
// answers OK), reads keep working (Introspect, GetJWKS), nothing leaks, and
// once the disk has room again everything works and the file is consistent.
func TestDiskFull(t *testing.T) {
	d := &diskFullStore{}
	e := newEnv(t, baseConfig(), func(s storage.Store) storage.Store { d.Store = s; return d })
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()
	tp := e.login("alice@example.com", "alice-password")

	d.full.Store(true)
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	wantStatus(t, err, codes.Internal, "internal error")
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	wantStatus(t, err, codes.Internal, "internal error")
	_, err = e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetAccessToken()})
	wantStatus(t, err, codes.Internal, "internal error")
	_, err = e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetRefreshToken()})
	wantStatus(t, err, codes.Internal, "internal error")
	if r := e.introspect(ictx, tp.GetAccessToken()); !r.GetActive() {
		t.Fatal("a failed Revoke took effect, or reads stopped working")
	}
	if _, err := e.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{}); err != nil {
		t.Fatalf("GetJWKS while the disk is full: %v", err)
	}
	if !strings.Contains(e.logs.String(), "no space left on device") {
		t.Error("the cause is not in the log")
	}

	d.full.Store(false)
	// Past the retry window, so that a token the failed attempt had
	// consumed would now be reuse, not a retry.
	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	r, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatalf("Refresh after the disk recovered: %v (the failed attempt must not have consumed the token)", err)
	}
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: r.GetTokens().GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	if err := d.Store.(*bolt.Store).Check(); err != nil {
		t.Fatalf("consistency check: %v", err)
	}
}

// TestLogsHoldNoKeyMaterial: the private signing key appears in no log
// record and no response.
func TestLogsHoldNoKeyMaterial(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	e.login("alice@example.com", "alice-password")
	keys, err := e.store.ListSigningKeys(ctxT(t))
	if err != nil || len(keys) == 0 {
		t.Fatal(err)
	}
	jwks, err := e.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []string{base64.StdEncoding.EncodeToString(keys[0].PrivateKey), base64.RawURLEncoding.EncodeToString(keys[0].PrivateKey),
		fmt.Sprintf("%x", keys[0].PrivateKey)} {
		if strings.Contains(e.logs.String(), form[len(form)-40:]) || strings.Contains(jwks.String(), form[len(form)-40:]) {
			t.Fatal("private key material in logs or JWKS")
		}
	}
	// The wire type cannot carry one: JSONWebKey has no private member.
	fields := (&latchv1.JSONWebKey{}).ProtoReflect().Descriptor().Fields()
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if fields.ByJSONName(private) != nil {
			t.Fatalf("JSONWebKey has private member %q", private)
		}
	}
}
