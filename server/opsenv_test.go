package server_test

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/server/password"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// opsEnv is like env, with server and gRPC options of the test's choosing
// and the HTTP handler served on a real loopback port.
type opsEnv struct {
	*env
	http *httptest.Server
}

type opsConfig struct {
	cfg      server.Config
	wrappers []wrap
	srvOpts  []server.Option
	grpcOpts []server.GRPCOption
}

func newOpsEnv(t testing.TB, oc opsConfig) *opsEnv {
	t.Helper()
	if oc.cfg.Issuer == "" {
		oc.cfg = baseConfig()
	}
	dbPath := filepath.Join(t.TempDir(), "latch.db")
	st, err := bolt.Open(dbPath)
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
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	hs := httptest.NewServer(srv.HTTPHandler())
	e := &env{t: t, dbPath: dbPath, store: store, srv: srv, client: latchv1.NewAuthServiceClient(conn),
		conn: conn, clock: clk, logs: logs, hasher: hasher, gs: gs, lis: lis}
	t.Cleanup(func() {
		hs.Close()
		conn.Close()
		gs.Stop()
		st.Close()
	})
	return &opsEnv{env: e, http: hs}
}
