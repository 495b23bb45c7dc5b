package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	ordersv1 "github.com/latchauth/latch/gen/latch/example/orders/v1"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/storage/bolt/groupcommit"
	"github.com/latchauth/latch/tokens"
	bbolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/argon2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

type runner struct {
	cfg    Config
	report *Report
	srv    *server
	mu     sync.Mutex // guards report (rows may run side by side)
}

// want reports whether --only selects the row called name.
func (b *runner) want(name string) bool {
	return len(b.cfg.Only) == 0 || slices.ContainsFunc(b.cfg.Only, func(o string) bool { return strings.Contains(name, o) })
}

type loadFn = func(ctx context.Context, worker, i int) error

// row is one line of the table, before it is measured.
type row struct {
	kind, name string
	conc       int
	fn         loadFn
	// srv is the Latch server whose CPU, peak RSS and group commits the
	// row reports; nil for rows whose load runs in this process (the
	// baselines, the sibling service).
	srv *server
	// also are further servers whose CPU the row adds to srv's: the other
	// replicas of a row that spreads its load over several.
	also []*server
	// background, when set, starts a load that runs during each of the
	// row's stretches (the login flood); it returns once that load is
	// under way, and its stop ends it.
	background func(ctx context.Context) (stop func())
	// sessions and dbMiB describe the database of a scale row.
	sessions int
	dbMiB    float64
}

// floodLead is how long the login flood runs before an "Introspect during
// login flood" stretch starts, and how long the server is given after it
// stops: several argon2id hashes.
const floodLead = 200 * time.Millisecond

// row returns a row whose load is b.srv's unless it is a baseline or a
// sibling row.
func (b *runner) row(kind, name string, conc int, fn loadFn) row {
	r := row{kind: kind, name: name, conc: conc, fn: fn}
	if kind != "baseline" && kind != "sibling" {
		r.srv = b.srv
	}
	return r
}

// measure runs one row on its own for --duration.
func (b *runner) measure(ctx context.Context, kind, name string, conc int, fn loadFn) Result {
	return b.interleave(ctx, b.row(kind, name, conc, fn))[0]
}

// maxRounds bounds how many stretches interleave splits a row into.
const maxRounds = 5

// rounds is how many stretches each row of an interleaved group of n rows
// runs in: --rounds, by default one per second of --duration, at most
// maxRounds; one for a row measured alone.
func (b *runner) rounds(n int) int {
	switch {
	case n < 2:
		return 1
	case b.cfg.Rounds > 0:
		return b.cfg.Rounds
	}
	return max(1, min(maxRounds, int(b.cfg.Duration/time.Second)))
}

// interleave measures rows (those that --only wants) against each other.
// Each runs for --duration in all, split into stretches, and the rows take
// turns, one stretch each per round, each round starting one row later
// (A B C, B C A, C A B, ...). A shared machine that speeds up or slows
// down during the group then weighs on every row of it alike, so that the
// ratios between them (a scenario over its raw limit, one database size
// over another) measure the code rather than the minute each ran in.
// Stretches drain (runLoad), so a row goes on in its next stretch where it
// stopped. It returns the rows' results in the order given, zero for the
// rows not run.
func (b *runner) interleave(ctx context.Context, rows ...row) []Result {
	var todo []int
	for i, r := range rows {
		if r.fn != nil && b.want(r.name) {
			todo = append(todo, i)
		}
	}
	out := make([]Result, len(rows))
	if len(todo) == 0 {
		return out
	}
	rounds := b.rounds(len(todo))
	stretch := b.cfg.Duration / time.Duration(rounds)
	tallies := make([]rowTally, len(rows))
	for _, i := range todo {
		tallies[i].next = make([]int, rows[i].conc)
		progress(b.cfg, "%-9s %-34s running for %v at concurrency %d", rows[i].kind, rows[i].name, b.cfg.Duration, rows[i].conc)
	}
	if rounds > 1 {
		progress(b.cfg, "interleaving those %d rows: %d rounds of %v each", len(todo), rounds, stretch)
	}
	for round := range rounds {
		for j := range todo {
			i := todo[(round+j)%len(todo)]
			tallies[i].run(ctx, rows[i], stretch, rounds > 1)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.report.Rounds = max(b.report.Rounds, rounds)
	for _, i := range todo {
		r := tallies[i].result(rows[i])
		progress(b.cfg, "%-9s %-34s %10.0f req/s  p99 %8.0f µs  errors %d", r.Kind, r.Name, r.PerSecond, r.P99Micros, r.Errors)
		b.report.Rows = append(b.report.Rows, r)
		out[i] = r
	}
	return out
}

// rowTally adds up the stretches of one row.
type rowTally struct {
	load                 sample
	next                 []int   // each worker's next call number
	clientCPU, serverCPU float64 // CPU seconds
	startMiB, peakMiB    float64 // the server's RSS before the first stretch, and its highest
	store                storeCount
	storeFailed          bool
}

// run measures one stretch of r.
func (t *rowTally) run(ctx context.Context, r row, dur time.Duration, drain bool) {
	if r.background != nil {
		// Started first: the row's CPU, RSS and peak are measured while it runs.
		stop := r.background(ctx)
		defer stop()
	}
	var pid int
	var cpu0 float64
	alsoCPU0 := make([]float64, len(r.also))
	for i, o := range r.also {
		alsoCPU0[i], _ = cpuSeconds(o.cmd.Process.Pid)
	}
	var store0 storeCount
	storeErr := errors.New("not a Latch server: no store metrics")
	if r.srv != nil {
		pid = r.srv.cmd.Process.Pid
		cpu0, _ = cpuSeconds(pid)
		resetPeak(pid)
		if kib, err := memKiB(pid, "VmRSS"); err == nil && t.load.seconds == 0 {
			t.startMiB = kib / 1024
		}
		if r.srv.httpAddr != "" {
			store0, storeErr = storeCounts(ctx, r.srv.httpAddr)
		}
	}
	self0, selfErr := cpuSeconds(os.Getpid())
	t.load.add(runLoad(ctx, dur, r.conc, t.next, drain, r.fn))
	if self1, err := cpuSeconds(os.Getpid()); err == nil && selfErr == nil {
		t.clientCPU += self1 - self0
	}
	if r.srv == nil {
		return
	}
	if storeErr == nil {
		var store1 storeCount
		store1, storeErr = storeCounts(ctx, r.srv.httpAddr)
		t.store.commits += store1.commits - store0.commits
		t.store.writes += store1.writes - store0.writes
	}
	t.storeFailed = t.storeFailed || storeErr != nil
	if cpu1, err := cpuSeconds(pid); err == nil {
		t.serverCPU += cpu1 - cpu0
	}
	for i, o := range r.also {
		if cpu1, err := cpuSeconds(o.cmd.Process.Pid); err == nil {
			t.serverCPU += cpu1 - alsoCPU0[i]
		}
	}
	if kib, err := memKiB(pid, "VmHWM"); err == nil {
		t.peakMiB = max(t.peakMiB, kib/1024)
	}
}

// result is the row's line of the table: its stretches' calls and CPU
// over their seconds together.
func (t *rowTally) result(r row) Result {
	out := t.load.result(r.name)
	out.Kind, out.StoredSessions, out.DBSizeMiB = r.kind, r.sessions, r.dbMiB
	if out.Seconds <= 0 {
		return out
	}
	out.ClientCores = t.clientCPU / out.Seconds
	if r.srv != nil {
		out.ServerCores = t.serverCPU / out.Seconds
		out.ServerStartMiB, out.ServerPeakMiB = t.startMiB, t.peakMiB
		if !t.storeFailed {
			out.StoreCommits, out.StoreWrites = t.store.commits, t.store.writes
		}
	}
	return out
}

// peerRows are the rows of other auth servers run next to Latch (--hydra);
// zero rows when none runs.
type peerRows struct {
	hydraIssue, hydraIntrospect row
}

// cleanup is a list of functions that release what a row builder set up.
type cleanup []func()

// run calls them, the last added first. Bound as a method value early
// (closeAll = c.run), it still sees what is added after.
func (c *cleanup) run() {
	for _, f := range slices.Backward(*c) {
		f()
	}
}

// rawLimits are the raw baselines, measured in this process, each in the
// interleaved group of the scenarios it bounds.
type rawLimits struct {
	verify, jwt, sign, argon, batch, group, echo row
}

// baselines builds the raw limits' rows; close releases what they hold
// (databases, the echo server).
func (b *runner) baselines(dir string) (raw rawLimits, closeAll func()) {
	var closers cleanup
	closeAll = closers.run
	conc := b.cfg.Concurrency
	key, _ := tokens.GenerateKey(rand.Reader)
	digest := sha256.Sum256([]byte("latch bench"))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	raw.verify = b.row("baseline", "raw ecdsa.Verify P-256", conc, func(context.Context, int, int) error {
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			return fmt.Errorf("verify failed")
		}
		return nil
	})

	signer, _ := tokens.NewSigner(key)
	now := time.Now()
	tok, _ := signer.Sign(tokens.Claims{Issuer: benchIssuer, Subject: "s", Audience: []string{benchAudience}, IssuedAt: now,
		ExpiresAt: now.Add(time.Hour), ID: "j", SessionID: "s"})
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(benchIssuer), jwt.WithAudience(benchAudience),
		jwt.WithExpirationRequired())
	keyFunc := func(*jwt.Token) (any, error) { return &key.PublicKey, nil }
	raw.jwt = b.row("baseline", "raw golang-jwt ES256 parse+verify", conc, func(context.Context, int, int) error {
		_, err := parser.Parse(tok, keyFunc)
		return err
	})
	signing := tok[:strings.LastIndexByte(tok, '.')]
	raw.sign = b.row("baseline", "raw ES256 sign", conc, func(context.Context, int, int) error {
		_, err := jwt.SigningMethodES256.Sign(signing, key)
		return err
	})

	p := password.DefaultParams()
	salt := make([]byte, p.SaltLength)
	// argon2id is CPU- and memory-bound: its limit is one hash per core at a
	// time (more goroutines only thrash memory).
	raw.argon = b.row("baseline", "raw argon2id hash (m=19456,t=2,p=1)", runtime.NumCPU(), func(context.Context, int, int) error {
		_ = argon2.IDKey([]byte(benchPassword), salt, p.Time, p.Memory, p.Threads, p.KeyLength)
		return nil
	})

	if db, err := bbolt.Open(filepath.Join(dir, "raw.db"), 0o600, nil); err == nil {
		closers = append(closers, func() { db.Close() })
		db.MaxBatchDelay = 2 * time.Millisecond // what the store used before its group commit
		_ = db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
		var n atomic.Int64
		raw.batch = b.row("baseline", "raw bbolt durable Batch commit", conc, func(context.Context, int, int) error {
			k := []byte(fmt.Sprint(n.Add(1)))
			return db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k, k) })
		})
	}
	// The store's own committer (storage/bolt/groupcommit) on a trivial
	// put: the commit limit Refresh is measured against.
	if db, err := bbolt.Open(filepath.Join(dir, "group.db"), 0o600, nil); err == nil {
		closers = append(closers, func() { db.Close() })
		_ = db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
		gc := groupcommit.New(db)
		var n atomic.Int64
		raw.group = b.row("baseline", "raw durable group commit (trivial put)", conc, func(context.Context, int, int) error {
			k := []byte(fmt.Sprint(n.Add(1)))
			return gc.Do(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k, k) })
		})
	}

	// A trivial gRPC unary echo (health Check) over the same loopback
	// transport, in this process.
	if lis, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go func() { _ = gs.Serve(lis) }()
		closers = append(closers, gs.Stop)
		conns, closeConns, err := dial(lis.Addr().String(), 4, healthpb.NewHealthClient)
		if err != nil {
			return raw, closeAll
		}
		closers = append(closers, closeConns)
		raw.echo = b.row("baseline", "raw gRPC unary echo", conc, func(ctx context.Context, w, _ int) error {
			_, err := conns[w%len(conns)].Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
	}
	return raw, closeAll
}

// scenarios drives the real server (and, for the verify-cache-off row, a
// second one on its own database in dir): each scenario interleaved with
// the raw limits and the peers it is compared with.
func (b *runner) scenarios(ctx context.Context, dir string, fx *fixture, raw rawLimits, peers peerRows) {
	conc := b.cfg.Concurrency
	clients, closeClients, err := dial(b.srv.addr, 4, latchv1.NewAuthServiceClient)
	if err != nil {
		progress(b.cfg, "dial: %v", err)
		return
	}
	defer closeClients()
	cl := func(w int) latchv1.AuthServiceClient { return clients[w%len(clients)] }
	wl := newWorkload(fx, clients, conc, 0, 0)
	n := len(fx.access)
	login := func(ctx context.Context, w, i int) error {
		_, err := cl(w).Login(ctx, &latchv1.LoginRequest{Email: loginEmail(w*7919 + i), Password: benchPassword})
		return err
	}

	uncached, closeUncached := b.uncached(ctx, dir)
	defer closeUncached()
	b.interleave(ctx, raw.verify, raw.jwt, raw.sign, uncached)

	siblings, closeSiblings := b.interceptorRows(ctx, fx)
	defer closeSiblings()
	b.interleave(ctx, append([]row{raw.echo,
		b.row("scenario", "GetJWKS", conc, func(ctx context.Context, w, _ int) error {
			_, err := cl(w).GetJWKS(ctx, &latchv1.GetJWKSRequest{})
			return err
		}),
		b.row("scenario", fmt.Sprintf("Introspect (%d distinct tokens)", n), conc, wl.introspect),
		b.row("scenario", "Introspect (hot mix: 90% on 10 tokens)", conc, func(ctx context.Context, w, i int) error {
			if i%10 != 0 {
				return wl.introspectToken(ctx, w, fx.access[(w+i)%min(10, n)])
			}
			return wl.introspect(ctx, w, i)
		}),
		peers.hydraIntrospect,
	}, siblings...)...)

	b.interleave(ctx, raw.batch, raw.group, peers.hydraIssue, b.row("scenario", "Refresh (rotation chains)", conc, wl.refresh))
	b.interleave(ctx, raw.argon, b.row("scenario", "Login", conc, login))

	// Introspect p99 alone and while a login flood saturates hashing,
	// interleaved: the flood runs only during the second row's stretches.
	half := max(conc/2, 1)
	during := b.row("scenario", "Introspect during login flood", half, wl.introspect)
	during.background = func(ctx context.Context) (stop func()) {
		floodCtx, stopFlood := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Long enough to outlast the stretch; stop ends it.
			runLoad(floodCtx, b.cfg.Duration+time.Minute, half, nil, false, login)
		}()
		time.Sleep(floodLead) // let the flood fill the hashing slots first
		return func() {
			stopFlood()
			<-done
			// The server finishes the hash in progress after its caller
			// has gone: let it end before the next (unloaded) stretch.
			time.Sleep(floodLead)
		}
	}
	b.interleave(ctx, b.row("scenario", "Introspect, unloaded (half concurrency)", half, wl.introspect), during)

	// Revoke last: it denies the tokens it is given.
	var next atomic.Int64
	b.measure(ctx, "scenario", "Revoke (distinct access tokens)", conc, func(ctx context.Context, w, _ int) error {
		i := next.Add(1)
		if int(i) > n {
			return errStop
		}
		_, err := cl(w).Revoke(ctx, &latchv1.RevokeRequest{Token: fx.access[n-int(i)]})
		return err
	})
}

// orders is a minimal protected service for the interceptor scenarios.
type orders struct {
	ordersv1.UnimplementedOrdersServiceServer
}

func (orders) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	c, _ := interceptors.ClaimsFromContext(ctx)
	return &ordersv1.GetOrderResponse{Order: &ordersv1.Order{OrderId: req.GetOrderId(), Owner: c.Subject, Item: "tea"}}, nil
}

func (orders) WatchOrders(_ *ordersv1.WatchOrdersRequest, st grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	c, _ := interceptors.ClaimsFromContext(st.Context())
	return st.Send(&ordersv1.WatchOrdersResponse{Order: &ordersv1.Order{OrderId: "o-1", Owner: c.Subject, Item: "tea"}})
}

// interceptorRows serves the orders service in this process behind the
// interceptors, with keys fetched from the running Latch, and returns its
// unary and stream rows; close stops it.
func (b *runner) interceptorRows(ctx context.Context, fx *fixture) (rows []row, closeAll func()) {
	var closers cleanup
	closeAll = closers.run
	if !b.want("interceptor") {
		return nil, closeAll
	}
	v, err := interceptors.NewVerifier(ctx, interceptors.Config{Issuer: benchIssuer, Audience: []string{benchAudience},
		Keys: interceptors.JWKSFromGRPC(b.srv.conn)})
	if err != nil {
		progress(b.cfg, "interceptors: %v", err)
		return nil, closeAll
	}
	closers = append(closers, v.Close)
	policy := interceptors.NewPolicy().Require("/"+ordersv1.OrdersService_ServiceDesc.ServiceName+"/", "orders:read")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, closeAll
	}
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor(policy)), grpc.ChainStreamInterceptor(v.StreamServerInterceptor(policy)))
	ordersv1.RegisterOrdersServiceServer(gs, orders{})
	go func() { _ = gs.Serve(lis) }()
	closers = append(closers, gs.Stop)
	clients, closeClients, err := dial(lis.Addr().String(), 4, ordersv1.NewOrdersServiceClient)
	if err != nil {
		return nil, closeAll
	}
	closers = append(closers, closeClients)
	md := metadata.Pairs("authorization", "Bearer "+fx.orders)
	conc := b.cfg.Concurrency
	return []row{
		b.row("sibling", "interceptor-protected unary (in-process service)", conc, func(ctx context.Context, w, _ int) error {
			_, err := clients[w%4].GetOrder(metadata.NewOutgoingContext(ctx, md), &ordersv1.GetOrderRequest{OrderId: "o-1"})
			return err
		}),
		b.row("sibling", "interceptor-protected stream (in-process service)", conc, func(ctx context.Context, w, _ int) error {
			st, err := clients[w%4].WatchOrders(metadata.NewOutgoingContext(ctx, md), &ordersv1.WatchOrdersRequest{})
			if err != nil {
				return err
			}
			for {
				if _, err := st.Recv(); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
		}),
	}, closeAll
}
