package main

import (
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReplicasShareGuessBudget: a hundred concurrent wrong passwords for
// one account, spread over three `latch serve` replicas on one etcd, get at
// most the account's failure burst (10 with the defaults) through the
// password check in total, not 10 per replica; afterwards the right
// password is refused on every replica until the budget refills.
func TestReplicasShareGuessBudget(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	srv := etcdtest.Start(t)
	const prefix = "/latch-guess/"
	etcdUserAdd(t, ctx, srv, prefix, "victim@example.com", "victim-password-1", "user")
	reps := startReplicas(t, ctx, srv, prefix, "A", "B", "C")

	var mu sync.Mutex
	got := map[codes.Code]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 100 {
		wg.Go(func() {
			<-start
			_, err := reps[i%3].cli.Login(ctx, &latchv1.LoginRequest{Email: "victim@example.com", Password: "wrong-guess"})
			mu.Lock()
			got[status.Code(err)]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	t.Logf("100 concurrent wrong logins over 3 replicas: %v", got)
	if got[codes.Unauthenticated] > 10 || got[codes.Unauthenticated]+got[codes.ResourceExhausted] != 100 {
		t.Fatalf("100 concurrent wrong logins over 3 replicas: %v; want at most 10 password checks (UNAUTHENTICATED), the rest RESOURCE_EXHAUSTED", got)
	}
	for _, r := range reps {
		_, err := r.cli.Login(ctx, &latchv1.LoginRequest{Email: "victim@example.com", Password: "victim-password-1"})
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("right password on %s after the account's budget was spent: %v, want RESOURCE_EXHAUSTED", r.name, err)
		}
	}
}
