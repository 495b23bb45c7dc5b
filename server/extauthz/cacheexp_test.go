package extauthz_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/latchauth/latch/interceptors"
)

// TestCachedAllowEndsAtExp: a token served from the verified-token cache
// is refused once its exp has passed (beyond the leeway), with no revocation
// involved: the cache never outlives the token.
func TestCachedAllowEndsAtExp(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnvWith(t, []interceptors.Option{interceptors.WithClock(clock), interceptors.WithCacheSize(100)})
	e.addUser("alice@example.com", "alice-password", "orders:read")
	pair := e.login("alice@example.com", "alice-password", "orders")
	req := request("GET", "/api/orders/1", bearer(pair.GetAccessToken()))
	for i := range 2 {
		if resp, err := e.check.Check(ctxT(t), req); err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("Check %d = %v, %v", i, resp, err)
		}
	}
	if got := e.keys.lookups.Load(); got != 1 {
		t.Fatalf("%d key lookups for two Checks, want 1 (the second from the cache)", got)
	}
	mu.Lock()
	now = now.Add(time.Duration(pair.GetExpiresIn())*time.Second + 2*time.Minute) // past exp and any leeway
	mu.Unlock()
	resp, err := e.check.Check(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, 401, codes.Unauthenticated, challengeInvalid)
}
