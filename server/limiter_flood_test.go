package server_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// An attacker whose guesses on one account are exhausted must stay
// limited: flooding the limiter table with logins for distinct unknown
// emails (refused by the address budget, so no hashing) must not make the
// server forget the victim's account bucket. Default limits, one address.
func TestLimiterFloodDoesNotResetAccountBudget(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("victim@example.com", "right-password")
	guess := func() error {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "victim@example.com", Password: "wrong-guess"})
		return err
	}
	for range 10 {
		wantStatus(t, guess(), codes.Unauthenticated, "")
	}
	wantStatus(t, guess(), codes.ResourceExhausted, "")

	// Flood: 100,000 logins, each for a new unknown email, from the same
	// address. Past the address burst they are all refused before hashing.
	const flood = 100_000
	var next atomic.Int64
	var checked atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > flood {
					return
				}
				_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: fmt.Sprintf("x%d@flood.example", i), Password: "p"})
				if status.Code(err) == codes.Unauthenticated {
					checked.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("flood: %d of %d attempts reached a (dummy) password check", checked.Load(), flood)

	// One second later the address has one token again; the account's
	// shared bucket has refilled by 1/300 of a token.
	e.clock.Advance(time.Second)
	err := guess()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("after the flood a guess on the limited account got %v; want RESOURCE_EXHAUSTED: the flood evicted the account's bucket and reset its budget", err)
	}
}
