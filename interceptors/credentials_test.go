package interceptors_test

import (
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/interceptors/clientcreds"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// TestCredentialsRefreshSingleFlight: when the token is about to expire, 32
// concurrent calls cause exactly one Refresh, and all of them get the new
// token.
func TestCredentialsRefreshSingleFlight(t *testing.T) {
	e := newLatch(t)
	e.AddUser("svc@example.com", "svc-password", "orders:read")
	creds, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", issuer,
		clientcreds.WithInsecure(), clientcreds.WithClock(e.Clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	first, err := creds.Token(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if e.refresh.Load() != 0 {
		t.Fatal("a fresh token was refreshed")
	}
	e.Clock.Advance(15*time.Minute - 30*time.Second) // inside the refresh-early window
	var wg sync.WaitGroup
	got := make([]string, 32)
	for i := range got {
		wg.Go(func() {
			tok, err := creds.Token(ctxT(t))
			if err != nil {
				t.Error(err)
			}
			got[i] = tok
		})
	}
	wg.Wait()
	if n := e.refresh.Load(); n != 1 {
		t.Fatalf("%d Refresh calls for 32 concurrent callers, want 1", n)
	}
	// Callers that arrived while the refresh ran may have used the old,
	// still-valid token; afterwards everyone gets the new one.
	next, _ := creds.Token(ctxT(t))
	if next == first {
		t.Fatal("token not refreshed")
	}
	for _, tok := range got {
		if tok != first && tok != next {
			t.Fatal("a caller got a token that is neither the old nor the new one")
		}
	}
}

// TestCredentialsOnTheWire: the credentials authorise calls to a protected
// service, and refuse plaintext unless allowed.
func TestCredentialsOnTheWire(t *testing.T) {
	e := newLatch(t)
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	v := newVerifier(t, e)
	client := sibling(t, v, policy())
	creds, err := clientcreds.Login(ctxT(t), e.conn, "alice@example.com", "alice-password", "", clientcreds.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.UnaryCall(ctxT(t), &testpb.SimpleRequest{}, grpc.PerRPCCredentials(creds))
	if err != nil || resp.GetUsername() == "" {
		t.Fatalf("UnaryCall with credentials = %v, %v", resp, err)
	}
	strict, err := clientcreds.Login(ctxT(t), e.conn, "alice@example.com", "alice-password", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strict.RequireTransportSecurity() {
		t.Fatal("credentials do not require transport security by default")
	}
	if _, err := client.UnaryCall(ctxT(t), &testpb.SimpleRequest{}, grpc.PerRPCCredentials(strict)); err == nil {
		t.Fatal("bearer credentials were sent over plaintext")
	}
}
