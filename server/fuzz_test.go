package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzRequestValidation drives every AuthService handler with arbitrary
// field values (on a real bbolt store). Whatever arrives: no panic, never
// INTERNAL (a client's input is never the server's fault), only the codes
// the contract lists, and no message that repeats a secret it was given.
func FuzzRequestValidation(f *testing.F) {
	f.Add("alice@example.com", "alice-password", "", "", int32(0))
	f.Add("", "", "orders", "eyJhbGciOiJub25lIn0.e30.", int32(1))
	f.Add("ALICE@EXAMPLE.COM ", "x", "payroll", strings.Repeat("A", 43), int32(2))
	f.Add(strings.Repeat("a", 300), strings.Repeat("p", 1100), strings.Repeat("o", 300), strings.Repeat(".", 9000), int32(-7))
	f.Add("al\xffice@example.com", "pa\x00ss", "\x00", "a.b.c.d.e", int32(99))
	for _, s := range readRequestSeeds(f) {
		f.Add(s, s, s, s, int32(len(s)))
	}

	st, err := bolt.Open(filepath.Join(f.TempDir(), "latch.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	hasher, err := password.NewHasher(fastParams(), 2)
	if err != nil {
		f.Fatal(err)
	}
	cfg := baseConfig()
	cfg.IntrospectOpen = true
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.LoginBurst, cfg.AddressBurst, cfg.DeviceBurst, cfg.ProbeBurst = 1<<30, 1<<30, 1<<30, 1<<30, 1<<30 // the handlers, not the limits, are fuzzed
	srv, err := server.New(context.Background(), st, hasher, cfg)
	if err != nil {
		f.Fatal(err)
	}
	h, _ := hasher.Hash(context.Background(), "alice-password")
	if err := st.CreateUser(context.Background(), storage.User{ID: "u1", Email: "alice@example.com", PasswordHash: h}); err != nil {
		f.Fatal(err)
	}

	allowed := map[codes.Code]bool{codes.OK: true, codes.InvalidArgument: true, codes.Unauthenticated: true, codes.ResourceExhausted: true}
	// check fails the RPC's answer when its code is not one a client
	// mistake gets, or its message repeats the secret input. A message
	// that merely contains the secret by chance (a password "ssword" and
	// the fixed "invalid email or password") is told apart by asking again
	// with the secret replaced by as many '#': a fixed text stays the same.
	check := func(t *testing.T, rpc string, err error, secret string, again func(string) error) {
		st := status.Convert(err)
		if !allowed[st.Code()] {
			t.Fatalf("%s answered %v %q", rpc, st.Code(), st.Message())
		}
		if len(secret) >= 6 && strings.Contains(st.Message(), secret) &&
			status.Convert(again(strings.Repeat("#", len(secret)))).Message() != st.Message() {
			t.Fatalf("%s message %q repeats its input", rpc, st.Message())
		}
	}
	f.Fuzz(func(t *testing.T, email, pw, aud, tok string, hint int32) {
		ctx := context.Background()
		login := func(pw string) error {
			_, err := srv.Login(ctx, &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
			return err
		}
		check(t, "Login", login(pw), pw, login)
		loginWithProof := func(proof string) error {
			_, err := srv.Login(ctx, &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud, DeviceProof: proof})
			return err
		}
		check(t, "Login with a device proof", loginWithProof(tok), tok, loginWithProof)
		refresh := func(tok string) error {
			_, err := srv.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tok, Audience: aud})
			return err
		}
		check(t, "Refresh", refresh(tok), tok, refresh)
		revoke := func(tok string) error {
			_, err := srv.Revoke(ctx, &latchv1.RevokeRequest{Token: tok, TokenTypeHint: latchv1.TokenTypeHint(hint)})
			return err
		}
		check(t, "Revoke", revoke(tok), tok, revoke)
		introspect := func(tok string) error {
			_, err := srv.Introspect(ctx, &latchv1.IntrospectRequest{Token: tok, TokenTypeHint: latchv1.TokenTypeHint(hint)})
			return err
		}
		resp, err := srv.Introspect(ctx, &latchv1.IntrospectRequest{Token: tok, TokenTypeHint: latchv1.TokenTypeHint(hint)})
		check(t, "Introspect", err, tok, introspect)
		if err == nil && !resp.GetActive() && (resp.GetSub() != "" || resp.GetJti() != "" || resp.GetExp() != 0) {
			t.Fatalf("inactive answer carries claims: %v", resp)
		}
	})
}

func readRequestSeeds(f *testing.F) []string {
	data, err := os.ReadFile(filepath.Join("testdata", "request-seeds.txt"))
	if err != nil {
		f.Fatalf("seed corpus: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
