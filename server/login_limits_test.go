package server_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// loginOutcomes fires n logins at once (all released together) and counts
// the codes they got. Every login runs the real argon2id hasher over bufconn.
func loginOutcomes(t *testing.T, e *env, n int, req func(i int) *latchv1.LoginRequest) map[codes.Code]int {
	t.Helper()
	var mu sync.Mutex
	got := map[codes.Code]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := e.client.Login(ctxT(t), req(i))
			mu.Lock()
			got[status.Code(err)]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return got
}

// N concurrent wrong logins against one account are limited exactly as N
// sequential ones: only the account's burst reaches the password check,
// and once the account is limited, no burst of concurrent guesses, the
// right password among them, gets through.
func TestConcurrentLoginsAreLimitedAsSequentialOnes(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 10, time.Hour
	e := newEnv(t, cfg)
	e.addUser("victim@example.com", "right-password")

	got := loginOutcomes(t, e, 300, func(int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: "victim@example.com", Password: "wrong-guess"}
	})
	if got[codes.Unauthenticated] != 10 || got[codes.ResourceExhausted] != 290 {
		t.Fatalf("300 concurrent wrong logins: %v, want exactly 10 password checks (UNAUTHENTICATED) and 290 RESOURCE_EXHAUSTED", got)
	}

	got = loginOutcomes(t, e, 100, func(i int) *latchv1.LoginRequest {
		pw := "wrong-guess"
		if i == 50 {
			pw = "right-password"
		}
		return &latchv1.LoginRequest{Email: "victim@example.com", Password: pw}
	})
	if got[codes.ResourceExhausted] != 100 {
		t.Fatalf("second burst against the limited account: %v, want all 100 refused before the password check", got)
	}
}

// The per-address budget holds under concurrency too: a spray of wrong
// logins across many accounts from one address stops at its burst.
func TestConcurrentAddressBudgetIsExact(t *testing.T) {
	cfg := baseConfig()
	cfg.AddressBurst, cfg.AddressRefill = 25, time.Hour
	e := newEnv(t, cfg)
	got := loginOutcomes(t, e, 200, func(i int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: "user" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@example.com", Password: "guess"}
	})
	if got[codes.Unauthenticated] != 25 || got[codes.ResourceExhausted] != 175 {
		t.Fatalf("200 concurrent logins from one address over 200 accounts: %v, want exactly 25 checked", got)
	}
}

// limitedAnswer is everything a client can see of a refused login.
type limitedAnswer struct {
	code  codes.Code
	msg   string
	retry bool
}

func answerOf(err error) limitedAnswer {
	st, _ := status.FromError(err)
	a := limitedAnswer{code: st.Code(), msg: st.Message()}
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			a.retry = true
		}
	}
	return a
}

// Once a limit applies, an unknown email, a wrong password and the right
// password get the same answer: status, message and retry hint.
func TestLimitedLoginAnswersAlike(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 3, time.Hour
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	for _, email := range []string{"alice@example.com", "nobody@example.com"} {
		for range 3 {
			_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: email, Password: "guess"})
			wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
		}
	}
	answers := map[string]limitedAnswer{}
	for name, req := range map[string]*latchv1.LoginRequest{
		"unknown email":  {Email: "nobody@example.com", Password: "guess"},
		"wrong password": {Email: "alice@example.com", Password: "guess"},
		"right password": {Email: "alice@example.com", Password: "alice-password"},
	} {
		_, err := e.client.Login(ctxT(t), req)
		answers[name] = answerOf(err)
	}
	want := limitedAnswer{code: codes.ResourceExhausted, msg: "too many login attempts; retry later", retry: true}
	for name, a := range answers {
		if a != want {
			t.Errorf("%s: %+v, want %+v", name, a, want)
		}
	}
}

// A right password gives back only the account token its own attempt took:
// failures before it still count, and the address budget is never refilled
// by logging in (or an attacker would refill it with an account of its
// own).
func TestSuccessRefundsOnlyItsOwnAccountToken(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 3, time.Hour
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	login := func(pw string) error {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: pw})
		return err
	}
	wantStatus(t, login("guess-1"), codes.Unauthenticated, "")
	wantStatus(t, login("guess-2"), codes.Unauthenticated, "")
	if err := login("alice-password"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	wantStatus(t, login("guess-3"), codes.Unauthenticated, "")
	// Three failures spent the burst of three: the success did not wipe
	// the two before it.
	wantStatus(t, login("guess-4"), codes.ResourceExhausted, "")

	cfg = baseConfig()
	cfg.AddressBurst, cfg.AddressRefill = 5, time.Hour
	e = newEnv(t, cfg)
	e.addUser("mallory@example.com", "mallory-password")
	for i := range 5 {
		if _, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "mallory@example.com", Password: "mallory-password"}); err != nil {
			t.Fatalf("login %d: %v", i+1, err)
		}
	}
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "mallory@example.com", Password: "mallory-password"})
	wantStatus(t, err, codes.ResourceExhausted, "too many login attempts; retry later")
}

// One valid credential cannot monopolise the hasher: successful logins of
// a person's account are limited too, and the refusal looks exactly like
// any other limit.
func TestSuccessfulLoginsAreRateLimited(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.LoginBurst, cfg.PersonLimits.LoginRefill = 5, time.Hour
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	got := loginOutcomes(t, e, 40, func(int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"}
	})
	if got[codes.OK] != 5 || got[codes.ResourceExhausted] != 35 {
		t.Fatalf("40 concurrent right logins: %v, want 5 OK and 35 RESOURCE_EXHAUSTED", got)
	}
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	if a := answerOf(err); a != (limitedAnswer{codes.ResourceExhausted, "too many login attempts; retry later", true}) {
		t.Errorf("rate-limited right password: %+v", a)
	}
}

// A fleet of pods sharing one service account logs in through rolling
// restarts without tripping the person limits: no login refused, no live
// pod's session revoked by the live-session cap.
func TestServiceAccountFleetDoesNotThrash(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.LoginBurst, cfg.PersonLimits.MaxSessions = 5, 5
	e := newEnv(t, cfg)
	e.addUser("orders-svc@example.com", "svc-password", "service")
	const pods = 60
	var sessions [pods]*latchv1.TokenPair
	for round := range 3 { // three rolling restarts: every pod logs in anew
		var wg sync.WaitGroup
		var failed atomic.Int64
		for p := range pods {
			wg.Go(func() {
				resp, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "orders-svc@example.com", Password: "svc-password"})
				if err != nil {
					failed.Add(1)
					t.Log(err)
					return
				}
				sessions[p] = resp.GetTokens()
			})
		}
		wg.Wait()
		if n := failed.Load(); n != 0 {
			t.Fatalf("round %d: %d of %d pod logins refused", round+1, n, pods)
		}
	}
	for p, tp := range sessions {
		if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()}); err != nil {
			t.Fatalf("pod %d's live session no longer refreshes: %v", p, err)
		}
	}
}

// A person's live sessions are capped: a login past the cap revokes the
// oldest, which stops refreshing, and announces it to revocation watchers.
func TestLiveSessionsPerPersonAreCapped(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.MaxSessions = 3
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	ctx := e.introspector()
	watch, err := e.client.WatchRevocations(ctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Header(); err != nil {
		t.Fatal(err)
	}
	var pairs []*latchv1.TokenPair
	for range 5 {
		pairs = append(pairs, e.login("alice@example.com", "alice-password"))
		e.clock.Advance(time.Second)
	}
	for i := range 2 {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetSessionId() != pairs[i].GetSessionId() {
			t.Errorf("event %d revokes session %q, want the oldest %q", i, ev.GetSessionId(), pairs[i].GetSessionId())
		}
	}
	for i, tp := range pairs {
		_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		if i < 2 {
			wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
		} else if err != nil {
			t.Errorf("session %d of 5 (within the cap of 3 newest): %v", i+1, err)
		}
	}
}

// The owner keeps a way in while an attacker without the owner's device
// holds the account's shared budget empty: a device proof from an earlier
// login gets its own budget. A proof of another account, or none, does not.
func TestDeviceProofKeepsTheOwnerIn(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 3, time.Hour
	cfg.DeviceBurst, cfg.DeviceRefill = 3, time.Hour
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	e.addUser("mallory@example.com", "mallory-password")
	first, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}
	aliceProof := first.GetDeviceProof()
	if aliceProof == "" {
		t.Fatal("a successful login handed out no device proof")
	}
	mallory, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "mallory@example.com", Password: "mallory-password"})
	if err != nil {
		t.Fatal(err)
	}
	// A distributed attacker (no device proof) empties Alice's shared
	// budget.
	for range 5 {
		_, _ = e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "guess"})
	}
	login := func(pw, proof string) error {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: pw, DeviceProof: proof})
		return err
	}
	wantStatus(t, login("alice-password", ""), codes.ResourceExhausted, "")
	wantStatus(t, login("alice-password", mallory.GetDeviceProof()), codes.ResourceExhausted, "")
	wantStatus(t, login("alice-password", "not-a-proof"), codes.ResourceExhausted, "")
	if err := login("alice-password", aliceProof); err != nil {
		t.Fatalf("owner with her device proof: %v", err)
	}
	// The device's own budget is a budget: a stolen proof buys its holder
	// three guesses, not more, and leaves other devices alone.
	for range 3 {
		wantStatus(t, login("guess", aliceProof), codes.Unauthenticated, "")
	}
	wantStatus(t, login("alice-password", aliceProof), codes.ResourceExhausted, "")

	// A device proof expires: past its lifetime it is no better than none.
	e.clock.Advance(e.srv.Config().DeviceProofTTL + time.Second)
	for range 3 {
		wantStatus(t, login("guess", ""), codes.Unauthenticated, "")
	}
	wantStatus(t, login("alice-password", aliceProof), codes.ResourceExhausted, "")
}

func TestOversizedDeviceProofIsRefused(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password", DeviceProof: string(make([]byte, 4096))})
	wantStatus(t, err, codes.InvalidArgument, "")
}
