package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// TestAdminAgainstPlaintextServerHints: `latch admin` (TLS by default)
// against a plaintext gRPC server on loopback says what to do, --insecure,
// instead of only the TLS library's complaint.
func TestAdminAgainstPlaintextServerHints(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	var out, errOut bytes.Buffer
	getenv := func(k string) string { return map[string]string{adminTokenEnv: "a-token"}[k] }
	code := run(testCtx(t, time.Minute), []string{"admin", "--addr", lis.Addr().String(), "--timeout", "20s", "users", "list"},
		env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: getenv})
	if code == 0 {
		t.Fatalf("latch admin against a plaintext server succeeded: %s", out.String())
	}
	if !strings.Contains(errOut.String(), "--insecure") || !strings.Contains(errOut.String(), "plaintext") {
		t.Errorf("stderr %q: want a hint naming plaintext and --insecure", errOut.String())
	}
}
