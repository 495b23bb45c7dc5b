package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/certs"
	"github.com/latchauth/latch/internal/certs/certstest"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// identityProbe is an interceptor, innermost in the chain, that records
// the identity PeerIdentityFromContext gives a GetJWKS call's handler
// context: "subject|uris|dns", or "" when there is none.
func identityProbe(seen chan<- string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == latchv1.AuthService_GetJWKS_FullMethodName {
			got := ""
			if id, ok := server.PeerIdentityFromContext(ctx); ok {
				got = id.Subject + "|" + strings.Join(id.URIs, ",") + "|" + strings.Join(id.DNSNames, ",")
			}
			seen <- got
		}
		return handler(ctx, req)
	}
}

// tlsServer is Latch's gRPC server on a real loopback port with TLS (and
// mutual TLS when clientCA is set), with an identity probe and an empty
// service registered after NewGRPCServer.
type tlsServer struct {
	addr   string
	seen   chan string // identities the probe recorded
	serial string
	logs   *logBuffer
	ca     *certstest.CA
}

func startTLSServer(t *testing.T, clientCA *certstest.CA) *tlsServer {
	t.Helper()
	dir := t.TempDir()
	ca := certstest.NewCA(t, "server CA")
	leaf := ca.Server(t)
	certFile, keyFile := leaf.WriteFiles(t, dir, "tls")
	var ropts []certs.Option
	if clientCA != nil {
		caFile := filepath.Join(dir, "clients.pem")
		certstest.WriteFile(t, caFile, clientCA.PEM)
		ropts = append(ropts, certs.WithClientCA(caFile))
	}
	r, err := certs.New(certFile, keyFile, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(dir, "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(fastParams(), 2)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	srv, err := server.New(ctxT(t), st, hasher, baseConfig(), server.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 16)
	// With the access log on, so that the records of successful calls,
	// which carry the peer identity, are written.
	gs := server.NewGRPCServer(srv, log, server.WithTLS(r.ServerConfig("h2")), server.WithAccessLog(1),
		server.WithServerOptions(grpc.ChainUnaryInterceptor(identityProbe(seen))))
	// A service registered after NewGRPCServer, for health to cover.
	gs.RegisterService(&grpc.ServiceDesc{ServiceName: "latch.test.Whoami", HandlerType: (*any)(nil)}, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); st.Close() })
	return &tlsServer{addr: lis.Addr().String(), seen: seen, serial: leaf.Cert.SerialNumber.String(), logs: logs, ca: ca}
}

// who calls GetJWKS over a fresh connection with creds and returns the
// identity its handler context carried.
func who(t *testing.T, s *tlsServer, creds credentials.TransportCredentials) (string, error) {
	t.Helper()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := latchv1.NewAuthServiceClient(conn).GetJWKS(ctx, &latchv1.GetJWKSRequest{}); err != nil {
		return "", err
	}
	return <-s.seen, nil
}

func TestTLSHandshake(t *testing.T) {
	s := startTLSServer(t, nil)
	good := credentials.NewTLS(&tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost"})

	got, err := who(t, s, good)
	if err != nil {
		t.Fatalf("TLS call: %v", err)
	}
	if got != "" {
		t.Errorf("identity without a client certificate = %q, want none", got)
	}
	// The real AuthService answers over TLS too.
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(good))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := latchv1.NewAuthServiceClient(conn).GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{}); err != nil {
		t.Errorf("GetJWKS over TLS: %v", err)
	}
	// A service registered after NewGRPCServer is covered by health too,
	// Watch (first, before anything set its status) and Check.
	w, err := healthpb.NewHealthClient(conn).Watch(ctxT(t), &healthpb.HealthCheckRequest{Service: "latch.test.Whoami"})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := w.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Watch of a service registered later: %v, %v; want SERVING first", first, err)
	}
	hc, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "latch.test.Whoami"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of a service registered later: %v, %v; want SERVING", hc, err)
	}

	if _, err := who(t, s, insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext client against the TLS server: %v, want UNAVAILABLE", err)
	}
	other := certstest.NewCA(t, "untrusted CA")
	if _, err := who(t, s, credentials.NewTLS(&tls.Config{RootCAs: other.Pool(), ServerName: "localhost"})); status.Code(err) != codes.Unavailable {
		t.Errorf("client that does not trust the server's CA: %v, want UNAVAILABLE", err)
	}
	old := credentials.NewTLS(&tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if _, err := who(t, s, old); status.Code(err) != codes.Unavailable {
		t.Errorf("TLS 1.1 client: %v, want UNAVAILABLE", err)
	}
}

func TestMutualTLS(t *testing.T) {
	clientCA := certstest.NewCA(t, "client CA")
	s := startTLSServer(t, clientCA)
	creds := func(c *certstest.Leaf) credentials.TransportCredentials {
		cfg := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost"}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLSCertificate(t)}
		}
		return credentials.NewTLS(cfg)
	}

	t.Run("no client certificate is refused", func(t *testing.T) {
		if _, err := who(t, s, creds(nil)); status.Code(err) != codes.Unavailable {
			t.Errorf("err = %v, want UNAVAILABLE (handshake refused)", err)
		}
	})
	// The server logs the refusal once its side of the handshake returns.
	waitFor(t, "refused handshake logged", func() bool {
		return strings.Contains(s.logs.String(), `"event":"tls_handshake_failed"`)
	})
	t.Run("certificate from another CA is refused", func(t *testing.T) {
		rogue := certstest.NewCA(t, "rogue CA").Client(t, "orders", "spiffe://latch.test/orders")
		if _, err := who(t, s, creds(&rogue)); status.Code(err) != codes.Unavailable {
			t.Errorf("err = %v, want UNAVAILABLE (handshake refused)", err)
		}
		// The server's own CA is not a client CA either.
		serverIssued := s.ca.Client(t, "orders", "")
		if _, err := who(t, s, creds(&serverIssued)); status.Code(err) != codes.Unavailable {
			t.Errorf("certificate from the server's CA: err = %v, want UNAVAILABLE", err)
		}
	})
	t.Run("good certificate: identity visible to the handler and logged", func(t *testing.T) {
		c := clientCA.Client(t, "orders", "spiffe://latch.test/ns/shop/sa/orders", "orders.shop.internal")
		got, err := who(t, s, creds(&c))
		if err != nil {
			t.Fatalf("call with a good client certificate: %v", err)
		}
		want := "CN=orders,O=Latch tests|spiffe://latch.test/ns/shop/sa/orders|orders.shop.internal"
		if got != want {
			t.Errorf("identity = %q, want %q", got, want)
		}
		var found bool
		for _, line := range strings.Split(s.logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["grpc.method"] == "GetJWKS" {
				found = rec["peer_identity"] == "spiffe://latch.test/ns/shop/sa/orders"
			}
		}
		if !found {
			t.Errorf("RPC log record lacks peer_identity:\n%s", s.logs)
		}
	})
}

func TestPeerIdentityString(t *testing.T) {
	for _, tc := range []struct {
		id   server.PeerIdentity
		want string
	}{
		{server.PeerIdentity{Subject: "CN=a", URIs: []string{"spiffe://x/a"}, DNSNames: []string{"a.x"}}, "spiffe://x/a"},
		{server.PeerIdentity{Subject: "CN=a", DNSNames: []string{"a.x"}}, "a.x"},
		{server.PeerIdentity{Subject: "CN=a"}, "CN=a"},
	} {
		if got := tc.id.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.id, got, tc.want)
		}
	}
	if _, ok := server.PeerIdentityFromContext(context.Background()); ok {
		t.Errorf("identity found in a context without a peer")
	}
	if _, ok := server.PeerIdentityFromTLS(&tls.ConnectionState{}); ok {
		t.Errorf("identity found in a TLS state without verified chains")
	}
}

// TestReflectionOff checks that --reflection=false removes the reflection
// service, and that the same probe finds it when on.
func TestReflectionOff(t *testing.T) {
	for _, on := range []bool{true, false} {
		e := newOpsEnv(t, opsConfig{grpcOpts: []server.GRPCOption{server.WithReflection(on)}})
		stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		// Without reflection the server may end the stream before the
		// request is sent (Send then reports io.EOF); Recv has the status.
		sendErr := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
		if sendErr != nil && (on || !errors.Is(sendErr, io.EOF)) {
			t.Fatalf("reflection on=%v: Send: %v", on, sendErr)
		}
		resp, err := stream.Recv()
		if !on {
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("reflection off: Recv = %v, %v; want UNIMPLEMENTED", resp, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("reflection on: %v", err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, " "), "latch.v1.AuthService") {
			t.Errorf("reflection on: services %v lack latch.v1.AuthService", names)
		}
	}
}

func TestTransportValidate(t *testing.T) {
	if err := server.DefaultTransport().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := server.DefaultTransport()
	bad.MaxConcurrentStreams = 0
	bad.Keepalive.MaxConnectionAge = -time.Second
	bad.Enforcement.MinTime = time.Hour
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken transport")
	}
	for _, want := range []string{"MaxConcurrentStreams", "MaxConnectionAge", "Enforcement.MinTime"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestMaxConcurrentStreamsApplied: with a limit of one stream per
// connection, an open WatchRevocations stream holds the only slot, so a
// second RPC on the connection cannot start until the stream ends.
func TestMaxConcurrentStreamsApplied(t *testing.T) {
	tr := server.DefaultTransport()
	tr.MaxConcurrentStreams = 1
	e := newOpsEnv(t, opsConfig{grpcOpts: []server.GRPCOption{server.WithTransport(tr)}})
	wctx, cancel := context.WithCancel(e.introspector())
	defer cancel()
	stream, err := e.client.WatchRevocations(wctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	// The slot is taken: this call can only wait, so its deadline expires.
	short, cancelShort := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancelShort()
	if _, err := e.client.GetJWKS(short, &latchv1.GetJWKSRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("second RPC while the only stream slot is taken: %v, want DEADLINE_EXCEEDED", err)
	}
	cancel()
	if _, err := e.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{}); err != nil {
		t.Errorf("RPC after the stream ended: %v", err)
	}
}

// HTTP/2 frame types and flags used by rawH2 (RFC 9113 §6).
const (
	h2Settings = 0x4
	h2Ping     = 0x6
	h2GoAway   = 0x7
	h2Ack      = 0x1

	h2NoError          = 0x0
	h2EnhanceYourCalm  = 0xb
	h2ClientPreface    = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	rawH2ReadDeadline  = 30 * time.Second
	rawH2FrameMaxBytes = 1 << 16
)

// rawH2 is a bare HTTP/2 connection to the gRPC server of e: enough to
// send pings and see the frames the server answers with, which a grpc-go
// client hides (it also refuses to ping more often than every 10 s).
type rawH2 struct {
	t *testing.T
	c net.Conn
}

func dialRawH2(t *testing.T, e *opsEnv) *rawH2 {
	t.Helper()
	c, err := e.lis.DialContext(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A bound on a test that would otherwise hang, not a measurement.
	if err := c.SetDeadline(time.Now().Add(rawH2ReadDeadline)); err != nil {
		t.Fatal(err)
	}
	r := &rawH2{t: t, c: c}
	if _, err := io.WriteString(c, h2ClientPreface); err != nil {
		t.Fatal(err)
	}
	r.write(h2Settings, 0, nil)
	return r
}

func (r *rawH2) write(typ, flags byte, payload []byte) {
	r.t.Helper()
	hdr := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
	if _, err := r.c.Write(append(hdr, payload...)); err != nil {
		r.t.Fatalf("write frame %d: %v", typ, err)
	}
}

func (r *rawH2) ping(n byte) { r.write(h2Ping, 0, []byte{n, 0, 0, 0, 0, 0, 0, 0}) }

// read returns the next frame the server sends.
func (r *rawH2) read() (typ, flags byte, payload []byte, err error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if n > rawH2FrameMaxBytes {
		return 0, 0, nil, errors.New("frame too large")
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r.c, payload); err != nil {
		return 0, 0, nil, err
	}
	return hdr[3], hdr[4], payload, nil
}

// goAway reads frames until a GOAWAY and returns its error code and debug
// data; it fails the test if the connection ends first. acks counts the
// ping acknowledgements seen before it.
func (r *rawH2) goAway() (code uint32, debug string, acks int) {
	r.t.Helper()
	for {
		typ, flags, p, err := r.read()
		if err != nil {
			r.t.Fatalf("connection ended (%v) without a GOAWAY, after %d ping acks", err, acks)
		}
		switch {
		case typ == h2Ping && flags&h2Ack != 0:
			acks++
		case typ == h2GoAway && len(p) >= 8:
			return uint32(p[4])<<24 | uint32(p[5])<<16 | uint32(p[6])<<8 | uint32(p[7]), string(p[8:]), acks
		}
	}
}

// TestKeepaliveEnforcementApplied: the server holds clients to
// Transport.Enforcement. With a MinTime of an hour, a client pinging four
// times in a row is sent GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; with
// Latch's policy made permissive (MinTime 1 ns, pings without streams
// allowed) the same pings are all answered, which grpc-go's own default
// policy (5 minutes, no pings without a stream) would not do, so the test
// fails if the policy is not passed to grpc-go.
func TestKeepaliveEnforcementApplied(t *testing.T) {
	strict := server.DefaultTransport()
	strict.Enforcement.MinTime = time.Hour
	e := newOpsEnv(t, opsConfig{grpcOpts: []server.GRPCOption{server.WithTransport(strict)}})
	c := dialRawH2(t, e)
	for i := range byte(4) {
		c.ping(i)
	}
	if code, debug, _ := c.goAway(); code != h2EnhanceYourCalm || debug != "too_many_pings" {
		t.Errorf("strict policy: GOAWAY %#x %q, want ENHANCE_YOUR_CALM too_many_pings", code, debug)
	}

	lax := server.DefaultTransport()
	lax.Enforcement.MinTime = time.Nanosecond
	e = newOpsEnv(t, opsConfig{grpcOpts: []server.GRPCOption{server.WithTransport(lax)}})
	c = dialRawH2(t, e)
	const pings = 6
	for i := range byte(pings) {
		c.ping(i)
	}
	acks := 0
	for acks < pings {
		typ, flags, p, err := c.read()
		if err != nil {
			t.Fatalf("lax policy: connection ended (%v) after %d of %d ping acks", err, acks, pings)
		}
		switch {
		case typ == h2Ping && flags&h2Ack != 0:
			acks++
		case typ == h2GoAway:
			t.Fatalf("lax policy: GOAWAY %q after %d ping acks: the server does not apply Transport.Enforcement", p[min(8, len(p)):], acks)
		}
	}
}

// TestMaxConnectionAgeApplied: a connection older than
// Transport.Keepalive.MaxConnectionAge is sent GOAWAY NO_ERROR, so that
// clients reconnect (and rebalance); without the limit it never is, and
// the read below runs into its deadline.
func TestMaxConnectionAgeApplied(t *testing.T) {
	tr := server.DefaultTransport()
	tr.Keepalive.MaxConnectionAge = 50 * time.Millisecond
	tr.Keepalive.MaxConnectionAgeGrace = time.Second
	e := newOpsEnv(t, opsConfig{grpcOpts: []server.GRPCOption{server.WithTransport(tr)}})
	if code, _, _ := dialRawH2(t, e).goAway(); code != h2NoError {
		t.Errorf("GOAWAY at max connection age: code %#x, want NO_ERROR", code)
	}
}
