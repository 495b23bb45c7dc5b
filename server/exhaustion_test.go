package server_test

import (
	"bytes"
	"net"
	"strings"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// healthy fails the test unless the server still answers health checks.
func healthy(t *testing.T, e *env) {
	t.Helper()
	resp, err := healthpb.NewHealthClient(e.conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check after the abuse: %v, %v", resp, err)
	}
}

// TestOversizedInputIsRefused: a 100 MB request, a gzip bomb that inflates
// past the message limit, 1 MB of metadata and a method path without its
// leading slash are refused without harm; the server keeps answering.
func TestOversizedInputIsRefused(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")

	t.Run("100 MB request", func(t *testing.T) {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: strings.Repeat("p", 100<<20)})
		if code := status.Code(err); code != codes.ResourceExhausted {
			t.Fatalf("code = %v (%v), want ResourceExhausted", code, err)
		}
		healthy(t, e)
	})
	t.Run("gzip bomb", func(t *testing.T) {
		// 50 MB of one byte compresses to about 50 KB: under the wire
		// limit, far over the decompressed limit.
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: string(bytes.Repeat([]byte{'a'}, 50<<20))},
			grpc.UseCompressor(gzip.Name))
		if code := status.Code(err); code != codes.ResourceExhausted {
			t.Fatalf("code = %v (%v), want ResourceExhausted", code, err)
		}
		healthy(t, e)
	})
	t.Run("1 MB metadata", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-padding", strings.Repeat("m", 1<<20))
		_, err := e.client.GetJWKS(ctx, &latchv1.GetJWKSRequest{})
		if err == nil {
			t.Fatal("1 MB of metadata accepted")
		}
		healthy(t, e)
	})
	t.Run("method without leading slash", func(t *testing.T) {
		err := e.conn.Invoke(ctxT(t), "latch.v1.AuthService/GetJWKS", &latchv1.GetJWKSRequest{}, &latchv1.GetJWKSResponse{})
		if status.Code(err) == codes.OK {
			t.Fatal("malformed method name accepted")
		}
		healthy(t, e)
	})
}

// TestIdleConnectionsDoNotStarve opens 2,000 connections that never speak
// HTTP/2 and checks that a real client is still served.
func TestIdleConnectionsDoNotStarve(t *testing.T) {
	e := newEnv(t, baseConfig())
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 2000 {
		c, err := e.lis.DialContext(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	healthy(t, e)
	if _, err := e.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{}); err != nil {
		t.Fatal(err)
	}
}
