package server_test

import (
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage/bolt"
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
	boltOpts []bolt.Option
	// logLevel is the test logger's level; nil is debug.
	logLevel slog.Leveler
}

func newOpsEnv(t testing.TB, oc opsConfig) *opsEnv {
	t.Helper()
	if oc.cfg.Issuer == "" {
		oc.cfg = baseConfig()
	}
	e := startEnv(t, filepath.Join(t.TempDir(), "latch.db"), oc)
	hs := httptest.NewServer(e.srv.HTTPHandler())
	t.Cleanup(hs.Close) // before startEnv's cleanup
	return &opsEnv{env: e, http: hs}
}
