package server_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// clientFrom dials addr over real TCP from the given loopback source IP.
func clientFrom(t *testing.T, addr, sourceIP string) latchv1.AuthServiceClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return latchv1.NewAuthServiceClient(conn)
}

// TestLimitsArePerAccountAndPerAddress runs over real TCP from two loopback
// source addresses: one address that floods failures is refused, while
// another account from another address logs in; an attacked account stays
// limited whatever address tries it.
func TestLimitsArePerAccountAndPerAddress(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 3, time.Hour
	cfg.AddressBurst, cfg.AddressRefill = 10, time.Hour
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	e.addUser("bob@example.com", "bob-password")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := server.NewGRPCServer(e.srv, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	attacker := clientFrom(t, lis.Addr().String(), "127.0.0.2")
	other := clientFrom(t, lis.Addr().String(), "127.0.0.3")

	login := func(c latchv1.AuthServiceClient, email, pw string) error {
		_, err := c.Login(ctxT(t), &latchv1.LoginRequest{Email: email, Password: pw})
		return err
	}
	for range 3 {
		wantStatus(t, login(attacker, "alice@example.com", "guess"), codes.Unauthenticated, "invalid email or password")
	}
	for i := range 7 { // spray other accounts until the address budget is gone
		wantStatus(t, login(attacker, "user"+string(rune('a'+i))+"@example.com", "guess"), codes.Unauthenticated, "")
	}
	wantStatus(t, login(attacker, "bob@example.com", "bob-password"), codes.ResourceExhausted, "")
	// Another account from another address is unaffected.
	if err := login(other, "bob@example.com", "bob-password"); err != nil {
		t.Fatalf("bob from another address: %v", err)
	}
	// The attacked account is limited from every address.
	wantStatus(t, login(other, "alice@example.com", "alice-password"), codes.ResourceExhausted, "")
}
