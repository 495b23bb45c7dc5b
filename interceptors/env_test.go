package interceptors_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

const issuer = "https://latch.test"

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

// latchEnv is a real Latch server (bbolt in a temp dir) over bufconn.
type latchEnv struct {
	t       *testing.T
	store   storage.Store
	conn    *grpc.ClientConn
	client  latchv1.AuthServiceClient
	gs      *server.GRPCServer
	srv     *server.Server
	clock   *clock
	hasher  *password.Hasher
	refresh atomic.Int64 // Refresh calls made through conn
	lis     *bufconn.Listener
}

// dial opens another connection to Latch (for example one carrying
// per-RPC credentials).
func (e *latchEnv) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	e.t.Helper()
	conn, err := grpc.NewClient("passthrough:///latch", append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newLatch(t *testing.T) *latchEnv {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(password.Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}, 4)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().Truncate(time.Second)}
	srv, err := server.New(ctxT(t), st, hasher, server.Config{Issuer: issuer, Audiences: []string{"orders", "billing"}},
		server.WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	gs := server.NewGRPCServer(srv, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(lis) }()
	e := &latchEnv{t: t, store: st, gs: gs, srv: srv, clock: clk, hasher: hasher, lis: lis}
	conn, err := grpc.NewClient("passthrough:///latch",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if method == latchv1.AuthService_Refresh_FullMethodName {
				e.refresh.Add(1)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	e.conn, e.client = conn, latchv1.NewAuthServiceClient(conn)
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		st.Close()
	})
	return e
}

func (e *latchEnv) addUser(email, pw string, roles ...string) {
	e.t.Helper()
	h, err := e.hasher.Hash(ctxT(e.t), pw)
	if err != nil {
		e.t.Fatal(err)
	}
	id, _ := tokens.NewID(rand.Reader)
	if err := e.store.CreateUser(ctxT(e.t), storage.User{ID: id, Email: email, PasswordHash: h, Roles: roles}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *latchEnv) login(email, pw, aud string) *latchv1.TokenPair {
	e.t.Helper()
	resp, err := e.client.Login(ctxT(e.t), &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
	if err != nil {
		e.t.Fatalf("Login: %v", err)
	}
	return resp.GetTokens()
}

// signer returns Latch's real private key, to forge tokens that are
// correctly signed but carry wrong claims.
func (e *latchEnv) signer() *tokens.Signer {
	e.t.Helper()
	keys, err := e.store.ListSigningKeys(ctxT(e.t))
	if err != nil {
		e.t.Fatalf("keys: %v", err)
	}
	// The active key signs; the next key is published beside it.
	i := slices.IndexFunc(keys, func(k storage.SigningKey) bool { return k.State == storage.KeyActive })
	if i < 0 {
		e.t.Fatal("no active signing key")
	}
	priv, err := tokens.ParsePrivateKey(keys[i].PrivateKey)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := tokens.NewSigner(priv)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// testService is a protected sibling service with a unary and a
// server-streaming method that report the caller's claims.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	c, ok := interceptors.ClaimsFromContext(ctx)
	if !ok {
		return &testpb.SimpleResponse{Username: "<no claims>"}, nil
	}
	return &testpb.SimpleResponse{Username: c.Subject}, nil
}

func (s testService) CacheableUnaryCall(ctx context.Context, r *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return s.UnaryCall(ctx, r)
}

func (testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (testService) StreamingOutputCall(_ *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	c, ok := interceptors.ClaimsFromContext(st.Context())
	body := "<no claims>"
	if ok {
		body = c.Subject
	}
	for range 2 {
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte(body)}}); err != nil {
			return err
		}
	}
	return nil
}

// sibling serves testService behind the interceptors and returns a client.
func sibling(t *testing.T, v *interceptors.Verifier, p *interceptors.Policy) testpb.TestServiceClient {
	return siblingB(t, v, p)
}

func siblingB(t testing.TB, v *interceptors.Verifier, p *interceptors.Policy) testpb.TestServiceClient {
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor(p)), grpc.ChainStreamInterceptor(v.StreamServerInterceptor(p)))
	testpb.RegisterTestServiceServer(gs, testService{})
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///sibling",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	return testpb.NewTestServiceClient(conn)
}

func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
