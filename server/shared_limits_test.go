package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcdReplicas starts n servers, each with its own connection to one etcd
// prefix (as n `latch serve` processes are), each store wrapped by wrap
// when it is not nil.
func etcdReplicas(t *testing.T, n int, cfg server.Config, wrap func(*etcd.Store) storage.Store) []*env {
	t.Helper()
	return etcdReplicasOn(t, etcdtest.Start(t), n, cfg, wrap)
}

// etcdReplicasOn is etcdReplicas on the etcd member srv, for tests that
// stop or pause it.
func etcdReplicasOn(t *testing.T, srv *etcdtest.Server, n int, cfg server.Config, wrap func(*etcd.Store) storage.Store) []*env {
	t.Helper()
	prefix := fmt.Sprintf("/%s/", t.Name())
	reps := make([]*env, n)
	for i := range n {
		reps[i] = newEnv(t, cfg, func(b storage.Store) storage.Store {
			b.Close()
			st, err := etcd.Open(ctxT(t), etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			if wrap != nil {
				return wrap(st)
			}
			return st
		})
	}
	return reps
}

// loginAcross fires n logins at once, the i-th at replica i mod len(reps),
// and counts the codes they got.
func loginAcross(t *testing.T, reps []*env, n int, req func(i int) *latchv1.LoginRequest) map[codes.Code]int {
	t.Helper()
	var mu sync.Mutex
	got := map[codes.Code]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := reps[i%len(reps)].client.Login(ctxT(t), req(i))
			mu.Lock()
			got[status.Code(err)]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return got
}

// TestFailedLoginBudgetHoldsAcrossReplicas: a hundred concurrent wrong
// passwords for one account, spread over three replicas on one etcd, get
// the account's burst through the password check in total, not three
// times it; an unknown email is charged exactly alike, so the counts
// cannot tell it from an account; and once the budget is spent the right
// password is refused on every replica.
func TestFailedLoginBudgetHoldsAcrossReplicas(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 10, time.Hour
	cfg.PersonLimits.LoginBurst = 1000
	reps := etcdReplicas(t, 3, cfg, nil)
	reps[0].addUser("victim@example.com", "right-password")

	for _, email := range []string{"victim@example.com", "nobody@example.com"} {
		got := loginAcross(t, reps, 100, func(int) *latchv1.LoginRequest {
			return &latchv1.LoginRequest{Email: email, Password: "wrong-guess"}
		})
		if got[codes.Unauthenticated] != 10 || got[codes.ResourceExhausted] != 90 {
			t.Errorf("%s: 100 concurrent wrong logins over 3 replicas: %v, want exactly 10 password checks (UNAUTHENTICATED) and 90 RESOURCE_EXHAUSTED", email, got)
		}
	}
	for i, r := range reps {
		_, err := r.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "victim@example.com", Password: "right-password"})
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("replica %d: right password after the shared budget was spent: %v, want RESOURCE_EXHAUSTED", i, err)
		}
		wantRetryHint(t, err)
	}
}

// TestLoginRateHoldsAcrossReplicas: the per-account login rate (right or
// wrong passwords) is one budget for all replicas too.
func TestLoginRateHoldsAcrossReplicas(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.LoginBurst, cfg.PersonLimits.LoginRefill = 6, time.Hour
	cfg.PersonLimits.MaxSessions = 100
	reps := etcdReplicas(t, 3, cfg, nil)
	reps[0].addUser("busy@example.com", "right-password")
	got := loginAcross(t, reps, 30, func(int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: "busy@example.com", Password: "right-password"}
	})
	if got[codes.OK] != 6 || got[codes.ResourceExhausted] != 24 {
		t.Fatalf("30 concurrent right logins over 3 replicas: %v, want exactly 6 OK and 24 RESOURCE_EXHAUSTED", got)
	}
}

// TestRightPasswordRefundsSharedBudget: a right password gives back the
// token its attempt took from the shared failure budget, whichever replica
// it reached, so a person who mistyped a few times keeps the rest of the
// budget everywhere, and no more than the rest.
func TestRightPasswordRefundsSharedBudget(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 4, time.Hour
	reps := etcdReplicas(t, 3, cfg, nil)
	reps[0].addUser("typo@example.com", "right-password")
	login := func(i int, pw string) error {
		_, err := reps[i].client.Login(ctxT(t), &latchv1.LoginRequest{Email: "typo@example.com", Password: pw})
		return err
	}
	for i := range 3 {
		wantStatus(t, login(i, "wrong"), codes.Unauthenticated, "")
	}
	if err := login(1, "right-password"); err != nil {
		t.Fatalf("right password with one failure left: %v", err)
	}
	wantStatus(t, login(2, "wrong"), codes.Unauthenticated, "")   // the fourth failure: still in the budget
	wantStatus(t, login(0, "wrong"), codes.ResourceExhausted, "") // the fifth: over it
	wantStatus(t, login(1, "right-password"), codes.ResourceExhausted, "")
}

// flakyLimits is the real etcd store whose shared buckets cannot be
// reached while fail is set, as when etcd loses quorum between the user
// lookup and the charge.
type flakyLimits struct {
	*etcd.Store
	fail, failReturn atomic.Bool
}

func (f *flakyLimits) TakeTokens(ctx context.Context, now time.Time, bs ...storage.Bucket) ([]string, time.Duration, error) {
	if f.fail.Load() {
		return nil, 0, fmt.Errorf("etcd: take tokens: %w: etcdserver: request timed out", storage.ErrUnavailable)
	}
	return f.Store.TakeTokens(ctx, now, bs...)
}

func (f *flakyLimits) ReturnToken(ctx context.Context, now time.Time, b storage.Bucket) error {
	if f.failReturn.Load() {
		return fmt.Errorf("etcd: return token: %w: etcdserver: request timed out", storage.ErrUnavailable)
	}
	return f.Store.ReturnToken(ctx, now, b)
}

// TestSharedLimitUnreachableFailsClosed: when the shared budget cannot be
// charged the login is answered UNAVAILABLE without checking the password
// (never let through unlimited), and what the attempt took from the
// address's budget is given back, so the outage costs the client nothing.
func TestSharedLimitUnreachableFailsClosed(t *testing.T) {
	cfg := baseConfig()
	cfg.AddressBurst, cfg.AddressRefill = 1, time.Hour
	var f *flakyLimits
	reps := etcdReplicas(t, 1, cfg, func(st *etcd.Store) storage.Store { f = &flakyLimits{Store: st}; return f })
	e := reps[0]
	e.addUser("alice@example.com", "alice-password")
	f.fail.Store(true)
	for _, pw := range []string{"wrong", "alice-password"} {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: pw})
		wantStatus(t, err, codes.Unavailable, "service unavailable; retry later")
	}
	f.fail.Store(false)
	if _, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"}); err != nil {
		t.Fatalf("login once the budget is reachable again: %v (the failed attempts kept the address's only token?)", err)
	}
}

// wantRetryDelay fails t unless err carries a RetryInfo of exactly d.
func wantRetryDelay(t *testing.T, err error, d time.Duration) {
	t.Helper()
	for _, detail := range status.Convert(err).Details() {
		if ri, ok := detail.(*errdetails.RetryInfo); ok {
			if got := ri.GetRetryDelay().AsDuration(); got != d {
				t.Errorf("retry delay = %v, want %v", got, d)
			}
			return
		}
	}
	t.Errorf("%v: no RetryInfo detail, want a retry delay of %v", err, d)
}

// stallingLimits is the real etcd store whose member freezes (SIGSTOP)
// when the first shared charge arrives, once every login of the test has
// looked its account up: the charges then meet a stalled etcd, as when a
// member freezes or quorum is lost between the lookup and the charge.
type stallingLimits struct {
	*etcd.Store
	freeze  func()
	logins  int32        // the lookups to wait for
	lookups atomic.Int32 // counted once armed
	armed   atomic.Bool
	looked  chan struct{} // closed at the logins-th lookup
	once    sync.Once
}

func (s *stallingLimits) GetUserByEmail(ctx context.Context, email string) (storage.User, error) {
	u, err := s.Store.GetUserByEmail(ctx, email)
	if s.armed.Load() && s.lookups.Add(1) == s.logins {
		close(s.looked)
	}
	return u, err
}

func (s *stallingLimits) TakeTokens(ctx context.Context, now time.Time, bs ...storage.Bucket) ([]string, time.Duration, error) {
	if s.armed.Load() {
		select {
		case <-s.looked:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		s.once.Do(s.freeze)
	}
	return s.Store.TakeTokens(ctx, now, bs...)
}

// TestStalledSharedLimitsAreUnavailable: when etcd stalls under logins
// that hold every hashing slot while they charge the shared budgets, every
// login (those holding a slot and those queued for one) is answered
// UNAVAILABLE with a retry hint, as any storage outage is, and none is shed
// as busy (RESOURCE_EXHAUSTED): the charge gives its slot back well inside
// the hasher's queue timeout. Once etcd answers again, logins succeed.
func TestStalledSharedLimitsAreUnavailable(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.LoginBurst, cfg.PersonLimits.FailureBurst, cfg.AddressBurst = 1000, 1000, 1000
	srv := etcdtest.Start(t)
	t.Cleanup(srv.Resume)
	const logins = 8 // twice the harness's hashing concurrency: half of them queue for a slot
	stall := &stallingLimits{freeze: srv.Pause, logins: logins, looked: make(chan struct{})}
	e := etcdReplicasOn(t, srv, 1, cfg, func(st *etcd.Store) storage.Store { stall.Store = st; return stall })[0]
	e.addUser("alice@example.com", "alice-password")

	stall.armed.Store(true)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range logins {
		wg.Go(func() {
			_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	got := map[codes.Code]int{}
	for _, err := range errs {
		got[status.Code(err)]++
		if status.Code(err) == codes.Unavailable {
			wantStatus(t, err, codes.Unavailable, "service unavailable; retry later")
			wantRetryDelay(t, err, time.Second)
		}
	}
	if got[codes.Unavailable] != logins {
		t.Errorf("%d right logins while etcd stalls: %v, want %d UNAVAILABLE (none RESOURCE_EXHAUSTED: the store's outage is not the hasher's load)", logins, got, logins)
	}

	srv.Resume()
	if _, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"}); err != nil {
		t.Fatalf("login once etcd answers again: %v", err)
	}
}

// TestSessionCapHoldsAcrossReplicas: concurrent right logins of one person
// over three replicas leave at most the cap of live sessions, and the
// newest session survives.
func TestSessionCapHoldsAcrossReplicas(t *testing.T) {
	cfg := baseConfig()
	// The failure budget also bounds how many attempts may be in flight at
	// once (each holds a token until its right password gives it back), so
	// it is raised with the login rate: this test is about the cap.
	cfg.PersonLimits.MaxSessions, cfg.PersonLimits.LoginBurst, cfg.PersonLimits.FailureBurst = 3, 1000, 1000
	reps := etcdReplicas(t, 3, cfg, nil)
	u := reps[0].addUser("many@example.com", "right-password")
	got := loginAcross(t, reps, 30, func(int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: "many@example.com", Password: "right-password"}
	})
	if got[codes.OK] != 30 {
		t.Fatalf("30 concurrent right logins: %v, want 30 OK", got)
	}
	all, err := reps[1].store.ListUserSessions(ctxT(t), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, s := range all {
		if s.Live(reps[1].clock.Now()) {
			live++
		}
	}
	t.Logf("30 concurrent logins over 3 replicas, cap 3: %d live sessions of %d stored", live, len(all))
	if live < 1 || live > 3 {
		t.Fatalf("%d live sessions of %d after 30 concurrent logins over 3 replicas, want 1 to 3 (the cap)", live, len(all))
	}
}

// TestSharedRefundUnreachableLogsIn: a right password whose failure token
// cannot be given back (etcd lost between the charge and the refund) still
// logs in; the lost refund is logged, and it costs the account exactly the
// one token.
func TestSharedRefundUnreachableLogsIn(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 2, time.Hour
	var f *flakyLimits
	reps := etcdReplicas(t, 1, cfg, func(st *etcd.Store) storage.Store { f = &flakyLimits{Store: st}; return f })
	e := reps[0]
	e.addUser("alice@example.com", "alice-password")
	f.failReturn.Store(true)
	if _, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"}); err != nil {
		t.Fatalf("right password with the refund unreachable: %v, want a login", err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"event":"login_refund_failed"`) {
		t.Errorf("the lost refund is not logged:\n%s", logs)
	}
	f.failReturn.Store(false)
	login := func(pw string) error {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: pw})
		return err
	}
	wantStatus(t, login("wrong"), codes.Unauthenticated, "")
	wantStatus(t, login("wrong"), codes.ResourceExhausted, "")
}

// TestDeviceBudgetHoldsAcrossReplicas: a device proof issued by one
// replica is honoured by the others, its own failure budget is one budget
// across them, and it keeps its owner in while guessers without it have
// spent the account's budget on every replica.
func TestDeviceBudgetHoldsAcrossReplicas(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 5, time.Hour
	cfg.PersonLimits.LoginBurst = 1000
	cfg.DeviceBurst, cfg.DeviceRefill = 5, time.Hour
	reps := etcdReplicas(t, 3, cfg, nil)
	reps[0].addUser("owner@example.com", "right-password")
	resp, err := reps[0].client.Login(ctxT(t), &latchv1.LoginRequest{Email: "owner@example.com", Password: "right-password"})
	if err != nil {
		t.Fatal(err)
	}
	proof := resp.GetDeviceProof()

	got := loginAcross(t, reps, 30, func(int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: "owner@example.com", Password: "wrong-guess"}
	})
	if got[codes.Unauthenticated] != 5 || got[codes.ResourceExhausted] != 25 {
		t.Fatalf("30 concurrent wrong logins without the proof over 3 replicas: %v, want exactly 5 UNAUTHENTICATED and 25 RESOURCE_EXHAUSTED", got)
	}
	for i, r := range reps {
		if _, err := r.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "owner@example.com", Password: "right-password", DeviceProof: proof}); err != nil {
			t.Fatalf("replica %d: the owner with its device proof, the account's budget spent: %v", i, err)
		}
	}
	got = loginAcross(t, reps, 30, func(int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: "owner@example.com", Password: "wrong-guess", DeviceProof: proof}
	})
	if got[codes.Unauthenticated] != 5 || got[codes.ResourceExhausted] != 25 {
		t.Fatalf("30 concurrent wrong logins with a stolen proof over 3 replicas: %v, want exactly 5 UNAUTHENTICATED and 25 RESOURCE_EXHAUSTED", got)
	}
}

// TestShedLoginsWriteNoSharedBuckets: a login the hasher sheds (every
// hashing slot busy for the queue timeout) never charges the shared
// budgets, so a flood of attempts on fresh emails, each from an address
// with budget left, cannot write etcd rows faster than passwords are
// checked.
func TestShedLoginsWriteNoSharedBuckets(t *testing.T) {
	var st *etcd.Store
	reps := etcdReplicas(t, 1, baseConfig(), func(s *etcd.Store) storage.Store { st = s; return s })
	e := reps[0]
	// Hold every hashing slot, as a flood of slow checks would.
	for {
		ctx, cancel := context.WithTimeout(ctxT(t), 50*time.Millisecond)
		slot, err := e.hasher.Reserve(ctx)
		cancel()
		if err != nil {
			break
		}
		t.Cleanup(slot.Release)
	}
	got := loginAcross(t, reps, 40, func(i int) *latchv1.LoginRequest {
		return &latchv1.LoginRequest{Email: fmt.Sprintf("fresh-%d@example.com", i), Password: "some-password"}
	})
	if got[codes.ResourceExhausted] != 40 {
		t.Fatalf("logins with every hashing slot held = %v, want 40 RESOURCE_EXHAUSTED", got)
	}
	resp, err := st.Client().Get(ctxT(t), st.Prefix()+"limits/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("40 shed logins left %d bucket rows in etcd, want 0", resp.Count)
	}
}
