package main

// Several `latch serve` processes on one real etcd: what one replica does,
// every replica honours.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// etcdEndpoints is a running etcd: one member (*etcdtest.Server) or a
// cluster (*etcdtest.Cluster), whose client URLs a replica is given.
type etcdEndpoints interface{ Endpoints() []string }

// etcdArgs are the storage flags of a replica on srv (every client URL,
// as an operator gives them) under prefix.
func etcdArgs(srv etcdEndpoints, prefix string) []string {
	return []string{"--storage", "etcd", "--etcd-endpoints", strings.Join(srv.Endpoints(), ","), "--etcd-prefix", prefix}
}

// etcdUserAdd runs `latch user add` against etcd (allowed while replicas
// run) with the role, then any extra flags.
func etcdUserAdd(t *testing.T, ctx context.Context, srv etcdEndpoints, prefix, email, pw string, roleAndFlags ...string) {
	t.Helper()
	args := append([]string{"user", "add", "--email", email, "--password-stdin"}, etcdArgs(srv, prefix)...)
	if len(roleAndFlags) > 0 {
		args = append(append(args, "--role", roleAndFlags[0]), roleAndFlags[1:]...)
	}
	cmd := exec.CommandContext(ctx, latchBinary(t), args...)
	cmd.Stdin = strings.NewReader(pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("latch user add %s: %v\n%s", email, err, out)
	}
}

// replica is a running `latch serve` and a Go gRPC client to it.
type replica struct {
	name string
	proc *latchProc
	cli  latchv1.AuthServiceClient
}

func startReplicas(t *testing.T, ctx context.Context, srv *etcdtest.Server, prefix string, names ...string) []replica {
	t.Helper()
	var out []replica
	for _, n := range names {
		// The 64-way refresh race sends ~21 losing (invalid) refresh tokens
		// to each replica from one address, on top of the reuse checks:
		// the per-address probe limit (default burst 30) is per replica and
		// tested elsewhere, so it is raised here to keep it out of the race.
		p := startLatch(t, ctx, "", append(etcdArgs(srv, prefix), "--probe-burst", "1000", "--refresh-reuse-grace", "0")...)
		conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		out = append(out, replica{name: n, proc: p, cli: latchv1.NewAuthServiceClient(conn)})
	}
	return out
}

// TestReplicasShareEtcd: three replicas on one etcd. Login on A, refresh on
// B, reuse on C revokes the session everywhere (Refresh fails and
// Introspect is inactive on every replica, and a WatchRevocations stream on
// A reports the session C revoked); a Revoke on B reaches A's stream; 64
// concurrent refreshes of one token spread over the replicas have exactly
// one winner; every replica publishes the same JWKS.
func TestReplicasShareEtcd(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	srv := etcdtest.Start(t)
	const prefix = "/latch-e2e/"
	etcdUserAdd(t, ctx, srv, prefix, "alice@example.com", "alice-password-1", "user")
	etcdUserAdd(t, ctx, srv, prefix, "svc@example.com", "svc-password-111", server.RoleIntrospect)
	reps := startReplicas(t, ctx, srv, prefix, "A", "B", "C")
	a, b, c := reps[0], reps[1], reps[2]

	// Keys: the first replica generated the keys; the others adopted them.
	var jwks, kids []string
	for _, r := range reps {
		resp, err := http.Get("http://" + r.proc.httpAddr + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		jwks = append(jwks, string(body))
		g, err := r.cli.GetJWKS(ctx, &latchv1.GetJWKSRequest{})
		if err != nil || len(g.GetKeys()) == 0 {
			t.Fatalf("GetJWKS on %s = %v, %v; want keys", r.name, g, err)
		}
		var ids []string
		for _, k := range g.GetKeys() {
			ids = append(ids, k.GetKid())
		}
		slices.Sort(ids)
		kids = append(kids, strings.Join(ids, ","))
	}
	if jwks[0] != jwks[1] || jwks[1] != jwks[2] || !strings.Contains(jwks[0], `"kid"`) || kids[0] != kids[1] || kids[1] != kids[2] {
		t.Fatalf("replicas publish different key sets:\n%s\n%s", strings.Join(jwks, "\n"), strings.Join(kids, "\n"))
	}

	login := func(r replica, email, pw, aud string) *latchv1.TokenPair {
		t.Helper()
		resp, err := r.cli.Login(ctx, &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
		if err != nil {
			t.Fatalf("Login on %s: %v", r.name, err)
		}
		return resp.GetTokens()
	}
	svc := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+login(a, "svc@example.com", "svc-password-111", "https://latch.test").GetAccessToken())
	active := func(r replica, tok string) bool {
		t.Helper()
		resp, err := r.cli.Introspect(svc, &latchv1.IntrospectRequest{Token: tok})
		if err != nil {
			t.Fatalf("Introspect on %s: %v", r.name, err)
		}
		return resp.GetActive()
	}
	wantRefreshFails := func(r replica, tok, what string) {
		t.Helper()
		_, err := r.cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tok})
		if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || st.Message() != "invalid refresh token" {
			t.Errorf("%s on %s: %v, want UNAUTHENTICATED invalid refresh token", what, r.name, err)
		}
	}

	// A WatchRevocations stream on A, read in the background.
	events := make(chan *latchv1.RevocationEvent, 256)
	streamCtx, stopStream := context.WithCancel(svc)
	defer stopStream()
	stream, err := a.cli.WatchRevocations(streamCtx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatalf("WatchRevocations header: %v", err)
	}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- ev
		}
	}()
	waitEvent := func(match func(*latchv1.RevocationEvent) bool, what string) {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("A's WatchRevocations stream ended before %s", what)
				}
				if match(ev) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("A's WatchRevocations stream never reported %s", what)
			}
		}
	}

	// Login on A (with grpcurl, a client independent of ours), refresh on B.
	p1 := tokensOf(t, mustOK(t, grpcurl(t, ctx, a.proc.grpcAddr, nil, svcLogin,
		map[string]string{"email": "alice@example.com", "password": "alice-password-1"}), "Login on A"))
	r2, err := b.cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: p1.refresh})
	if err != nil {
		t.Fatalf("Refresh on B of a token issued by A: %v", err)
	}
	p2 := r2.GetTokens()
	for _, r := range reps {
		if !active(r, p2.GetAccessToken()) {
			t.Fatalf("Introspect on %s: fresh token inactive", r.name)
		}
	}
	// Reuse on C: the consumed token revokes the session everywhere.
	wantCode(t, grpcurl(t, ctx, c.proc.grpcAddr, nil, svcRefresh, map[string]string{"refresh_token": p1.refresh}),
		"Unauthenticated", "invalid refresh token", "reuse on C")
	for _, r := range reps {
		wantRefreshFails(r, p2.GetRefreshToken(), "current token after reuse")
		if active(r, p1.access) || active(r, p2.GetAccessToken()) {
			t.Errorf("Introspect on %s: an access token of the reused session is still active", r.name)
		}
	}
	waitEvent(func(ev *latchv1.RevocationEvent) bool { return ev.GetSessionId() == p1.sid }, "the session revoked on C")
	if !strings.Contains(c.proc.logText(), `"event":"refresh_reuse_detected"`) {
		t.Errorf("C did not log the reuse detection")
	}

	// Revoke an access token on B: A's stream reports its jti; C's
	// Introspect (with the token verified and cached before) says inactive.
	p3 := login(c, "alice@example.com", "alice-password-1", "")
	if !active(c, p3.GetAccessToken()) {
		t.Fatal("fresh token inactive on C")
	}
	if _, err := b.cli.Revoke(ctx, &latchv1.RevokeRequest{Token: p3.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	if active(c, p3.GetAccessToken()) || active(a, p3.GetAccessToken()) {
		t.Error("an access token revoked on B is still active on A or C")
	}
	waitEvent(func(ev *latchv1.RevocationEvent) bool { return ev.GetJti() != "" }, "the access token revoked on B")

	// 64 concurrent refreshes of one token, spread over the replicas.
	p4 := login(a, "alice@example.com", "alice-password-1", "")
	const n = 64
	errs := make([]error, n)
	winners := make([]*latchv1.TokenPair, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := reps[i%len(reps)].cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: p4.GetRefreshToken()})
			errs[i], winners[i] = err, resp.GetTokens()
		})
	}
	close(start)
	wg.Wait()
	var won []int
	for i, err := range errs {
		if err == nil {
			won = append(won, i)
			continue
		}
		if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated {
			t.Errorf("refresh %d on %s: %v, want OK or UNAUTHENTICATED", i, reps[i%len(reps)].name, err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent refreshes across 3 replicas succeeded (%v), want exactly 1", len(won), n, won)
	}
	// The losers counted as reuse: the winner's token is dead too.
	for _, r := range reps {
		wantRefreshFails(r, winners[won[0]].GetRefreshToken(), "winner's token after the race")
	}
	waitEvent(func(ev *latchv1.RevocationEvent) bool { return ev.GetSessionId() == p4.GetSessionId() }, "the raced session")

	for _, r := range reps {
		checkLogsHoldNoSecrets(t, r.proc.logText(), "alice-password-1", "svc-password-111", p1.refresh, p1.access,
			p2.GetRefreshToken(), p4.GetRefreshToken())
	}
	// Each replica followed the others' revocations.
	for _, r := range reps {
		if !strings.Contains(r.proc.logText(), `"event":"revocation_feed_started"`) {
			t.Errorf("%s did not start the revocation feed", r.name)
		}
	}
}

// TestServeEtcdConfigErrors: bad storage settings are all reported at once,
// before anything is opened, and an unreachable etcd fails the start with a
// clear error within the dial timeout.
func TestServeEtcdConfigErrors(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	out, err := serveCommand(t, ctx, "--storage", "etcd", "--db", "x.db",
		"--etcd-endpoints", "ftp://h:1", "--etcd-cert", "c.pem", "--etcd-prefix", "latch", "--sweep-interval", "2m").CombinedOutput()
	if err == nil {
		t.Fatal("serve with bad etcd flags started")
	}
	for _, want := range []string{"storage.db (--db, LATCH_DB) applies only to storage.backend (LATCH_STORAGE) bbolt",
		`storage.etcd.endpoints (LATCH_ETCD_ENDPOINTS) "ftp://h:1": want http://host:port or https://host:port`,
		"storage.etcd.cert_file (LATCH_ETCD_CERT) and storage.etcd.key_file (LATCH_ETCD_KEY) go together",
		`storage.etcd.prefix (LATCH_ETCD_PREFIX) "latch" must start with '/'`,
		"storage.sweep_interval (LATCH_SWEEP_INTERVAL) applies only to storage.backend (LATCH_STORAGE) bbolt"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = serveCommand(t, ctx, "--storage", "etcd", "--etcd-endpoints", "http://10.1.2.3:2379").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `storage.etcd.endpoints (LATCH_ETCD_ENDPOINTS) "http://10.1.2.3:2379" is plaintext over the network: `+
		"use https:// with storage.etcd.ca_file (LATCH_ETCD_CA)") {
		t.Errorf("plaintext etcd over the network: %v\n%s", err, out)
	}
	out, err = serveCommand(t, ctx, "--etcd-endpoints", "http://127.0.0.1:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "storage.etcd.endpoints (LATCH_ETCD_ENDPOINTS) applies only to storage.backend (LATCH_STORAGE) etcd") {
		t.Errorf("etcd flag with bbolt: %v\n%s", err, out)
	}
	out, err = serveCommand(t, ctx, "--storage", "etcd", "--etcd-endpoints", "http://127.0.0.1:1",
		"--etcd-dial-timeout", "1s", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "open etcd storage") {
		t.Errorf("unreachable etcd: %v\n%s", err, out)
	}
}

// TestServeEtcdTLS: with an etcd that serves TLS only and requires client
// certificates, a replica started with --etcd-ca/--etcd-cert/--etcd-key
// serves; one without the client certificate, or with http://, does not
// start.
func TestServeEtcdTLS(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	srv := etcdtest.Start(t, etcdtest.WithTLS())
	tlsArgs := []string{"--etcd-ca", srv.CAFile, "--etcd-cert", srv.CertFile, "--etcd-key", srv.KeyFile}
	const prefix = "/latch-tls/"
	etcdUserAdd(t, ctx, srv, prefix, "alice@example.com", "alice-password-1", append([]string{"user"}, tlsArgs...)...)
	p := startLatch(t, ctx, "", append(etcdArgs(srv, prefix), tlsArgs...)...)
	tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "alice@example.com", "password": "alice-password-1"}), "Login over etcd with TLS"))

	base := []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--etcd-dial-timeout", "2s"}
	for name, args := range map[string][]string{
		"no client certificate": append(etcdArgs(srv, prefix), "--etcd-ca", srv.CAFile),
		"unknown CA":            append(etcdArgs(srv, prefix), "--etcd-cert", srv.CertFile, "--etcd-key", srv.KeyFile),
	} {
		out, err := latchCommand(t, ctx, append(base, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "open etcd storage") {
			t.Errorf("%s: serve = %v, want a refusal to start\n%s", name, err, out)
		}
	}
}

// TestReplicasRideOutEtcdRestart: while etcd is down, requests that need it
// fail with UNAVAILABLE and a fixed message (keys are still served from
// memory); once etcd is back, the same processes serve again, and a
// revocation made on B reaches the WatchRevocations stream opened on A
// before the outage (the revocation feed resumed by itself).
func TestReplicasRideOutEtcdRestart(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	srv := etcdtest.Start(t)
	const prefix = "/latch-restart/"
	etcdUserAdd(t, ctx, srv, prefix, "alice@example.com", "alice-password-1", "user")
	etcdUserAdd(t, ctx, srv, prefix, "svc@example.com", "svc-password-111", server.RoleIntrospect)
	var reps []replica
	for _, n := range []string{"A", "B"} {
		p := startLatch(t, ctx, "", append(etcdArgs(srv, prefix), "--etcd-dial-timeout", "2s", "--etcd-request-timeout", "2s")...)
		conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		reps = append(reps, replica{name: n, proc: p, cli: latchv1.NewAuthServiceClient(conn)})
	}
	a, b := reps[0], reps[1]
	svcLoginResp, err := a.cli.Login(ctx, &latchv1.LoginRequest{Email: "svc@example.com", Password: "svc-password-111", Audience: "https://latch.test"})
	if err != nil {
		t.Fatal(err)
	}
	svc := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+svcLoginResp.GetTokens().GetAccessToken())
	stream, err := a.cli.WatchRevocations(svc, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	sessions := make(chan string, 64)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(sessions)
				return
			}
			sessions <- ev.GetSessionId()
		}
	}()

	srv.Stop()
	_, err = a.cli.Login(ctx, &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password-1"})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != "service unavailable; retry later" {
		t.Fatalf("Login with etcd down = %v, want UNAVAILABLE \"service unavailable; retry later\"", err)
	}
	if _, err := a.cli.GetJWKS(ctx, &latchv1.GetJWKSRequest{}); err != nil {
		t.Fatalf("GetJWKS with etcd down: %v", err)
	}
	if !strings.Contains(a.proc.logText(), `"event":"storage_unavailable"`) {
		t.Error("the outage was not logged")
	}
	if code := readyz(t, a); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz on A with etcd down = %d, want 503", code)
	}

	srv.Restart(t)
	for readyz(t, b) != http.StatusOK { // readiness follows etcd back
		if ctx.Err() != nil {
			t.Fatal("B never became ready again after etcd came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var tp *latchv1.TokenPair
	for tp == nil { // the client reconnects with backoff
		resp, err := b.cli.Login(ctx, &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password-1"})
		switch st, _ := status.FromError(err); {
		case err == nil:
			tp = resp.GetTokens()
		case st.Code() != codes.Unavailable || ctx.Err() != nil:
			t.Fatalf("Login after etcd restart: %v", err)
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	if _, err := b.cli.Revoke(ctx, &latchv1.RevokeRequest{Token: tp.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case sid, ok := <-sessions:
			if !ok {
				t.Fatal("A's WatchRevocations stream ended during the etcd restart")
			}
			if sid == tp.GetSessionId() {
				return
			}
		case <-ctx.Done():
			t.Fatal("A's stream never reported the session revoked on B after etcd came back")
		}
	}
}

// TestReplicasFollowKeyRotation: a key rotation made by one replica is
// published, and then used for signing, by every replica. The rotating
// replica is a Server in this test process on the same etcd prefix (the
// code path behind AdminService's RotateSigningKey); the followers are
// `latch serve` processes that reload the key ring from etcd.
func TestReplicasFollowKeyRotation(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	srv := etcdtest.Start(t)
	const prefix = "/latch-keys/"
	etcdUserAdd(t, ctx, srv, prefix, "alice@example.com", "alice-password-1", "user")
	var reps []replica
	for _, n := range []string{"A", "B"} {
		p := startLatch(t, ctx, "", append(etcdArgs(srv, prefix), "--key-reload-interval", "200ms")...)
		conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		reps = append(reps, replica{name: n, proc: p, cli: latchv1.NewAuthServiceClient(conn)})
	}

	store, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{srv.Endpoint}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hasher, err := password.NewHasher(password.DefaultParams(), 1)
	if err != nil {
		t.Fatal(err)
	}
	operator, err := server.New(ctx, store, hasher, server.Config{Issuer: "https://latch.test", Audiences: []string{"orders", "billing"}})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := operator.RotateSigningKey(ctx, true)
	if err != nil {
		t.Fatalf("RotateSigningKey: %v", err)
	}
	var newKid string
	for _, k := range keys {
		if k.State == storage.KeyActive {
			newKid = k.ID
		}
	}
	if newKid == "" {
		t.Fatalf("no active key after rotation: %+v", keys)
	}
	for _, r := range reps {
		for { // each follower reloads every 200ms
			resp, err := r.cli.Login(ctx, &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password-1"})
			if err != nil {
				t.Fatalf("Login on %s: %v", r.name, err)
			}
			if kidOf(t, resp.GetTokens().GetAccessToken()) == newKid {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never signed with the key rotated in by another replica", r.name)
			}
			time.Sleep(100 * time.Millisecond)
		}
		jwks, err := r.cli.GetJWKS(ctx, &latchv1.GetJWKSRequest{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, k := range jwks.GetKeys() {
			found = found || k.GetKid() == newKid
		}
		if !found {
			t.Errorf("%s signs with %s but does not publish it", r.name, newKid)
		}
	}
}

// kidOf returns the kid of a JWS compact token's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	head, _, ok := strings.Cut(tok, ".")
	if !ok {
		t.Fatalf("not a JWS: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// TestServeEtcdAuth: with etcd auth on, a replica logs in as an etcd user
// whose role covers only its prefix (password from LATCH_ETCD_PASSWORD) and
// serves; a wrong password fails the start without echoing it.
func TestServeEtcdAuth(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	srv := etcdtest.Start(t)
	const prefix = "/latch-auth/"
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-password-1"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "latch"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "latch", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "latch", "latch-etcd-password"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "latch", "latch"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd auth setup step %d: %v", i, err)
		}
	}

	t.Setenv("LATCH_ETCD_PASSWORD", "latch-etcd-password")
	etcdUserAdd(t, ctx, srv, prefix, "alice@example.com", "alice-password-1", "user", "--etcd-username", "latch")
	p := startLatch(t, ctx, "", append(etcdArgs(srv, prefix), "--etcd-username", "latch")...)
	p1 := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "alice@example.com", "password": "alice-password-1"}), "Login with etcd auth"))
	wantCode(t, grpcurl(t, ctx, p.grpcAddr, nil, svcRefresh, map[string]string{"refresh_token": p1.refresh}), "OK", "", "Refresh with etcd auth")

	// From a file, as an orchestrator mounts a secret; both ways at once
	// are refused before anything is opened.
	pwFile := filepath.Join(t.TempDir(), "etcd-password")
	if err := os.WriteFile(pwFile, []byte("latch-etcd-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LATCH_ETCD_PASSWORD", "")
	pf := startLatch(t, ctx, "", append(etcdArgs(srv, prefix), "--etcd-username", "latch", "--etcd-password-file", pwFile)...)
	mustOK(t, grpcurl(t, ctx, pf.grpcAddr, nil, svcLogin,
		map[string]string{"email": "alice@example.com", "password": "alice-password-1"}), "Login with the etcd password from a file")
	t.Setenv("LATCH_ETCD_PASSWORD", "latch-etcd-password")
	out, err := serveCommand(t, ctx, append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--etcd-username", "latch", "--etcd-password-file", pwFile}, etcdArgs(srv, prefix)...)...).CombinedOutput()
	if want := "give the etcd password once: LATCH_ETCD_PASSWORD or storage.etcd.password_file (LATCH_ETCD_PASSWORD_FILE), not both"; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("serve with the etcd password twice = %v, want %q\n%s", err, want, out)
	}

	t.Setenv("LATCH_ETCD_PASSWORD", "wrong-etcd-password")
	out, err = serveCommand(t, ctx, append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--etcd-username", "latch", "--etcd-dial-timeout", "3s"}, etcdArgs(srv, prefix)...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "authentication failed") {
		t.Errorf("serve with a wrong etcd password = %v, want an authentication failure\n%s", err, out)
	}
	if strings.Contains(string(out), "wrong-etcd-password") {
		t.Errorf("the etcd password is echoed:\n%s", out)
	}
	checkLogsHoldNoSecrets(t, p.logText(), "latch-etcd-password", "alice-password-1", p1.refresh)
}

// readyz returns the status code of the replica's GET /readyz.
func readyz(t *testing.T, r replica) int {
	t.Helper()
	resp, err := http.Get("http://" + r.proc.httpAddr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz on %s: %v", r.name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
