package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/certs/certstest"
	"github.com/latchauth/latch/server"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7300": true, "127.1.2.3:0": true, "[::1]:7300": true, "localhost:7300": true, "LOCALHOST:1": true,
		"0.0.0.0:7300": false, ":7300": false, "[::]:7300": false, "10.0.0.1:7300": false,
		"192.168.1.1:80": false, "latch.example:7300": false, "127.0.0.1": false, "": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestCheckExposure(t *testing.T) {
	loop := map[string]string{"grpc-addr": "127.0.0.1:7300", "http-addr": "[::1]:7301"}
	open := map[string]string{"grpc-addr": "0.0.0.0:7300", "http-addr": ":7301"}
	half := map[string]string{"grpc-addr": "127.0.0.1:7300", "http-addr": "0.0.0.0:7301"}
	cases := []struct {
		name           string
		addrs          map[string]string
		tls, insecure  bool
		wantErr        bool
		mustName, none string
	}{
		{name: "plaintext on loopback", addrs: loop},
		{name: "plaintext on all interfaces", addrs: open, wantErr: true, mustName: "listen.grpc (--grpc-addr, LATCH_GRPC_ADDR) 0.0.0.0:7300"},
		{name: "one port beyond loopback", addrs: half, wantErr: true, mustName: "listen.http (--http-addr, LATCH_HTTP_ADDR) 0.0.0.0:7301", none: "listen.grpc"},
		{name: "TLS anywhere", addrs: open, tls: true},
		{name: "insecure-listen", addrs: open, insecure: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkExposure(tc.addrs, tc.tls, tc.insecure, configNamer())
			if (err != nil) != tc.wantErr {
				t.Fatalf("checkExposure = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			msg := err.Error()
			for _, want := range []string{tc.mustName, "tls.cert_file (LATCH_TLS_CERT) and tls.key_file (LATCH_TLS_KEY)",
				"set listen.insecure (LATCH_INSECURE_LISTEN) to true"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
			if tc.none != "" && strings.Contains(msg, tc.none) {
				t.Errorf("message %q names %s, which is loopback", msg, tc.none)
			}
		})
	}
}

func TestTransportFlagsValidate(t *testing.T) {
	f := transportFlags{tlsCert: "c.pem", tlsClientCA: "ca.pem", maxStreams: 0, drainDelay: -time.Second}
	err := f.validate(map[string]string{"grpc-addr": "127.0.0.1:1"})
	if err == nil {
		t.Fatal("validate accepted a cert without key, streams 0 and a negative drain delay")
	}
	for _, want := range []string{"--tls-cert and --tls-key go together", "max-concurrent-streams", "drain-delay"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	f = transportFlags{tlsClientCA: "ca.pem", maxStreams: 10}
	if err := f.validate(nil); err == nil || !strings.Contains(err.Error(), "--tls-client-ca needs --tls-cert") {
		t.Errorf("client CA without TLS: %v", err)
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), []string{"version"}, env{stdout: &out, stderr: io.Discard, getenv: func(string) string { return "" }})
	if code != 0 {
		t.Fatalf("latch version exited %d", code)
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.HasPrefix(lines[0], "latch ") {
		t.Errorf("first line %q, want \"latch <version>\"", lines[0])
	}
	for _, want := range []string{"module:    github.com/latchauth/latch", "revision:", "go:        go1."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("latch version lacks %q:\n%s", want, out.String())
		}
	}
}

// TestServeRefusesPlaintextBeyondLoopback runs the real binary: plaintext
// on a non-loopback address without listen.insecure is refused before
// anything is opened, with the fix in the message.
func TestServeRefusesPlaintextBeyondLoopback(t *testing.T) {
	t.Setenv("LATCH_INSECURE_LISTEN", "") // whatever the caller's environment says
	ctx := testCtx(t, time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	cmd := serveCommand(t, ctx, "--db", db, "--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("serve on 0.0.0.0 without TLS: err=%v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"refusing to serve plaintext on listen.grpc (--grpc-addr, LATCH_GRPC_ADDR) 0.0.0.0:0",
		"give tls.cert_file (LATCH_TLS_CERT) and tls.key_file (LATCH_TLS_KEY)", "set listen.insecure (LATCH_INSECURE_LISTEN) to true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "listen.http") {
		t.Errorf("output blames the loopback --http-addr:\n%s", out)
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the database was created before the refusal (stat: %v)", err)
	}
}

// TestServeRefusesIssuerAsAudience: Latch's own audience is its issuer
// URL, so `latch serve` refuses an --audience (one relying parties get
// tokens for) equal to --issuer, before opening anything.
func TestServeRefusesIssuerAsAudience(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	out, err := serveCommand(t, ctx, "--db", db, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--issuer", "https://latch.test", "--audience", "orders", "--audience", "https://latch.test").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("serve with --audience = --issuer: err=%v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{`audience "https://latch.test" is the issuer`, "Latch's own audience", "relying party"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the database was created before the refusal (stat: %v)", err)
	}
}

// TestServeMutualTLSEndToEnd runs the real binary configured the way the
// container is (LATCH_INSECURE_LISTEN=true plus LATCH_TLS_* files): TLS
// with client certificates on both ports, plaintext never served, metrics
// and readiness over HTTPS (the public routes without a client
// certificate, metrics only with one), and a graceful drain that reports NOT_SERVING
// for --drain-delay before stopping.
func TestServeMutualTLSEndToEnd(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	dir := t.TempDir()
	serverCA, clientCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "client CA")
	serverLeaf := serverCA.Server(t)
	certFile, keyFile := serverLeaf.WriteFiles(t, dir, "server")
	client := clientCA.Client(t, "orders", "spiffe://latch.test/orders")
	clientCert, clientKey := client.WriteFiles(t, dir, "client")
	caFile, clientCAFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "clients.pem")
	certstest.WriteFile(t, caFile, serverCA.PEM)
	certstest.WriteFile(t, clientCAFile, clientCA.PEM)
	t.Setenv("LATCH_INSECURE_LISTEN", "true")
	t.Setenv("LATCH_TLS_CERT", certFile)
	t.Setenv("LATCH_TLS_KEY", keyFile)
	t.Setenv("LATCH_TLS_CLIENT_CA", clientCAFile)

	db := filepath.Join(t.TempDir(), "latch.db")
	const pw = "alice-password-1"
	if out, err := userAdd(ctx, latchBinary(t), db, "alice@example.com", pw); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	p := startLatch(t, ctx, db, "--drain-delay", "15s", "--access-log-sample", "1")
	if !strings.Contains(p.logText(), `"transport":"mtls"`) {
		t.Errorf("listening record does not say mtls:\n%s", p.logText())
	}

	mtls := []string{"-cacert", caFile, "-cert", clientCert, "-key", clientKey}
	call := func(args []string, method string, body any) grpcResult {
		t.Helper()
		full := append(append([]string{"-max-time", "20"}, args...), "-d", mustJSON(t, body), p.grpcAddr, method)
		cmd := exec.CommandContext(ctx, grpcurlPath(t), full...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := grpcResult{raw: stdout.String(), stderr: stderr.String(), err: err}
		if err == nil {
			_ = json.Unmarshal(stdout.Bytes(), &r.out)
		}
		return r
	}
	login := map[string]any{"email": "alice@example.com", "password": pw}
	tokensOf(t, mustOK(t, call(mtls, svcLogin, login), "Login over mTLS"))
	if r := call([]string{"-plaintext"}, svcLogin, login); r.err == nil {
		t.Errorf("plaintext Login succeeded against a TLS server")
	}
	if r := call([]string{"-cacert", caFile}, svcLogin, login); r.err == nil {
		t.Errorf("Login without a client certificate succeeded")
	}
	if !strings.Contains(p.logText(), `"peer_identity":"spiffe://latch.test/orders"`) {
		t.Errorf("RPC log lacks the client's identity:\n%s", p.logText())
	}

	pool := serverCA.Pool()
	https := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{client.TLSCertificate(t)}}}}
	get := func(c *http.Client, path string) (int, string, error) {
		resp, err := c.Get("https://" + p.httpAddr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, err := get(https, "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("/readyz over mTLS = %d %q %v, want 200", code, body, err)
	}
	// The public documents and probes need no client certificate (JWT
	// libraries, meshes and platform probes cannot present one); metrics
	// do, and a certificate from an unknown CA fails the handshake.
	noCert := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, path := range []string{"/readyz", "/healthz", "/.well-known/jwks.json", "/.well-known/openid-configuration"} {
		if code, body, err := get(noCert, path); err != nil || code != http.StatusOK {
			t.Errorf("%s over HTTPS without a client certificate = %d %q %v, want 200", path, code, body, err)
		}
	}
	if code, _, err := get(noCert, "/metrics"); err != nil || code != http.StatusForbidden {
		t.Errorf("/metrics without a client certificate = %d %v, want 403", code, err)
	}
	foreignCert := certstest.NewCA(t, "other CA").Client(t, "intruder", "").TLSCertificate(t)
	foreign := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignCert, nil }}}}
	if _, _, err := get(foreign, "/readyz"); err == nil {
		t.Errorf("HTTPS with a certificate from an unknown CA was served")
	}
	for !strings.Contains(p.logText(), `"event":"http_server_error"`) || !strings.Contains(p.logText(), `"event":"tls_handshake_failed"`) {
		select {
		case <-ctx.Done():
			t.Fatalf("refused handshakes not logged on both ports:\n%s", p.logText())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if resp, err := http.Get("http://" + p.httpAddr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plaintext HTTP served /readyz on the TLS port")
		}
	}
	_, metrics, err := get(https, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	if got := metricValue(fams["latch_logins_total"], "outcome", "success"); got != 1 {
		t.Errorf("latch_logins_total{outcome=success} = %v, want 1", got)
	}
	if got := metricValue(fams["grpc_server_handled_total"], "grpc_method", "Login", "grpc_code", "OK"); got != 1 {
		t.Errorf("grpc_server_handled_total{Login,OK} = %v, want 1", got)
	}
	// The Login's session went through the store's group commit.
	commits, writes := metricValue(fams["latch_storage_commits_total"]), metricValue(fams["latch_storage_commit_writes_total"])
	if commits < 1 || writes < commits || metricValue(fams["latch_storage_pages_written_total"]) < 1 ||
		metricValue(fams["latch_storage_write_seconds_total"]) <= 0 {
		t.Errorf("storage metrics after a Login: commits %v, writes %v, pages %v, write seconds %v",
			commits, writes, metricValue(fams["latch_storage_pages_written_total"]), metricValue(fams["latch_storage_write_seconds_total"]))
	}
	if got, want := metricValue(fams["latch_tls_cert_not_after_seconds"]), float64(serverLeaf.Cert.NotAfter.Unix()); got != want {
		t.Errorf("latch_tls_cert_not_after_seconds = %v, want %v", got, want)
	}

	// Renewal in place: both ports serve the new certificate at the next
	// handshake, without a restart.
	renewed := serverCA.Server(t)
	renewed.WriteFiles(t, dir, "server")
	future := time.Now().Add(time.Hour)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	for _, port := range []struct{ name, addr, alpn string }{{"gRPC", p.grpcAddr, "h2"}, {"HTTP", p.httpAddr, "http/1.1"}} {
		conn, err := tls.Dial("tcp", port.addr, &tls.Config{RootCAs: pool, NextProtos: []string{port.alpn},
			Certificates: []tls.Certificate{client.TLSCertificate(t)}})
		if err != nil {
			t.Fatalf("%s handshake after renewal: %v", port.name, err)
		}
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber
		conn.Close()
		if got.Cmp(renewed.Cert.SerialNumber) != 0 {
			t.Errorf("%s port serves serial %v after renewal, want %v", port.name, got, renewed.Cert.SerialNumber)
		}
	}
	if !strings.Contains(p.logText(), `"event":"tls_reloaded"`) {
		t.Errorf("reload not logged")
	}

	// Drain: NOT_SERVING and 503 during --drain-delay, then a clean exit.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		code, _, err := get(https, "/readyz")
		if err == nil && code == http.StatusServiceUnavailable {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/readyz never turned 503 after SIGTERM: %d %v", code, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	h := mustOK(t, call(mtls, "grpc.health.v1.Health/Check", map[string]any{}), "health during drain")
	if h["status"] != "NOT_SERVING" {
		t.Errorf("health during drain = %v, want NOT_SERVING", h)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("exit after drain: %v\n%s", err, p.logText())
		}
	case <-ctx.Done():
		t.Fatal("latch did not exit after the drain delay")
	}
	checkLogsHoldNoSecrets(t, p.logText(), pw, string(client.KeyPEM))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue returns the counter or gauge value of the series in f whose
// labels include the given name/value pairs (-1 when none does).
func metricValue(f *dto.MetricFamily, kv ...string) float64 {
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		if m.Counter != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

// TestDockerfileEnv checks the container's configuration against the
// binary: every LATCH_* variable the Dockerfile sets is one `latch serve`
// reads, and its addresses are accepted only because of
// LATCH_INSECURE_LISTEN (or TLS).
func TestDockerfileEnv(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	vars := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "ENV "); ok {
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				vars[k] = v
			}
		}
	}
	if len(vars) == 0 {
		t.Fatal("the Dockerfile sets no environment")
	}
	known := keyNames()
	for k := range vars {
		if _, ok := known[k]; !ok {
			t.Errorf("Dockerfile sets %s, which latch serve does not read", k)
		}
	}
	if vars["LATCH_INSECURE_LISTEN"] != "true" {
		t.Errorf("LATCH_INSECURE_LISTEN = %q, want true", vars["LATCH_INSECURE_LISTEN"])
	}
	addrs := map[string]string{"grpc-addr": vars["LATCH_GRPC_ADDR"], "http-addr": vars["LATCH_HTTP_ADDR"]}
	if err := checkExposure(addrs, false, false, flagName); err == nil {
		t.Errorf("the image's addresses %v count as loopback; the container would be unreachable", addrs)
	}
	if err := checkExposure(addrs, false, true, flagName); err != nil {
		t.Errorf("the image's plaintext default is refused: %v", err)
	}
}

// configTable returns what the first two columns of the tables of
// docs/configuration.md's "## Configuration" section name in backticks:
// keys (or variables, in the secrets table) and variables. A name
// elsewhere in the docs does not count: an operator looks it up in the
// table.
func configTable(t *testing.T, doc string) (keys, envs map[string]bool) {
	t.Helper()
	_, after, ok := strings.Cut(doc, "\n## Configuration\n")
	if !ok {
		t.Fatal("docs/configuration.md has no \"## Configuration\" section")
	}
	section, _, _ := strings.Cut(after, "\n## ")
	tick := regexp.MustCompile("`([^`]+)`")
	keys, envs = map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "|") || len(cells) < 4 {
			continue
		}
		for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
			keys[m[1]] = true
		}
		if len(cells) >= 7 {
			for _, m := range tick.FindAllStringSubmatch(cells[2], -1) {
				envs[m[1]] = true
			}
		}
	}
	return keys, envs
}

// TestDocsListEveryConfigKey: docs/configuration.md's table has a row for
// every key of serve's configuration type with its variable, lists the
// secret variables, and documents no key that does not exist.
func TestDocsListEveryConfigKey(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	keys, envs := configTable(t, string(doc))
	c := defaultConfig()
	known := map[string]bool{}
	for _, s := range settings(&c) {
		known[s.key] = true
		if !keys[s.key] {
			t.Errorf("docs/configuration.md's table has no row for %s", s.key)
		}
		if !envs[s.env] {
			t.Errorf("docs/configuration.md's table does not give %s for %s", s.env, s.key)
		}
	}
	for _, s := range secretEnv {
		known[s.env] = true
		if !keys[s.env] {
			t.Errorf("docs/configuration.md does not list the secret variable %s", s.env)
		}
	}
	for k := range keys {
		if !known[k] {
			t.Errorf("docs/configuration.md's table documents %s, which is no key of latch serve", k)
		}
	}
}

// TestServeReadsNoUndocumentedVariable: every LATCH_* variable that
// serve's sources name is a key's variable or a listed secret.
func TestServeReadsNoUndocumentedVariable(t *testing.T) {
	known := keyNames()
	for _, s := range secretEnv {
		known[s.env] = "secret"
	}
	known[configEnv] = "config"
	files, err := filepath.Glob("serve*.go")
	if err != nil {
		t.Fatal(err)
	}
	direct := regexp.MustCompile(`"(LATCH_[A-Z0-9_]+)"`)
	found := 0
	for _, f := range append(files, "config.go") {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range direct.FindAllStringSubmatch(string(src), -1) {
			found++
			if _, ok := known[m[1]]; !ok {
				t.Errorf("%s names %s, which is neither a key's variable nor a listed secret", f, m[1])
			}
		}
	}
	if found < 3 {
		t.Fatalf("found %d LATCH_* literals in serve's sources; is the pattern stale?", found)
	}
}

// TestTransportSettingsMapping: the grpc keys reach the server's
// Transport, and their defaults are the server's.
func TestTransportSettingsMapping(t *testing.T) {
	build := func(environ map[string]string) transportFlags {
		t.Helper()
		environ["LATCH_ISSUER"] = "https://latch.test"
		c := defaultConfig()
		if err := applyEnv(&c, func(k string) string { return environ[k] }); err != nil {
			t.Fatal(err)
		}
		st, errs := prepareServe(c, env{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return environ[k] }})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return st.tf
	}
	def := build(map[string]string{})
	if got, want := def.transport(), server.DefaultTransport(); got != want {
		t.Errorf("defaults: %+v, want server.DefaultTransport() %+v", got, want)
	}
	if !def.metrics || def.insecureListen || def.drainDelay != 0 {
		t.Errorf("defaults: metrics=%v insecure-listen=%v drain-delay=%v", def.metrics, def.insecureListen, def.drainDelay)
	}
	f := build(map[string]string{"LATCH_MAX_CONCURRENT_STREAMS": "7", "LATCH_KEEPALIVE_MIN_TIME": "20s",
		"LATCH_MAX_CONNECTION_AGE_GRACE": "5s", "LATCH_KEEPALIVE_TIME": "1m", "LATCH_MAX_CONNECTION_AGE": "30m",
		"LATCH_MAX_CONNECTION_IDLE": "0", "LATCH_KEEPALIVE_TIMEOUT": "7s", "LATCH_METRICS": "false"})
	tr := f.transport()
	want := server.DefaultTransport()
	want.MaxConcurrentStreams = 7
	want.Keepalive.MaxConnectionAge = 30 * time.Minute
	want.Keepalive.MaxConnectionAgeGrace = 5 * time.Second
	want.Keepalive.MaxConnectionIdle = 0
	want.Keepalive.Time, want.Keepalive.Timeout = time.Minute, 7*time.Second
	want.Enforcement.MinTime = 20 * time.Second
	if tr != want {
		t.Errorf("transport = %+v, want %+v", tr, want)
	}
	if f.metrics {
		t.Errorf("LATCH_METRICS=false left metrics on")
	}
}

// TestReadmeListsEveryEvent: every "event" value the server and this
// command log is documented in docs/operations.md (the audit-event list, or the
// key-rotation section).
func TestReadmeListsEveryEvent(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"event",\s*"([a-z_]+)"|slog\.String\("event",\s*"([a-z_]+)"\)`)
	seen := map[string]bool{}
	for _, dir := range []string{".", filepath.Join("..", "..", "server"), filepath.Join("..", "..", "internal", "certs"), filepath.Join("..", "..", "storage"), filepath.Join("..", "..", "storage", "etcd"),
		filepath.Join("..", "..", "server", "extauthz")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				seen[m[1]+m[2]] = true
			}
		}
	}
	if len(seen) < 20 {
		t.Fatalf("found only %d events; is the pattern stale?", len(seen))
	}
	for ev := range seen {
		if !bytes.Contains(readme, []byte("`"+ev+"`")) {
			t.Errorf("event %q is logged but not documented in docs/operations.md", ev)
		}
	}
}

// TestSecondSignalStopsAtOnce: SIGTERM starts a graceful drain (here with
// a ten-minute --drain-delay); a second SIGTERM ends the process at once
// instead of being swallowed until the drain is over.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"), "--drain-delay", "10m")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.logText(), `"event":"draining"`) {
		select {
		case <-ctx.Done():
			t.Fatalf("no draining record after SIGTERM:\n%s", p.logText())
		case <-time.After(20 * time.Millisecond):
		}
	}
	err := p.stop(t, ctx, syscall.SIGTERM) // fails the test if the process outlives ctx
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("exit after a second SIGTERM: %v, want ended by the signal", err)
	}
	if strings.Contains(p.logText(), `"event":"stopped"`) {
		t.Errorf("the drain ran to its end despite the second signal:\n%s", p.logText())
	}
}
