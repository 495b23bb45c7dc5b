package server_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/latchtest"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// clock is the harness's settable test clock.
type clock = latchtest.Clock

// logBuffer collects JSON log records for assertions.
type logBuffer = latchtest.LogBuffer

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
func fastParams() password.Params { return latchtest.FastParams() }

func baseConfig() server.Config {
	return latchtest.DefaultConfig()
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
	wraps := make([]func(storage.Store) storage.Store, len(oc.wrappers))
	for i, w := range oc.wrappers {
		wraps[i] = w
	}
	l := latchtest.Start(t, latchtest.Options{Config: oc.cfg, DBPath: dbPath, Wrap: wraps,
		Server: oc.srvOpts, GRPC: oc.grpcOpts, Bolt: oc.boltOpts, LogLevel: oc.logLevel})
	return &env{t: t, dbPath: dbPath, store: l.Store, srv: l.Server, client: l.Client, conn: l.Conn,
		clock: l.Clock, logs: l.Logs, hasher: l.Hasher, gs: l.GRPC, lis: l.Listener}
}

// close stops the server and closes the store early (for restart tests).
func (e *env) close() {
	e.conn.Close()
	e.store.Close()
}

func ctxT(t testing.TB) context.Context { return latchtest.Context(t) }

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
		CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
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
