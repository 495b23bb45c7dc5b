// Package latchtest starts a real Latch for tests: a bbolt file in
// t.TempDir(), the real server and its gRPC interceptor chain, served over
// bufconn, with a settable clock, captured JSON logs and a cheap argon2id
// hasher. The server, interceptors and ext_authz tests share it, so that
// each tests Latch as it is built, not a copy of its wiring.
package latchtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
)

// Issuer is the issuer of DefaultConfig.
const Issuer = "https://latch.test"

// DefaultConfig is the server configuration tests start from: the test
// issuer and two sibling audiences, "orders" and "billing".
func DefaultConfig() server.Config {
	return server.Config{Issuer: Issuer, Audiences: []string{"orders", "billing"}}
}

// FastParams keep argon2id cheap in tests; the code path is the one
// production runs.
func FastParams() password.Params {
	return password.Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}
}

// Context returns a context that ends with the test, or after 30 seconds.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Bearer returns ctx with tok as its outgoing bearer token.
func Bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that reads start until advanced.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// LogBuffer collects log output, safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Options says how to start a Latch. The zero value is DefaultConfig on a
// fresh file, with the clock at a fixed date.
type Options struct {
	Config     server.Config                       // DefaultConfig if Issuer is empty
	DBPath     string                              // a new file in t.TempDir() if empty
	ClockStart time.Time                           // 2026-11-24 12:00 UTC if zero
	Wrap       []func(storage.Store) storage.Store // fault injectors around the real store, innermost first
	Server     []server.Option                     // after the clock and logger
	GRPC       []server.GRPCOption
	Bolt       []bolt.Option
	LogLevel   slog.Leveler // of Logs; debug if nil
}

// Latch is one running server and a client connection to it.
type Latch struct {
	T      testing.TB
	DBPath string
	Store  storage.Store // the real store, wrapped as Options.Wrap says
	Server *server.Server
	GRPC   *server.GRPCServer
	Conn   *grpc.ClientConn
	Client latchv1.AuthServiceClient
	Clock  *Clock
	Logs   *LogBuffer // JSON records at Options.LogLevel and above
	Hasher *password.Hasher
	// Listener is the server's in-memory listener, for tests that speak
	// raw bytes to it.
	Listener *bufconn.Listener
}

// Start serves a Latch for the rest of the test; cleanup stops the server
// and closes the store.
func Start(t testing.TB, o Options) *Latch {
	t.Helper()
	if o.Config.Issuer == "" {
		o.Config = DefaultConfig()
	}
	if o.DBPath == "" {
		o.DBPath = filepath.Join(t.TempDir(), "latch.db")
	}
	if o.ClockStart.IsZero() {
		o.ClockStart = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	}
	st, err := bolt.Open(o.DBPath, o.Bolt...)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	var store storage.Store = st
	for _, w := range o.Wrap {
		store = w(store)
	}
	hasher, err := password.NewHasher(FastParams(), 4)
	if err != nil {
		t.Fatal(err)
	}
	l := &Latch{T: t, DBPath: o.DBPath, Store: store, Clock: NewClock(o.ClockStart), Logs: &LogBuffer{}, Hasher: hasher}
	if o.LogLevel == nil {
		o.LogLevel = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(l.Logs, &slog.HandlerOptions{Level: o.LogLevel}))
	opts := append([]server.Option{server.WithClock(l.Clock.Now), server.WithLogger(log)}, o.Server...)
	if l.Server, err = server.New(Context(t), store, hasher, o.Config, opts...); err != nil {
		store.Close()
		t.Fatalf("server.New: %v", err)
	}
	l.Listener = bufconn.Listen(1 << 20)
	l.GRPC = server.NewGRPCServer(l.Server, log, o.GRPC...)
	go func() { _ = l.GRPC.Serve(l.Listener) }()
	t.Cleanup(func() {
		l.GRPC.Stop()
		store.Close()
	})
	l.Conn = l.Dial() // closed before the server stops
	l.Client = latchv1.NewAuthServiceClient(l.Conn)
	return l
}

// Dial opens another connection to the server, closed with the test.
func (l *Latch) Dial(opts ...grpc.DialOption) *grpc.ClientConn {
	l.T.Helper()
	conn, err := grpc.NewClient("passthrough:///latch", append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.Listener.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		l.T.Fatal(err)
	}
	l.T.Cleanup(func() { conn.Close() })
	return conn
}

// AddUser stores a user with a password directly, through server.AddUser
// as `latch user add` does.
func (l *Latch) AddUser(email, pw string, roles ...string) storage.User {
	l.T.Helper()
	u, err := server.AddUser(Context(l.T), l.Store, l.Hasher, rand.Reader, l.Clock.Now(), server.NormalizeEmail(email), pw, roles, false)
	if err != nil {
		l.T.Fatal(err)
	}
	return u
}

// Login logs in for audience aud ("" for the default audience) and fails
// the test on any error.
func (l *Latch) Login(email, pw, aud string) *latchv1.TokenPair {
	l.T.Helper()
	resp, err := l.Client.Login(Context(l.T), &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
	if err != nil {
		l.T.Fatalf("Login(%s, audience %q): %v", email, aud, err)
	}
	return resp.GetTokens()
}

// LoginSelf logs in for Latch's own audience (the issuer), the only access
// tokens AdminService, Introspect and WatchRevocations accept from their
// callers.
func (l *Latch) LoginSelf(email, pw string) *latchv1.TokenPair {
	l.T.Helper()
	return l.Login(email, pw, l.Server.Config().Issuer)
}

// Signer returns a signer with Latch's active private key, to forge tokens
// that are correctly signed but carry wrong claims.
func (l *Latch) Signer() *tokens.Signer {
	l.T.Helper()
	keys, err := l.Store.ListSigningKeys(Context(l.T))
	if err != nil {
		l.T.Fatalf("signing keys: %v", err)
	}
	i := slices.IndexFunc(keys, func(k storage.SigningKey) bool { return k.State == storage.KeyActive })
	if i < 0 {
		l.T.Fatal("no active signing key")
	}
	priv, err := tokens.ParsePrivateKey(keys[i].PrivateKey)
	if err != nil {
		l.T.Fatal(err)
	}
	s, err := tokens.NewSigner(priv)
	if err != nil {
		l.T.Fatal(err)
	}
	return s
}
