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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	ordersv1 "github.com/latchauth/latch/gen/latch/example/orders/v1"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/server/password"
	"github.com/latchauth/latch/storage/bolt/groupcommit"
	"github.com/latchauth/latch/tokens"
	bbolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/argon2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

type runner struct {
	cfg    Config
	report *Report
	srv    *server
	mu     sync.Mutex // guards report.Rows and rows (rows may run side by side)
	rows   map[string]Result
}

func (b *runner) want(name string) bool {
	if len(b.cfg.Only) == 0 {
		return true
	}
	for _, o := range b.cfg.Only {
		if strings.Contains(name, o) {
			return true
		}
	}
	return false
}

type loadFn = func(ctx context.Context, worker, i int) error

// measure runs one row; for scenarios it also measures the server's CPU and
// peak RSS over the row.
func (b *runner) measure(ctx context.Context, kind, name string, conc int, fn loadFn) Result {
	if !b.want(name) {
		return Result{}
	}
	progress(b.cfg, "%-9s %-34s running for %v at concurrency %d", kind, name, b.cfg.Duration, conc)
	pid := b.srv.cmd.Process.Pid
	cpu0, _ := cpuSeconds(pid)
	resetPeak(pid)
	startKiB, _ := memKiB(pid, "VmRSS")
	self0, selfErr := cpuSeconds(os.Getpid())
	onServer := kind != "baseline" && kind != "sibling" // the row's load is the Latch server's
	var store0 storeCount
	var storeErr error
	if onServer {
		store0, storeErr = storeCounts(ctx, b.srv.httpAddr)
	}
	r := load(ctx, name, b.cfg.Duration, conc, fn)
	r.Kind = kind
	if onServer && storeErr == nil {
		if store1, err := storeCounts(ctx, b.srv.httpAddr); err == nil {
			r.StoreCommits, r.StoreWrites = store1.commits-store0.commits, store1.writes-store0.writes
		}
	}
	if self1, err := cpuSeconds(os.Getpid()); err == nil && selfErr == nil {
		r.ClientCores = (self1 - self0) / r.Seconds
	}
	if onServer {
		r.ServerStartMiB = startKiB / 1024
		if cpu1, err := cpuSeconds(pid); err == nil {
			r.ServerCores = (cpu1 - cpu0) / r.Seconds
		}
		if kib, err := memKiB(pid, "VmHWM"); err == nil {
			r.ServerPeakMiB = kib / 1024
		}
	}
	progress(b.cfg, "%-9s %-34s %10.0f req/s  p99 %8.0f µs  errors %d", kind, name, r.PerSecond, r.P99Micros, r.Errors)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.report.Rows = append(b.report.Rows, r)
	if b.rows == nil {
		b.rows = map[string]Result{}
	}
	b.rows[name] = r
	return r
}

// baselines measures the raw limits in this process, on this machine, now.
func (b *runner) baselines(ctx context.Context, dir string) {
	conc := b.cfg.Concurrency
	key, _ := tokens.GenerateKey(rand.Reader)
	digest := sha256.Sum256([]byte("latch bench"))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	b.measure(ctx, "baseline", "raw ecdsa.Verify P-256", conc, func(context.Context, int, int) error {
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
	b.measure(ctx, "baseline", "raw golang-jwt ES256 parse+verify", conc, func(context.Context, int, int) error {
		_, err := parser.Parse(tok, keyFunc)
		return err
	})
	signing := tok[:strings.LastIndexByte(tok, '.')]
	b.measure(ctx, "baseline", "raw ES256 sign", conc, func(context.Context, int, int) error {
		_, err := jwt.SigningMethodES256.Sign(signing, key)
		return err
	})

	p := password.DefaultParams()
	salt := make([]byte, p.SaltLength)
	// argon2id is CPU- and memory-bound: its limit is one hash per core at a
	// time (more goroutines only thrash memory).
	b.measure(ctx, "baseline", "raw argon2id hash (m=19456,t=2,p=1)", runtime.NumCPU(), func(context.Context, int, int) error {
		_ = argon2.IDKey([]byte(benchPassword), salt, p.Time, p.Memory, p.Threads, p.KeyLength)
		return nil
	})

	if db, err := bbolt.Open(filepath.Join(dir, "raw.db"), 0o600, nil); err == nil {
		db.MaxBatchDelay = 2 * time.Millisecond // what the store used before its group commit
		_ = db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
		var n atomic.Int64
		b.measure(ctx, "baseline", "raw bbolt durable Batch commit", conc, func(context.Context, int, int) error {
			k := []byte(fmt.Sprint(n.Add(1)))
			return db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k, k) })
		})
		db.Close()
	}
	// The store's own committer (storage/bolt/groupcommit) on a trivial
	// put: the commit limit Refresh is measured against.
	if db, err := bbolt.Open(filepath.Join(dir, "group.db"), 0o600, nil); err == nil {
		_ = db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
		gc := groupcommit.New(db)
		var n atomic.Int64
		b.measure(ctx, "baseline", "raw durable group commit (trivial put)", conc, func(context.Context, int, int) error {
			k := []byte(fmt.Sprint(n.Add(1)))
			return gc.Do(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k, k) })
		})
		db.Close()
	}

	// A trivial gRPC unary echo (health Check) over the same loopback
	// transport, in this process.
	if lis, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go func() { _ = gs.Serve(lis) }()
		conns := make([]healthpb.HealthClient, 4)
		var closers []*grpc.ClientConn
		for i := range conns {
			c, _ := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			closers = append(closers, c)
			conns[i] = healthpb.NewHealthClient(c)
		}
		b.measure(ctx, "baseline", "raw gRPC unary echo", conc, func(ctx context.Context, w, _ int) error {
			_, err := conns[w%len(conns)].Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
		for _, c := range closers {
			c.Close()
		}
		gs.Stop()
	}
}

// scenarios drives the real server.
func (b *runner) scenarios(ctx context.Context, fx *fixture) {
	conc := b.cfg.Concurrency
	clients, closeClients, err := b.srv.dial(4)
	if err != nil {
		progress(b.cfg, "dial: %v", err)
		return
	}
	defer closeClients()
	cl := func(w int) latchv1.AuthServiceClient { return clients[w%len(clients)] }
	caller := metadata.Pairs("authorization", "Bearer "+fx.caller)
	n := len(fx.access)

	b.measure(ctx, "scenario", "GetJWKS", conc, func(ctx context.Context, w, _ int) error {
		_, err := cl(w).GetJWKS(ctx, &latchv1.GetJWKSRequest{})
		return err
	})
	introspect := func(ctx context.Context, w int, tok string) error {
		resp, err := cl(w).Introspect(metadata.NewOutgoingContext(ctx, caller), &latchv1.IntrospectRequest{Token: tok,
			TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN})
		if err == nil && !resp.GetActive() {
			return fmt.Errorf("token inactive")
		}
		return err
	}
	b.measure(ctx, "scenario", fmt.Sprintf("Introspect (%d distinct tokens)", n), conc, func(ctx context.Context, w, i int) error {
		return introspect(ctx, w, fx.access[(w*7919+i)%n])
	})
	b.measure(ctx, "scenario", "Introspect (hot mix: 90% on 10 tokens)", conc, func(ctx context.Context, w, i int) error {
		if i%10 != 0 {
			return introspect(ctx, w, fx.access[(w+i)%min(10, n)])
		}
		return introspect(ctx, w, fx.access[(w*7919+i)%n])
	})

	// Refresh: one rotation chain per worker (distinct sessions).
	chains := make([]string, conc)
	copy(chains, fx.refresh)
	b.measure(ctx, "scenario", "Refresh (rotation chains)", conc, func(ctx context.Context, w, _ int) error {
		if w >= len(fx.refresh) {
			return fmt.Errorf("fewer sessions than workers")
		}
		resp, err := cl(w).Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: chains[w]})
		if err != nil {
			return err
		}
		chains[w] = resp.GetTokens().GetRefreshToken()
		return nil
	})

	b.measure(ctx, "scenario", "Login", conc, func(ctx context.Context, w, _ int) error {
		_, err := cl(w).Login(ctx, &latchv1.LoginRequest{Email: "bench@example.com", Password: benchPassword})
		return err
	})

	// Introspect p99 alone and while a login flood saturates hashing.
	half := max(conc/2, 1)
	b.measure(ctx, "scenario", "Introspect, unloaded (half concurrency)", half, func(ctx context.Context, w, i int) error {
		return introspect(ctx, w, fx.access[(w*7919+i)%n])
	})
	if b.want("during login flood") {
		floodCtx, stopFlood := context.WithCancel(ctx)
		flood := make(chan Result, 1)
		go func() {
			flood <- load(floodCtx, "login flood", b.cfg.Duration+time.Second, half, func(ctx context.Context, w, _ int) error {
				_, err := cl(w).Login(ctx, &latchv1.LoginRequest{Email: "bench@example.com", Password: benchPassword})
				return err
			})
		}()
		time.Sleep(200 * time.Millisecond)
		b.measure(ctx, "scenario", "Introspect during login flood", half, func(ctx context.Context, w, i int) error {
			return introspect(ctx, w, fx.access[(w*7919+i)%n])
		})
		stopFlood()
		<-flood
	}

	b.interceptorScenarios(ctx, fx)

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

// interceptorScenarios serves the orders service in this process behind
// the interceptors, with keys fetched from the running Latch.
func (b *runner) interceptorScenarios(ctx context.Context, fx *fixture) {
	if !b.want("interceptor") {
		return
	}
	v, err := interceptors.NewVerifier(ctx, interceptors.WithJWKSFromGRPC(b.srv.conn),
		interceptors.WithIssuer(benchIssuer), interceptors.WithAudience(benchAudience))
	if err != nil {
		progress(b.cfg, "interceptors: %v", err)
		return
	}
	defer v.Close()
	policy := interceptors.NewPolicy().Require("/"+ordersv1.OrdersService_ServiceDesc.ServiceName+"/", "orders:read")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor(policy)), grpc.ChainStreamInterceptor(v.StreamServerInterceptor(policy)))
	ordersv1.RegisterOrdersServiceServer(gs, orders{})
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	var clients []ordersv1.OrdersServiceClient
	for range 4 {
		c, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return
		}
		defer c.Close()
		clients = append(clients, ordersv1.NewOrdersServiceClient(c))
	}
	md := metadata.Pairs("authorization", "Bearer "+fx.orders)
	conc := b.cfg.Concurrency
	b.measure(ctx, "sibling", "interceptor-protected unary (in-process service)", conc, func(ctx context.Context, w, _ int) error {
		_, err := clients[w%4].GetOrder(metadata.NewOutgoingContext(ctx, md), &ordersv1.GetOrderRequest{OrderId: "o-1"})
		return err
	})
	b.measure(ctx, "sibling", "interceptor-protected stream (in-process service)", conc, func(ctx context.Context, w, _ int) error {
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
	})
}
