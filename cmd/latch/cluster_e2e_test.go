package main

// Three `latch serve` replicas on a three-member etcd cluster, driven by
// concurrent clients while etcd members and a replica fail.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
)

// recoveryLimit is how long after the cluster has a leader again (or after
// a replica died) every remaining replica must serve again. It is a
// liveness bound, far above what is measured (logged by the tests and
// given in docs/replicas.md), not a speed assertion.
const recoveryLimit = 30 * time.Second

// codeLog counts the gRPC codes clients saw, per RPC and per second since
// the test began, and the moments the test broke something, so that a
// failure explains itself.
type codeLog struct {
	start time.Time
	mu    sync.Mutex
	n     map[string]map[int]map[codes.Code]int // RPC → second → code → count
	marks []string
}

func newCodeLog() *codeLog {
	return &codeLog{start: time.Now(), n: map[string]map[int]map[codes.Code]int{}}
}

// add records the outcome of one call of rpc.
func (l *codeLog) add(rpc string, err error) {
	sec := int(time.Since(l.start) / time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[rpc] == nil {
		l.n[rpc] = map[int]map[codes.Code]int{}
	}
	if l.n[rpc][sec] == nil {
		l.n[rpc][sec] = map[codes.Code]int{}
	}
	l.n[rpc][sec][status.Code(err)]++
}

// mark records what the test did, and when.
func (l *codeLog) mark(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.marks = append(l.marks, fmt.Sprintf("%6.1fs  ", time.Since(l.start).Seconds())+fmt.Sprintf(format, args...))
}

// total returns how often rpc ("" for any) answered code.
func (l *codeLog) total(rpc string, code codes.Code) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for r, secs := range l.n {
		if rpc == "" || r == rpc {
			for _, c := range secs {
				n += c[code]
			}
		}
	}
	return n
}

// String is the log: the marks, then one line per second and RPC.
func (l *codeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	b.WriteString("what the test did:\n")
	for _, m := range l.marks {
		b.WriteString("  " + m + "\n")
	}
	b.WriteString("what the clients saw (second: RPC code=count ...):\n")
	last := 0
	for _, secs := range l.n {
		for s := range secs {
			last = max(last, s)
		}
	}
	rpcs := make([]string, 0, len(l.n))
	for r := range l.n {
		rpcs = append(rpcs, r)
	}
	sort.Strings(rpcs)
	for s := 0; s <= last; s++ {
		fmt.Fprintf(&b, "  %3ds", s)
		for _, r := range rpcs {
			c := l.n[r][s]
			if len(c) == 0 {
				continue
			}
			cs := make([]codes.Code, 0, len(c))
			for code := range c {
				cs = append(cs, code)
			}
			slices.Sort(cs)
			fmt.Fprintf(&b, "  %s", r)
			for _, code := range cs {
				fmt.Fprintf(&b, " %s=%d", code, c[code])
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// clusterReplicas starts one `latch serve` per name on every endpoint of
// srv under prefix, with the default configuration plus extra.
func clusterReplicas(t *testing.T, ctx context.Context, srv etcdEndpoints, prefix string, extra []string, names ...string) []*replica {
	t.Helper()
	var out []*replica
	for _, n := range names {
		out = append(out, clusterReplica(t, ctx, srv, prefix, extra, n))
	}
	return out
}

func clusterReplica(t *testing.T, ctx context.Context, srv etcdEndpoints, prefix string, extra []string, name string) *replica {
	t.Helper()
	p := startLatch(t, ctx, "", append(etcdArgs(srv, prefix), extra...)...)
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &replica{name: name, proc: p, cli: latchv1.NewAuthServiceClient(conn)}
}

// transient reports an answer a client should retry: the service could not
// answer now, or not within the client's deadline.
func transient(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

// callTimeout is the deadline each client call of the load sets.
const callTimeout = 3 * time.Second

// cluster is what the load workers share: the replicas, the service
// credential and the record of what they saw.
type cluster struct {
	t    *testing.T
	reps []*replica
	svc  string // Bearer credential with the introspect role
	log  *codeLog

	mu       sync.Mutex
	revoked  []*latchv1.TokenPair // acknowledged revocations
	problems []string

	internal atomic.Int64
}

func (c *cluster) problem(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, fmt.Sprintf("%6.1fs  ", time.Since(c.log.start).Seconds())+fmt.Sprintf(format, args...))
}

// call runs one RPC on replica i with the call deadline, records its code,
// and flags any answer that is never acceptable from a replica whose store
// fails: INTERNAL, UNKNOWN, or UNAVAILABLE without a retry hint (one from
// a replica that is down, which no Latch process sent, is not flagged).
func (c *cluster) call(ctx context.Context, rpc string, i int, fn func(context.Context, latchv1.AuthServiceClient) error) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	r := c.reps[i%len(c.reps)]
	err := fn(cctx, r.cli)
	if ctx.Err() != nil {
		return ctx.Err() // the load is over: not an answer
	}
	c.log.add(rpc, err)
	switch st, _ := status.FromError(err); st.Code() {
	case codes.Internal, codes.Unknown:
		c.internal.Add(1)
		c.problem("%s on %s: %v", rpc, r.name, err)
	case codes.Unavailable:
		if st.Message() == "service unavailable; retry later" && retryDelay(st) <= 0 {
			c.problem("%s on %s: UNAVAILABLE without a retry hint", rpc, r.name)
		}
	}
	return err
}

// retryDelay is the RetryInfo delay st carries, 0 if none.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// login logs email in, retrying on the next replica after a transient
// answer or when the replica sheds password work (RESOURCE_EXHAUSTED with
// a retry hint, which many clients logging in at once on a small machine
// meet).
func (c *cluster) login(ctx context.Context, i int, email, pw, aud string) (*latchv1.TokenPair, int, error) {
	for ; ; i++ {
		var resp *latchv1.LoginResponse
		err := c.call(ctx, "Login", i, func(ctx context.Context, cli latchv1.AuthServiceClient) (err error) {
			resp, err = cli.Login(ctx, &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
			return err
		})
		switch {
		case err == nil:
			return resp.GetTokens(), i, nil
		case !transient(err) && status.Code(err) != codes.ResourceExhausted:
			return nil, i, err
		}
		if !nap(ctx, 100*time.Millisecond) {
			return nil, i, ctx.Err()
		}
	}
}

// introspect asks replica i about tok with the service credential.
func (c *cluster) introspect(ctx context.Context, i int, tok string) (*latchv1.IntrospectResponse, error) {
	var resp *latchv1.IntrospectResponse
	err := c.call(ctx, "Introspect", i, func(ctx context.Context, cli latchv1.AuthServiceClient) (err error) {
		resp, err = cli.Introspect(metadata.AppendToOutgoingContext(ctx, "authorization", c.svc), &latchv1.IntrospectRequest{Token: tok})
		return err
	})
	return resp, err
}

// nap waits d, and reports false if ctx ended first.
func nap(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// chain keeps one session alive as a well-behaved client does: Refresh
// with the current token; after UNAVAILABLE or a missed deadline, the same
// token again on the next replica (a replica that is down moves its
// clients). A session that ends (UNAUTHENTICATED) is counted and replaced
// by a new login.
func (c *cluster) chain(ctx context.Context, home int, email, pw string, ended *atomic.Int64, rotations *atomic.Int64) {
	tp, i, err := c.login(ctx, home, email, pw, "")
	retries := 0 // of the current token
	for err == nil {
		var resp *latchv1.RefreshResponse
		err = c.call(ctx, "Refresh", i, func(ctx context.Context, cli latchv1.AuthServiceClient) (err error) {
			resp, err = cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
			return err
		})
		switch {
		case err == nil:
			tp, retries = resp.GetTokens(), 0
			rotations.Add(1)
			if !nap(ctx, 50*time.Millisecond) {
				return
			}
		case transient(err):
			i++ // retry the same token, on the next replica
			retries++
			err = nil
			if !nap(ctx, 200*time.Millisecond) {
				return
			}
		case status.Code(err) == codes.Unauthenticated:
			ended.Add(1)
			c.problem("session of %s ended after %d retries of its token: %v", email, retries, err)
			tp, i, err = c.login(ctx, i, email, pw, "")
			retries = 0
		}
	}
	if ctx.Err() == nil {
		c.problem("refresh chain of %s stopped: %v", email, err)
	}
}

// revoker logs in, revokes the session by its refresh token (retrying
// transient answers), records every acknowledged revocation and checks at
// once, on another replica, that its access token is not active.
func (c *cluster) revoker(ctx context.Context, home int, email, pw string) {
	for i := home; ctx.Err() == nil; i++ {
		tp, j, err := c.login(ctx, i, email, pw, "")
		if err != nil {
			if ctx.Err() == nil {
				c.problem("revoker login: %v", err)
			}
			return
		}
		for j++; ; j++ {
			err = c.call(ctx, "Revoke", j, func(ctx context.Context, cli latchv1.AuthServiceClient) error {
				_, err := cli.Revoke(ctx, &latchv1.RevokeRequest{Token: tp.GetRefreshToken()})
				return err
			})
			if err == nil || !transient(err) || !nap(ctx, 100*time.Millisecond) {
				break
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				c.problem("Revoke: %v", err)
			}
			return
		}
		c.mu.Lock()
		c.revoked = append(c.revoked, tp)
		c.mu.Unlock()
		if resp, err := c.introspect(ctx, j+1, tp.GetAccessToken()); err == nil && resp.GetActive() {
			c.problem("access token of session %s is active on %s after its revocation was acknowledged", tp.GetSessionId(), c.reps[(j+1)%len(c.reps)].name)
		}
	}
}

// racer presents one refresh token on every replica at once, over and
// over: however many of the exchanges succeed (a retry within the reuse
// window also does), exactly one successor may be live, which Introspect
// (a linearizable read of the session) tells.
func (c *cluster) racer(ctx context.Context, email, pw string, races *atomic.Int64) {
	tp, _, err := c.login(ctx, 0, email, pw, "")
	for err == nil && ctx.Err() == nil {
		const n = 6
		errs := make([]error, n)
		got := make([]*latchv1.TokenPair, n)
		var wg sync.WaitGroup
		for k := range n {
			wg.Go(func() {
				var resp *latchv1.RefreshResponse
				errs[k] = c.call(ctx, "Refresh", k, func(ctx context.Context, cli latchv1.AuthServiceClient) (err error) {
					resp, err = cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
					return err
				})
				got[k] = resp.GetTokens()
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		var won []*latchv1.TokenPair
		definite := true
		for k, err := range errs {
			switch {
			case err == nil:
				won = append(won, got[k])
			case transient(err):
				definite = false
			case status.Code(err) != codes.Unauthenticated:
				c.problem("racing Refresh: %v", err)
			}
		}
		// Which successor is current, asked until every answer is known.
		var live []*latchv1.TokenPair
		for k, w := range won {
			for try := k; ; try++ {
				resp, err := c.introspect(ctx, try, w.GetRefreshToken())
				if err == nil {
					if resp.GetActive() {
						live = append(live, w)
					}
					break
				}
				if !transient(err) || !nap(ctx, 100*time.Millisecond) {
					return
				}
			}
		}
		switch {
		case len(live) > 1:
			c.problem("%d successors of one refresh token are live", len(live))
		case definite && len(won) > 0 && len(live) != 1:
			c.problem("%d exchanges of one token succeeded and none of their successors is live", len(won))
		}
		races.Add(1)
		if len(live) == 1 {
			tp = live[0]
		} else { // the live successor went to a reply that was lost
			tp, _, err = c.login(ctx, 0, email, pw, "")
		}
	}
}

// introspector asks every replica in turn about a live access token.
func (c *cluster) introspector(ctx context.Context, home int, tok string) {
	for i := home; ctx.Err() == nil; i++ {
		resp, err := c.introspect(ctx, i, tok)
		if err == nil && !resp.GetActive() {
			c.problem("a live access token is inactive on %s", c.reps[i%len(c.reps)].name)
		}
		nap(ctx, 20*time.Millisecond)
	}
}

// waitServing waits until every replica answers a Login (a quorum write)
// and an Introspect (a quorum read), and returns how long that took from
// since.
func (c *cluster) waitServing(ctx context.Context, reps []*replica, since time.Time, email, pw string) time.Duration {
	c.t.Helper()
	for _, r := range reps {
		for {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			resp, err := r.cli.Login(cctx, &latchv1.LoginRequest{Email: email, Password: pw})
			if err == nil {
				var ir *latchv1.IntrospectResponse
				ir, err = r.cli.Introspect(metadata.AppendToOutgoingContext(cctx, "authorization", c.svc),
					&latchv1.IntrospectRequest{Token: resp.GetTokens().GetAccessToken()})
				if err == nil && !ir.GetActive() {
					err = fmt.Errorf("fresh token inactive")
				}
			}
			cancel()
			if err == nil {
				break
			}
			if time.Since(since) > recoveryLimit {
				c.t.Fatalf("%s does not serve %v after the cluster recovered: %v\n%s", r.name, recoveryLimit, err, c.log)
			}
			nap(ctx, 50*time.Millisecond)
		}
	}
	return time.Since(since)
}

// TestClusterFailover: three replicas, each given all three endpoints of
// a three-member etcd cluster, under concurrent Login, Refresh chains,
// racing refreshes, Revoke and Introspect, while the test kills the etcd
// leader (and restarts it), pauses a follower for longer than the election
// timeout, pauses a member for longer than the etcd clients take to give
// up on it, kills the leader and freezes a follower at once (no quorum for
// 12 s), and kills a replica. Throughout: no INTERNAL, every
// UNAVAILABLE carries a retry hint, no session of a client that retries
// after UNAVAILABLE or a missed deadline ends, of any refresh race at most
// one successor is live, and an acknowledged revocation is never reported
// active. Afterwards every replica (the killed one restarted) refuses every
// acknowledged revocation; after each fault every replica serves again
// within recoveryLimit of the cluster having a leader (measured, logged).
// LATCH_SOAK=1 makes each phase last longer.
func TestClusterFailover(t *testing.T) {
	soak := os.Getenv("LATCH_SOAK") == "1"
	ctx := testCtx(t, 5*time.Minute)
	ec := etcdtest.StartCluster(t, 3)
	const prefix = "/latch-cluster/"
	const pw = "cluster-password-1"
	const chains = 12
	var wg sync.WaitGroup
	users := []string{"svc@example.com", "probe@example.com", "racer@example.com", "revoker0@example.com", "revoker1@example.com"}
	for i := range chains {
		users = append(users, fmt.Sprintf("chain%d@example.com", i))
	}
	for _, u := range users {
		role := "user"
		if u == "svc@example.com" {
			role = server.RoleIntrospect
		}
		wg.Go(func() { etcdUserAdd(t, ctx, ec, prefix, u, pw, role) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// --probe-burst: the racing refreshes send losing (invalid) tokens
	// from one address; the per-address probe limit is tested elsewhere.
	extra := []string{"--probe-burst", "100000"}
	reps := clusterReplicas(t, ctx, ec, prefix, extra, "A", "B", "C")
	svcResp, err := reps[0].cli.Login(ctx, &latchv1.LoginRequest{Email: "svc@example.com", Password: pw, Audience: "https://latch.test"})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, reps: reps, svc: "Bearer " + svcResp.GetTokens().GetAccessToken(), log: newCodeLog()}
	live, err := reps[1].cli.Login(ctx, &latchv1.LoginRequest{Email: "probe@example.com", Password: pw})
	if err != nil {
		t.Fatal(err)
	}

	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var ended, rotations, races atomic.Int64
	var workers sync.WaitGroup
	for i := range chains {
		workers.Go(func() { c.chain(load, i, fmt.Sprintf("chain%d@example.com", i), pw, &ended, &rotations) })
	}
	workers.Go(func() { c.racer(load, "racer@example.com", pw, &races) })
	for i := range 2 {
		workers.Go(func() { c.revoker(load, i, fmt.Sprintf("revoker%d@example.com", i), pw) })
		workers.Go(func() { c.introspector(load, i, live.GetTokens().GetAccessToken()) })
	}
	hold := func(d time.Duration) {
		if soak {
			d *= 4
		}
		nap(ctx, d)
	}
	recovered := map[string]time.Duration{}
	serving := func(what string, reps []*replica, since time.Time) {
		d := c.waitServing(ctx, reps, since, "probe@example.com", pw)
		recovered[what] = d
		c.log.mark("every replica serves again, %v after %s", d.Round(time.Millisecond), what)
	}
	hold(2 * time.Second)

	// 1. The leader dies; a new one is elected; the old member comes back.
	leader, err := ec.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ec.Members[leader].Crash()
	c.log.mark("etcd leader m%d killed (SIGKILL)", leader)
	next, err := ec.WaitLeader(ctx, leader)
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Now()
	c.log.mark("m%d leads", next)
	serving("the new leader was found", reps, elected)
	hold(2 * time.Second)
	ec.Members[leader].Restart(t)
	c.log.mark("m%d restarted", leader)
	hold(time.Second)

	// 2. A follower freezes for longer than the election timeout (1s).
	if next, err = ec.WaitLeader(ctx, -1); err != nil {
		t.Fatal(err)
	}
	follower := (next + 1) % 3
	ec.Members[follower].Pause()
	c.log.mark("follower m%d paused (SIGSTOP)", follower)
	hold(3 * time.Second)
	ec.Members[follower].Resume()
	c.log.mark("m%d resumed", follower)
	if _, err := ec.WaitLeader(ctx, -1); err != nil {
		t.Fatal(err)
	}
	serving("the follower resumed", reps, time.Now())
	hold(time.Second)

	// 3. A member every replica's etcd client talks to (the client spreads
	// requests over all the endpoints it is given) freezes for longer than
	// the clients take to give up on it: their requests must move to the
	// other two members while it is still frozen.
	if next, err = ec.WaitLeader(ctx, -1); err != nil {
		t.Fatal(err)
	}
	frozen := (next + 2) % 3
	ec.Members[frozen].Pause()
	paused := time.Now()
	c.log.mark("member m%d paused (SIGSTOP) while every replica uses it", frozen)
	serving("m"+fmt.Sprint(frozen)+" was paused", reps, paused)
	// Serving once is not enough: every request must avoid the member.
	moved := time.Now()
	for time.Since(moved) < 3*time.Second {
		if time.Since(paused) > recoveryLimit {
			t.Fatalf("replicas still fail requests %v after m%d froze\n%s", recoveryLimit, frozen, c.log)
		}
		before := c.log.total("", codes.Unavailable) + c.log.total("", codes.DeadlineExceeded)
		nap(ctx, time.Second)
		if c.log.total("", codes.Unavailable)+c.log.total("", codes.DeadlineExceeded) > before {
			moved = time.Now()
		}
	}
	recovered["m"+fmt.Sprint(frozen)+" was paused (no failed request for 3s)"] = moved.Sub(paused)
	c.log.mark("no request failed for 3s: the clients moved off m%d %v after it froze", frozen, moved.Sub(paused).Round(time.Millisecond))
	hold(time.Second)
	ec.Members[frozen].Resume()
	c.log.mark("m%d resumed", frozen)
	hold(time.Second)

	// 4. Quorum lost under load: the leader dies and a follower freezes at
	// once. Refreshes committed (or about to be) when it began are answered
	// UNAVAILABLE; their clients retry until the follower is back.
	if next, err = ec.WaitLeader(ctx, -1); err != nil {
		t.Fatal(err)
	}
	stalled := (next + 1) % 3
	ec.Members[next].Crash()
	ec.Members[stalled].Pause()
	c.log.mark("leader m%d killed and follower m%d paused: no quorum", next, stalled)
	hold(12 * time.Second)
	ec.Members[stalled].Resume()
	c.log.mark("m%d resumed", stalled)
	if _, err := ec.WaitLeader(ctx, -1); err != nil {
		t.Fatal(err)
	}
	serving("quorum came back", reps, time.Now())
	ec.Members[next].Restart(t)
	c.log.mark("m%d restarted", next)
	hold(time.Second)

	// 5. A replica dies mid-load; its clients move to the others.
	dead := reps[2]
	_ = dead.proc.stop(t, ctx, syscall.SIGKILL)
	killed := time.Now()
	c.log.mark("replica %s killed (SIGKILL)", dead.name)
	serving("replica "+dead.name+" died", reps[:2], killed)
	hold(2 * time.Second)

	stopLoad()
	workers.Wait()
	c.log.mark("load stopped")

	// Every replica, the dead one restarted, refuses every acknowledged
	// revocation: Introspect of its access token and Refresh of its
	// refresh token.
	final := append(reps[:2:2], clusterReplica(t, ctx, ec, prefix, extra, "C (restarted)"))
	c.reps = final
	for _, tp := range c.revoked {
		for i, r := range final {
			for {
				resp, err := c.introspect(ctx, i, tp.GetAccessToken())
				if err == nil {
					if resp.GetActive() {
						t.Errorf("%s: access token of revoked session %s is active", r.name, tp.GetSessionId())
					}
					break
				}
				if !transient(err) || ctx.Err() != nil {
					t.Fatalf("Introspect on %s: %v", r.name, err)
				}
			}
			_, err := r.cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s: Refresh of revoked session %s = %v, want UNAUTHENTICATED", r.name, tp.GetSessionId(), err)
			}
		}
	}

	t.Logf("%d rotations by %d refresh chains, %d refresh races, %d acknowledged revocations", rotations.Load(), chains, races.Load(), len(c.revoked))
	for what, d := range recovered {
		t.Logf("recovery: every replica served again %v after %s", d.Round(time.Millisecond), what)
	}
	t.Logf("\n%s", c.log)
	for _, p := range c.problems {
		t.Error(p)
	}
	if n := ended.Load(); n > 0 {
		t.Errorf("%d sessions of clients that retried after UNAVAILABLE or a missed deadline ended", n)
	}
	if n := c.internal.Load(); n > 0 {
		t.Errorf("%d answers were INTERNAL or UNKNOWN", n)
	}
	if len(c.revoked) < 10 || rotations.Load() < 100 || races.Load() < 5 {
		t.Errorf("too little load to prove anything: %d revocations, %d rotations, %d races", len(c.revoked), rotations.Load(), races.Load())
	}
	for _, r := range final {
		checkLogsHoldNoSecrets(t, r.proc.logText(), pw)
	}
}

// TestClusterQuorumLoss: with two of three members frozen, or killed, no
// replica answers from what it last knew: a revocation check (Introspect
// of an access token, revoked or not) and a Refresh answer UNAVAILABLE
// with a retry hint, never "active" or a new token; /readyz reports 503;
// the public keys are still served (from memory: they are not revocation
// state). When the members come back, the replica serves again within
// recoveryLimit (measured, logged).
func TestClusterQuorumLoss(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	ec := etcdtest.StartCluster(t, 3)
	const prefix = "/latch-quorum/"
	const pw = "quorum-password-1"
	etcdUserAdd(t, ctx, ec, prefix, "alice@example.com", pw, "user")
	etcdUserAdd(t, ctx, ec, prefix, "svc@example.com", pw, server.RoleIntrospect)
	r := clusterReplica(t, ctx, ec, prefix, []string{"--etcd-request-timeout", "2s"}, "A")
	login := func(email, aud string) *latchv1.TokenPair {
		t.Helper()
		resp, err := r.cli.Login(ctx, &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
		if err != nil {
			t.Fatalf("Login %s: %v", email, err)
		}
		return resp.GetTokens()
	}
	svc := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+login("svc@example.com", "https://latch.test").GetAccessToken())

	for _, mode := range []string{"paused", "killed"} {
		t.Run(mode, func(t *testing.T) {
			live, revoked := login("alice@example.com", ""), login("alice@example.com", "")
			if _, err := r.cli.Revoke(ctx, &latchv1.RevokeRequest{Token: revoked.GetRefreshToken()}); err != nil {
				t.Fatal(err)
			}
			// Both tokens verified (and cached) before the outage.
			for _, tok := range []string{live.GetAccessToken(), revoked.GetAccessToken()} {
				if _, err := r.cli.Introspect(svc, &latchv1.IntrospectRequest{Token: tok}); err != nil {
					t.Fatal(err)
				}
			}
			leader, err := ec.Leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			down := []int{leader, (leader + 1) % 3}
			for _, m := range down {
				if mode == "paused" {
					ec.Members[m].Pause()
				} else {
					ec.Members[m].Crash()
				}
			}
			wantUnavailable := func(what string, err error) {
				t.Helper()
				st, _ := status.FromError(err)
				if st.Code() != codes.Unavailable || retryDelay(st) <= 0 {
					t.Errorf("%s without quorum = %v, want UNAVAILABLE with a retry hint", what, err)
				}
			}
			for name, tok := range map[string]string{"live": live.GetAccessToken(), "revoked": revoked.GetAccessToken()} {
				cctx, cancel := context.WithTimeout(svc, 20*time.Second)
				resp, err := r.cli.Introspect(cctx, &latchv1.IntrospectRequest{Token: tok})
				cancel()
				if resp.GetActive() {
					t.Errorf("Introspect of the %s token without quorum: active", name)
				}
				wantUnavailable("Introspect of the "+name+" token", err)
			}
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			_, err = r.cli.Refresh(cctx, &latchv1.RefreshRequest{RefreshToken: live.GetRefreshToken()})
			cancel()
			wantUnavailable("Refresh", err)
			if _, err := r.cli.GetJWKS(ctx, &latchv1.GetJWKSRequest{}); err != nil {
				t.Errorf("GetJWKS without quorum: %v", err)
			}
			if code := readyz(t, *r); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz without quorum = %d, want 503", code)
			}

			for _, m := range down {
				if mode == "paused" {
					ec.Members[m].Resume()
				} else { // the first restarted member and the survivor are a quorum
					ec.Members[m].Restart(t)
				}
			}
			if _, err := ec.WaitLeader(ctx, -1); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			for {
				cctx, cancel := context.WithTimeout(svc, callTimeout)
				resp, err := r.cli.Introspect(cctx, &latchv1.IntrospectRequest{Token: live.GetAccessToken()})
				cancel()
				if err == nil && resp.GetActive() {
					break
				}
				if time.Since(back) > recoveryLimit {
					t.Fatalf("A does not serve %v after quorum came back: %v, %v", recoveryLimit, resp, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("quorum lost (%s): A served again %v after the cluster had a leader", mode, time.Since(back).Round(time.Millisecond))
			resp, err := r.cli.Introspect(svc, &latchv1.IntrospectRequest{Token: revoked.GetAccessToken()})
			if err != nil || resp.GetActive() {
				t.Errorf("revoked token after recovery: %v, %v; want inactive", resp, err)
			}
		})
	}
}
