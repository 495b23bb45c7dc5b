package main

// End-to-end tests: the real binary, built from this package, on free
// loopback ports with a temporary database, driven by grpcurl (a real,
// independent gRPC client) exactly as the walkthrough in docs/getting-started.md does.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// grpcurlPath finds grpcurl: $LATCH_GRPCURL, then PATH, then GOBIN/GOPATH
// bin. The README's test command (.ci/test) installs a pinned version.
func grpcurlPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LATCH_GRPCURL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		cands := []string{}
		if len(lines) > 0 && lines[0] != "" {
			cands = append(cands, filepath.Join(lines[0], "grpcurl"))
		}
		if len(lines) > 1 {
			cands = append(cands, filepath.Join(lines[1], "bin", "grpcurl"))
		}
		for _, c := range cands {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
	}
	t.Fatalf("grpcurl not found; run the tests with .ci/test, or install it: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4")
	return ""
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// latchBinary builds the latch binary once per test run.
func latchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "latch-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "latch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// userAdd runs `latch user add` and returns its combined output and error.
func userAdd(ctx context.Context, bin, db, email, pw string, roles ...string) (string, error) {
	args := []string{"user", "add", "--db", db, "--email", email, "--password-stdin"}
	for _, r := range roles {
		args = append(args, "--role", r)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(pw + "\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// latchProc is a running `latch serve`.
type latchProc struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	mu       sync.Mutex
	logs     bytes.Buffer
	stdout   bytes.Buffer
	done     chan error
}

// stdoutWith waits until the server's standard output holds marker (it is
// copied by its own goroutine, so it may lag behind the log lines) and
// returns it; the test fails if ctx ends first.
func (p *latchProc) stdoutWith(t *testing.T, ctx context.Context, marker string) string {
	t.Helper()
	for {
		p.mu.Lock()
		out := p.stdout.String()
		p.mu.Unlock()
		if strings.Contains(out, marker) {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("standard output never held %q: %v\n%s", marker, ctx.Err(), out)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (p *latchProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// startLatch starts `latch serve` on free loopback ports and waits for its
// "listening" log line, which carries the real addresses. An empty db
// leaves the storage flags to extra.
func startLatch(t *testing.T, ctx context.Context, db string, extra ...string) *latchProc {
	t.Helper()
	storageArgs := []string{"--db", db}
	if db == "" { // the storage is chosen by extra (e.g. --storage etcd)
		storageArgs = nil
	}
	args := append(append(append([]string{"serve"}, storageArgs...), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--issuer", "https://latch.test", "--audience", "orders", "--audience", "billing", "--log-format", "json"), extra...)
	cmd := latchCommand(t, context.Background(), args...)
	p := &latchProc{cmd: cmd, done: make(chan error, 1)}
	cmd.Stdout = lockedWriter{&p.mu, &p.stdout}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var rec map[string]any
			if !signalled && json.Unmarshal([]byte(line), &rec) == nil && rec["event"] == "listening" {
				p.grpcAddr, _ = rec["grpc_addr"].(string)
				p.httpAddr, _ = rec["http_addr"].(string)
				signalled = true
				close(ready)
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("latch serve exited before listening: %v\n%s", err, p.logText())
	case <-ctx.Done():
		t.Fatalf("latch serve did not start: %v\n%s", ctx.Err(), p.logText())
	}
	return p
}

// stop sends sig and waits for the process to exit.
func (p *latchProc) stop(t *testing.T, ctx context.Context, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal: %v", err)
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		t.Fatalf("latch did not exit after %v: %v", sig, ctx.Err())
		return nil
	}
}

// grpcResult is one grpcurl invocation's outcome.
type grpcResult struct {
	out    map[string]any
	raw    string
	stderr string
	err    error
}

// code returns the gRPC code grpcurl reported ("OK" on success).
func (r grpcResult) code() string {
	if r.err == nil {
		return "OK"
	}
	if m := regexp.MustCompile(`Code: (\w+)`).FindStringSubmatch(r.stderr); m != nil {
		return m[1]
	}
	return "?" + r.stderr
}

func (r grpcResult) message() string {
	if m := regexp.MustCompile(`Message: (.*)`).FindStringSubmatch(r.stderr); m != nil {
		return strings.TrimSpace(m[1])
	}
	return ""
}

func grpcurl(t *testing.T, ctx context.Context, addr string, headers []string, method string, body any) grpcResult {
	t.Helper()
	args := []string{"-plaintext", "-max-time", "20"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "-d", string(b))
	}
	args = append(args, addr)
	if method != "" {
		args = append(args, method)
	}
	cmd := exec.CommandContext(ctx, grpcurlPath(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := grpcResult{raw: stdout.String(), stderr: stderr.String(), err: err}
	if err == nil && strings.HasPrefix(strings.TrimSpace(r.raw), "{") {
		if jerr := json.Unmarshal(stdout.Bytes(), &r.out); jerr != nil {
			t.Fatalf("grpcurl %s: output is not JSON: %v\n%s", method, jerr, r.raw)
		}
	}
	return r
}

func mustOK(t *testing.T, r grpcResult, what string) map[string]any {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v\n%s", what, r.err, r.stderr)
	}
	return r.out
}

func wantCode(t *testing.T, r grpcResult, code, msg, what string) {
	t.Helper()
	if got := r.code(); got != code {
		t.Errorf("%s: code = %s, want %s (%s)", what, got, code, r.stderr)
	}
	if msg != "" && r.message() != msg {
		t.Errorf("%s: message = %q, want %q", what, r.message(), msg)
	}
}

type pair struct{ access, refresh, sid string }

func tokensOf(t *testing.T, out map[string]any) pair {
	t.Helper()
	tk, ok := out["tokens"].(map[string]any)
	if !ok {
		t.Fatalf("response has no tokens: %v", out)
	}
	p := pair{}
	p.access, _ = tk["accessToken"].(string)
	p.refresh, _ = tk["refreshToken"].(string)
	p.sid, _ = tk["sessionId"].(string)
	if p.access == "" || p.refresh == "" || p.sid == "" || tk["tokenType"] != "Bearer" {
		t.Fatalf("incomplete token pair: %v", tk)
	}
	return p
}

const (
	svcIntrospect = "latch.v1.AuthService/Introspect"
	svcLogin      = "latch.v1.AuthService/Login"
	svcRefresh    = "latch.v1.AuthService/Refresh"
	svcRevoke     = "latch.v1.AuthService/Revoke"
)

// TestEndToEndWalkthrough drives the walkthrough of docs/getting-started.md against the real
// binary: user add for a person and a service, Login, Introspect with the
// service's token, Refresh, reuse detection, Revoke, JWKS over gRPC and
// HTTP, graceful stop, and revocations that survive a restart and kill -9.
func TestEndToEndWalkthrough(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	bin := latchBinary(t)
	db := filepath.Join(t.TempDir(), "latch.db")
	const alicePW, svcPW = "alice-password-1", "service-password-1"

	if out, err := userAdd(ctx, bin, db, "Alice@Example.com", alicePW, "user"); err != nil {
		t.Fatalf("user add alice: %v\n%s", err, out)
	}
	if out, err := userAdd(ctx, bin, db, "svc@example.com", svcPW, "introspect"); err != nil {
		t.Fatalf("user add svc: %v\n%s", err, out)
	}
	if out, err := userAdd(ctx, bin, db, "alice@example.com", alicePW); err == nil || !strings.Contains(out, "already exists") {
		t.Errorf("duplicate user add: err=%v out=%q, want failure saying it already exists", err, out)
	}
	if out, err := userAdd(ctx, bin, db, "short@example.com", "short"); err == nil || !strings.Contains(out, "8 to 1024 bytes") {
		t.Errorf("user add with a 5-byte password: err=%v out=%q, want refusal", err, out)
	}

	p := startLatch(t, ctx, db)
	addr := p.grpcAddr

	t.Run("user add while serving fails fast and clearly", func(t *testing.T) {
		start := time.Now()
		out, err := userAdd(ctx, bin, db, "bob@example.com", "bob-password-1")
		if err == nil || !strings.Contains(out, "in use by another process") {
			t.Errorf("user add on a served db: err=%v out=%q, want 'in use by another process'", err, out)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("user add took %v to give up; want a couple of seconds", d)
		}
	})

	t.Run("reflection and health", func(t *testing.T) {
		r := grpcurl(t, ctx, addr, nil, "list", nil)
		for _, svc := range []string{"latch.v1.AuthService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !strings.Contains(r.raw, svc) {
				t.Errorf("grpcurl list lacks %s:\n%s", svc, r.raw)
			}
		}
		h := mustOK(t, grpcurl(t, ctx, addr, nil, "grpc.health.v1.Health/Check", map[string]any{}), "health")
		if h["status"] != "SERVING" {
			t.Errorf("health = %v, want SERVING", h)
		}
	})

	bad := grpcurl(t, ctx, addr, nil, svcLogin, map[string]any{"email": "alice@example.com", "password": "wrong-password"})
	wantCode(t, bad, "Unauthenticated", "invalid email or password", "wrong password")
	unknown := grpcurl(t, ctx, addr, nil, svcLogin, map[string]any{"email": "nobody@example.com", "password": "wrong-password"})
	wantCode(t, unknown, "Unauthenticated", "invalid email or password", "unknown email")
	wantCode(t, grpcurl(t, ctx, addr, nil, svcLogin, map[string]any{"email": "alice@example.com"}), "InvalidArgument", "", "missing password")

	alice := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin,
		map[string]any{"email": "alice@example.com", "password": alicePW, "audience": "billing"}), "login alice"))
	// The service logs in for Latch's own audience, the issuer: only such
	// tokens may call Introspect.
	svc := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin,
		map[string]any{"email": "svc@example.com", "password": svcPW, "audience": "https://latch.test"}), "login svc"))
	auth := []string{"authorization: Bearer " + svc.access}

	introspect := func(tok string) map[string]any {
		t.Helper()
		return mustOK(t, grpcurl(t, ctx, addr, auth, svcIntrospect, map[string]any{"token": tok}), "introspect")
	}

	t.Run("introspect access token", func(t *testing.T) {
		got := introspect(alice.access)
		if got["active"] != true || got["tokenType"] != "access_token" || got["sessionId"] != alice.sid ||
			got["iss"] != "https://latch.test" || fmt.Sprint(got["aud"]) != "[billing]" || fmt.Sprint(got["roles"]) != "[user]" {
			t.Errorf("introspect = %v", got)
		}
		if sub, _ := got["sub"].(string); sub == "" || strings.Contains(sub, "@") {
			t.Errorf("sub = %q, want the user id, never the email", sub)
		}
	})

	t.Run("introspect needs a caller credential with role introspect", func(t *testing.T) {
		wantCode(t, grpcurl(t, ctx, addr, nil, svcIntrospect, map[string]any{"token": alice.access}), "Unauthenticated", "", "no credential")
		aliceSelf := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin,
			map[string]any{"email": "alice@example.com", "password": alicePW, "audience": "https://latch.test"}), "login alice for Latch"))
		wantCode(t, grpcurl(t, ctx, addr, []string{"authorization: Bearer " + aliceSelf.access}, svcIntrospect,
			map[string]any{"token": alice.access}), "PermissionDenied", "", "credential without role")
		wantCode(t, grpcurl(t, ctx, addr, []string{"authorization: Bearer " + alice.access}, svcIntrospect,
			map[string]any{"token": alice.access}), "Unauthenticated", "invalid caller credential", "relying party's token as credential")
		wantCode(t, grpcurl(t, ctx, addr, []string{"authorization: Basic abc"}, svcIntrospect,
			map[string]any{"token": alice.access}), "Unauthenticated", "", "wrong scheme")
	})

	t.Run("introspect of garbage is inactive with no other field", func(t *testing.T) {
		for _, tok := range []string{"garbage", alice.access + "x", strings.Repeat("a", 43)} {
			if got := introspect(tok); len(got) != 0 {
				t.Errorf("introspect(invalid) = %v, want {} (active=false, nothing else)", got)
			}
		}
	})

	var rotated pair
	t.Run("refresh rotates, reuse revokes the session", func(t *testing.T) {
		first := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]any{"refresh_token": alice.refresh}), "refresh"))
		if first.sid != alice.sid || first.refresh == alice.refresh {
			t.Fatalf("refresh: sid %s→%s, refresh changed=%v", alice.sid, first.sid, first.refresh != alice.refresh)
		}
		// A second rotation: the first token is now two generations old, so
		// presenting it is reuse even within the retry window.
		rotated = tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]any{"refresh_token": first.refresh}), "second refresh"))
		if got := introspect(rotated.access); got["active"] != true || fmt.Sprint(got["aud"]) != "[billing]" {
			t.Errorf("rotated access token: %v, want active with audience billing", got)
		}
		if got := introspect(alice.refresh); len(got) != 0 {
			t.Errorf("introspect(rotated refresh token) = %v, want inactive", got)
		}
		// Replay the first refresh token: reuse.
		wantCode(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]any{"refresh_token": alice.refresh}),
			"Unauthenticated", "invalid refresh token", "reuse")
		for name, tok := range map[string]string{"first access": alice.access, "rotated access": rotated.access, "current refresh": rotated.refresh} {
			if got := introspect(tok); len(got) != 0 {
				t.Errorf("after reuse, introspect(%s) = %v, want inactive", name, got)
			}
		}
		wantCode(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]any{"refresh_token": rotated.refresh}),
			"Unauthenticated", "invalid refresh token", "refresh after reuse")
		if !strings.Contains(p.logText(), `"event":"refresh_reuse_detected"`) {
			t.Errorf("reuse detection not logged with event=refresh_reuse_detected")
		}
	})

	t.Run("revoke refresh token ends the session", func(t *testing.T) {
		s := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin, map[string]any{"email": "alice@example.com", "password": alicePW}), "login"))
		mustOK(t, grpcurl(t, ctx, addr, nil, svcRevoke, map[string]any{"token": s.refresh, "token_type_hint": "TOKEN_TYPE_HINT_REFRESH_TOKEN"}), "revoke")
		wantCode(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]any{"refresh_token": s.refresh}), "Unauthenticated", "invalid refresh token", "refresh revoked")
		if got := introspect(s.access); len(got) != 0 {
			t.Errorf("access token of revoked session active: %v", got)
		}
	})

	var revokedAccess, liveAccess pair
	t.Run("revoke access token denies its jti only", func(t *testing.T) {
		revokedAccess = tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin, map[string]any{"email": "alice@example.com", "password": alicePW}), "login"))
		mustOK(t, grpcurl(t, ctx, addr, nil, svcRevoke, map[string]any{"token": revokedAccess.access}), "revoke access")
		if got := introspect(revokedAccess.access); len(got) != 0 {
			t.Errorf("revoked access token active: %v", got)
		}
		liveAccess = tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]any{"refresh_token": revokedAccess.refresh}), "refresh after access revoke"))
		if got := introspect(liveAccess.access); got["active"] != true {
			t.Errorf("new access token of the same session inactive: %v", got)
		}
		mustOK(t, grpcurl(t, ctx, addr, nil, svcRevoke, map[string]any{"token": "not-a-token"}), "revoke garbage is OK (RFC 7009)")
		wantCode(t, grpcurl(t, ctx, addr, nil, svcRevoke, map[string]any{}), "InvalidArgument", "", "revoke empty")
	})

	var kid string
	t.Run("JWKS over gRPC and HTTP agree", func(t *testing.T) {
		g := mustOK(t, grpcurl(t, ctx, addr, nil, "latch.v1.AuthService/GetJWKS", map[string]any{}), "GetJWKS")
		resp, err := http.Get("http://" + p.httpAddr + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var h map[string]any
		if err := json.Unmarshal(body, &h); err != nil {
			t.Fatalf("HTTP JWKS not JSON: %v", err)
		}
		if fmt.Sprint(g["keys"]) != fmt.Sprint(h["keys"]) {
			t.Errorf("gRPC keys %v != HTTP keys %v", g["keys"], h["keys"])
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
			t.Errorf("Cache-Control = %q, want max-age", cc)
		}
		if strings.Contains(string(body), `"d"`) {
			t.Errorf("JWKS holds a private member: %s", body)
		}
		keys, _ := h["keys"].([]any)
		if len(keys) == 0 {
			t.Fatalf("no keys")
		}
		kid, _ = keys[0].(map[string]any)["kid"].(string)
	})

	// Graceful stop, then restart on the same file: keys and revocations persist.
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("latch exited with %v after SIGTERM, want 0\n%s", err, p.logText())
	}
	checkLogsHoldNoSecrets(t, p.logText()+p.stdout.String(), alicePW, svcPW, alice.access, alice.refresh, rotated.refresh, svc.access)

	p2 := startLatch(t, ctx, db)
	svc2 := tokensOf(t, mustOK(t, grpcurl(t, ctx, p2.grpcAddr, nil, svcLogin, map[string]any{"email": "svc@example.com", "password": svcPW, "audience": "https://latch.test"}), "login svc"))
	auth = []string{"authorization: Bearer " + svc2.access}
	addr = p2.grpcAddr
	t.Run("state survives a restart", func(t *testing.T) {
		if got := introspect(revokedAccess.access); len(got) != 0 {
			t.Errorf("revoked access token active after restart: %v", got)
		}
		if got := introspect(liveAccess.access); got["active"] != true {
			t.Errorf("live access token inactive after restart (signing key lost?): %v", got)
		}
		g := mustOK(t, grpcurl(t, ctx, addr, nil, "latch.v1.AuthService/GetJWKS", map[string]any{}), "GetJWKS")
		if !strings.Contains(fmt.Sprint(g["keys"]), kid) {
			t.Errorf("kid %s not published after restart: %v", kid, g["keys"])
		}
	})

	t.Run("revocation survives kill -9 right after Revoke returns", func(t *testing.T) {
		s := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin, map[string]any{"email": "alice@example.com", "password": alicePW}), "login"))
		mustOK(t, grpcurl(t, ctx, addr, nil, svcRevoke, map[string]any{"token": s.refresh}), "revoke")
		_ = p2.stop(t, ctx, syscall.SIGKILL)
		p3 := startLatch(t, ctx, db)
		wantCode(t, grpcurl(t, ctx, p3.grpcAddr, nil, svcRefresh, map[string]any{"refresh_token": s.refresh}),
			"Unauthenticated", "invalid refresh token", "refresh of a revoked token after kill -9")
		if err := p3.stop(t, ctx, syscall.SIGINT); err != nil {
			t.Errorf("exit after SIGINT: %v", err)
		}
	})
}

// TestDevMode checks the README's "run it" command: on an empty database,
// --dev creates a person and a service user, prints their passwords once,
// and those credentials work.
func TestDevMode(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	p := startLatch(t, ctx, db, "--dev")
	out := p.stdoutWith(t, ctx, "tokens may call")
	m := regexp.MustCompile(`service: (\S+)\s+password (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("--dev output lacks the service credentials:\n%s", out)
	}
	if !strings.Contains(out, `"audience":"https://latch.test"`) {
		t.Errorf("--dev's service login is not for Latch's own audience (the issuer):\n%s", out)
	}
	svc := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin, map[string]any{"email": m[1], "password": m[2], "audience": "https://latch.test"}), "login svc"))
	pm := regexp.MustCompile(`person:\s+(\S+)\s+password (\S+)`).FindStringSubmatch(out)
	if pm == nil {
		t.Fatalf("--dev output lacks the person credentials:\n%s", out)
	}
	person := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin, map[string]any{"email": pm[1], "password": pm[2]}), "login person"))
	got := mustOK(t, grpcurl(t, ctx, p.grpcAddr, []string{"authorization: Bearer " + svc.access}, svcIntrospect,
		map[string]any{"token": person.access}), "introspect")
	if got["active"] != true {
		t.Errorf("introspect person token with dev service token = %v", got)
	}
	if !strings.Contains(out, "grpcurl") {
		t.Errorf("--dev does not print grpcurl commands:\n%s", out)
	}
	checkLogsHoldNoSecrets(t, p.logText(), m[2], pm[2], svc.access, person.access, person.refresh)
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}

	// A second --dev start on the same (now non-empty) db creates nothing.
	p2 := startLatch(t, ctx, db, "--dev")
	out2 := p2.stdoutWith(t, ctx, "latch serve --dev --db")
	if strings.Contains(out2, "person:") || strings.Contains(out2, "service:") || strings.Contains(out2, pm[2]) {
		t.Errorf("second --dev start printed credentials again:\n%s", out2)
	}
	if !strings.Contains(out2, "latch serve --dev --db") {
		t.Errorf("second --dev start does not say how to get demo credentials again:\n%s", out2)
	}
}

// TestDevBannerPastesAsOneBlock: the commands the --dev banner prints run
// as one pasted block in bash, with the pinned grpcurl and jq, and do what
// they say: the person's token is active on Introspect, Refresh returns a
// new refresh token, Revoke ends it.
func TestDevBannerPastesAsOneBlock(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		if os.Getenv("LATCH_REQUIRE_JQ") == "1" {
			t.Fatal("jq not found, and LATCH_REQUIRE_JQ=1 (.ci/test installs it)")
		}
		t.Skip("jq not installed (.ci/test installs it)")
	}
	ctx := testCtx(t, 2*time.Minute)
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"), "--dev")
	out := p.stdoutWith(t, ctx, "tokens may call")
	if want := "grpcurl@" + grpcurlVersion; !strings.Contains(out, want) {
		t.Errorf("--dev banner does not pin %s:\n%s", want, out)
	}
	_, block, ok := strings.Cut(out, "Try it")
	block, _, _ = strings.Cut(block, "\n\nThe service")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(l, "  ") && strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if !ok || len(lines) < 5 {
		t.Fatalf("--dev banner has no block of commands:\n%s", out)
	}
	for _, l := range lines {
		if strings.Contains(l, "<") {
			t.Errorf("banner command has a placeholder: %s", l)
		}
	}
	script := "set -eo pipefail\n" + strings.Join(lines, "\n") + "\necho \"RT=$RT\"\n"
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(grpcurlPath(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	raw, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pasted banner commands failed: %v\n%s", err, raw)
	}
	got := string(raw)
	if !strings.Contains(got, `"active": true`) {
		t.Errorf("Introspect in the pasted block did not report the token active:\n%s", got)
	}
	if rt := regexp.MustCompile(`(?m)^RT=(\S*)$`).FindStringSubmatch(got); rt == nil || len(rt[1]) < 40 {
		t.Errorf("Refresh in the pasted block gave no refresh token:\n%s", got)
	}
}

// TestGrpcurlVersionPinnedOnce: the --dev banner, .ci/test and the
// getting-started walkthrough install the same grpcurl release.
func TestGrpcurlVersionPinnedOnce(t *testing.T) {
	for _, f := range []string{"../../.ci/test", "../../docs/getting-started.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pins := regexp.MustCompile(`(?i)grpcurl(?:@|_VERSION=)(v?[0-9][0-9.]*|latest)`).FindAllStringSubmatch(string(b), -1)
		if len(pins) == 0 {
			t.Errorf("%s names no grpcurl version", f)
		}
		for _, m := range pins {
			if m[1] != grpcurlVersion {
				t.Errorf("%s pins grpcurl %s, the banner %s", f, m[1], grpcurlVersion)
			}
		}
	}
}

// TestServeRejectsBadConfig checks that every configuration problem is
// reported at once, before anything is opened.
func TestServeRejectsBadConfig(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	cmd := serveCommand(t, ctx, "--db", db, "--access-ttl", "-1s", "--refresh-max-age", "1h", "--issuer", "")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("serve with bad config: err=%v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"issuer (--issuer, LATCH_ISSUER) is required", "tokens.access_ttl (LATCH_ACCESS_TTL)", "tokens.refresh_max_age (LATCH_REFRESH_MAX_AGE)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(db); err == nil {
		t.Errorf("database created despite invalid configuration")
	}
}

func checkLogsHoldNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for i, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("logs contain secret #%d", i)
		}
	}
}

// TestServeRefusesDamagedOrForeignDatabase: the binary never starts on a
// file it cannot trust (starting empty would forget every revocation), and a
// second server on a live file gives up within seconds with a clear error.
func TestServeRefusesDamagedOrForeignDatabase(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("definitely not bbolt "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]string{"garbage": garbage, "directory": dir, "path under a file": filepath.Join(garbage, "latch.db")} {
		t.Run(name, func(t *testing.T) {
			cmd := serveCommand(t, ctx, "--db", db, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("serve on a %s db: err=%v, want a failing exit\n%s", name, err, out)
			}
			if !strings.Contains(string(out), "open database") {
				t.Errorf("output does not say what failed:\n%s", out)
			}
		})
	}

	live := filepath.Join(dir, "live.db")
	startLatch(t, ctx, live)
	cmd := serveCommand(t, ctx, "--db", live, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another process") {
		t.Fatalf("second server on a live db: err=%v\n%s", err, out)
	}
	// It gave up on its own (after the 2 s lock timeout): ctx, two minutes,
	// was not what ended it.
	if ctx.Err() != nil {
		t.Fatal("second server hung instead of giving up")
	}
}
