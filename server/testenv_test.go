package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects JSON log records for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// env is one Latch server on a real bbolt file in t.TempDir(), served over
// bufconn through the real interceptor chain.
type env struct {
	t      testing.TB
	dbPath string
	store  storage.Store
	srv    *server.Server
	client latchv1.AuthServiceClient
	conn   *grpc.ClientConn
	clock  *clock
	logs   *logBuffer
	hasher *password.Hasher
	gs     *server.GRPCServer
	lis    *bufconn.Listener
}

// fastParams keep argon2id cheap in tests; the code path is the same.
func fastParams() password.Params {
	return password.Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}
}

func baseConfig() server.Config {
	return server.Config{Issuer: "https://latch.test", Audiences: []string{"orders", "billing"}}
}

// wrap lets a test put a fault-injecting wrapper around the real store.
type wrap func(storage.Store) storage.Store

func newEnv(t testing.TB, cfg server.Config, wrappers ...wrap) *env {
	t.Helper()
	return newEnvAt(t, filepath.Join(t.TempDir(), "latch.db"), cfg, wrappers...)
}

func newEnvAt(t testing.TB, dbPath string, cfg server.Config, wrappers ...wrap) *env {
	t.Helper()
	return startEnv(t, dbPath, opsConfig{cfg: cfg, wrappers: wrappers})
}

// startEnv serves one server on the bbolt file at dbPath, its store wrapped
// by oc.wrappers, with oc's server and gRPC options after the test clock and
// logger.
func startEnv(t testing.TB, dbPath string, oc opsConfig) *env {
	t.Helper()
	st, err := bolt.Open(dbPath, oc.boltOpts...)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	var store storage.Store = st
	for _, w := range oc.wrappers {
		store = w(store)
	}
	hasher, err := password.NewHasher(fastParams(), 4)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	logs := &logBuffer{}
	var level slog.Leveler = slog.LevelDebug
	if oc.logLevel != nil {
		level = oc.logLevel
	}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))
	opts := append([]server.Option{server.WithClock(clk.now), server.WithLogger(log)}, oc.srvOpts...)
	srv, err := server.New(ctxT(t), store, hasher, oc.cfg, opts...)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	gs := server.NewGRPCServer(srv, log, oc.grpcOpts...)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dbPath: dbPath, store: store, srv: srv, client: latchv1.NewAuthServiceClient(conn),
		conn: conn, clock: clk, logs: logs, hasher: hasher, gs: gs, lis: lis}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		store.Close()
	})
	return e
}

// close stops the server and closes the store early (for restart tests).
func (e *env) close() {
	e.conn.Close()
	e.store.Close()
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// addUser stores a user with a password directly (as `latch user add` does).
func (e *env) addUser(email, pw string, roles ...string) storage.User {
	e.t.Helper()
	h, err := e.hasher.Hash(ctxT(e.t), pw)
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := tokens.NewID(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	u := storage.User{ID: id, Email: server.NormalizeEmail(email), PasswordHash: h, Roles: roles,
		CreatedAt: e.clock.now(), UpdatedAt: e.clock.now()}
	if err := e.store.CreateUser(ctxT(e.t), u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *env) login(email, pw string) *latchv1.TokenPair {
	e.t.Helper()
	resp, err := e.client.Login(ctxT(e.t), &latchv1.LoginRequest{Email: email, Password: pw})
	if err != nil {
		e.t.Fatalf("Login(%s): %v", email, err)
	}
	return resp.GetTokens()
}

// loginFor logs in for audience aud (the issuer: Latch's own audience).
func (e *env) loginFor(email, pw, aud string) *latchv1.TokenPair {
	e.t.Helper()
	resp, err := e.client.Login(ctxT(e.t), &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
	if err != nil {
		e.t.Fatalf("Login(%s, audience %s): %v", email, aud, err)
	}
	return resp.GetTokens()
}

// loginSelf logs in for Latch's own audience (the issuer): the only
// access tokens AdminService, Introspect and WatchRevocations accept from
// their callers.
func (e *env) loginSelf(email, pw string) *latchv1.TokenPair {
	e.t.Helper()
	return e.loginFor(email, pw, e.srv.Config().Issuer)
}

// introspector returns a context carrying the access token of a fresh
// service user with role introspect.
func (e *env) introspector() context.Context {
	e.t.Helper()
	e.addUser("introspector@example.com", "introspector-pw", server.RoleIntrospect)
	tp := e.loginSelf("introspector@example.com", "introspector-pw")
	return metadata.AppendToOutgoingContext(ctxT(e.t), "authorization", "Bearer "+tp.GetAccessToken())
}

func (e *env) introspect(ctx context.Context, tok string) *latchv1.IntrospectResponse {
	e.t.Helper()
	resp, err := e.client.Introspect(ctx, &latchv1.IntrospectRequest{Token: tok})
	if err != nil {
		e.t.Fatalf("Introspect: %v", err)
	}
	return resp
}
