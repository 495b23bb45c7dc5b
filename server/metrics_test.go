package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
)

// scrape GETs /metrics over HTTP and parses it with the Prometheus text
// parser.
func scrape(t *testing.T, e *opsEnv) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(e.http.URL + server.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the value of the series of family name whose labels
// include want, and whether it exists.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// counters tracks the values a test expects, and checks every one of them
// against a scrape.
type counters struct {
	t    *testing.T
	e    *opsEnv
	want map[string]float64 // "name{k=v,...}" → value
}

func key(name string, labels map[string]string) string {
	var kv []string
	for k, v := range labels {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return name + "{" + strings.Join(kv, ",") + "}"
}

func parseKey(k string) (string, map[string]string) {
	name, rest, _ := strings.Cut(k, "{")
	labels := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = v
		}
	}
	return name, labels
}

func (c *counters) add(name string, labels map[string]string, n float64) {
	c.want[key(name, labels)] += n
}

// check scrapes and compares every tracked series.
func (c *counters) check(step string) {
	c.t.Helper()
	fams := scrape(c.t, c.e)
	for k, want := range c.want {
		name, labels := parseKey(k)
		got, ok := sample(fams, name, labels)
		if !ok {
			c.t.Errorf("%s: series %s missing", step, k)
			continue
		}
		if got != want {
			c.t.Errorf("%s: %s = %v, want %v", step, k, got, want)
		}
	}
}

// rpc tracks one finished AuthService call: its handled counter and its
// handling-time histogram's count.
func (c *counters) rpc(method string, code codes.Code) {
	c.add("grpc_server_handled_total", map[string]string{
		"grpc_service": "latch.v1.AuthService", "grpc_method": method, "grpc_code": code.String()}, 1)
	c.add("grpc_server_handling_seconds", map[string]string{"grpc_service": "latch.v1.AuthService", "grpc_method": method}, 1)
}

// TestMetricsMove drives every domain event and checks, by scraping
// /metrics over HTTP, that each counter moves by exactly what happened
// (every other tracked series staying where it was).
func TestMetricsMove(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst = 2
	cfg.ProbeBurst = 4
	m := server.NewMetrics(server.WithBuildInfo("v1.2.3", "abc123"))
	e := newOpsEnv(t, opsConfig{cfg: cfg, srvOpts: []server.Option{server.WithMetrics(m)}})
	c := &counters{t: t, e: e, want: map[string]float64{}}
	for _, o := range []string{server.LoginSuccess, server.LoginInvalidCredentials, server.LoginRateLimited, server.LoginBusy, server.LoginInvalidRequest, server.LoginError} {
		c.add("latch_logins_total", map[string]string{"outcome": o}, 0)
	}
	for _, o := range []string{server.RefreshRotated, server.RefreshReuseDetected, server.RefreshInvalid, server.RefreshRateLimited, server.RefreshBadRequest} {
		c.add("latch_refreshes_total", map[string]string{"outcome": o}, 0)
	}
	for _, k := range []string{server.RevokedAccess, server.RevokedSession, server.RevokedAdmin} {
		c.add("latch_revocations_total", map[string]string{"kind": k}, 0)
	}
	for _, l := range []string{server.LimiterLoginAccount, server.LimiterLoginAddress, server.LimiterLoginDevice, server.LimiterLoginRate,
		server.LimiterProbeRefresh, server.LimiterProbeCaller, server.LimiterProbeIntrospect} {
		c.add("latch_rate_limited_total", map[string]string{"limiter": l}, 0)
	}
	for _, tr := range []string{server.RotationScheduled, server.RotationManual, server.RotationImmediate} {
		c.add("latch_key_rotations_total", map[string]string{"trigger": tr}, 0)
	}
	c.add("latch_revocation_watchers", nil, 0)
	c.add("latch_build_info", map[string]string{"version": "v1.2.3", "revision": "abc123"}, 1)
	// Every method has its series from the start.
	c.add("grpc_server_handled_total", map[string]string{"grpc_service": "latch.v1.AuthService", "grpc_method": "Revoke", "grpc_code": "OK"}, 0)
	c.check("at start")

	e.addUser("alice@example.com", "alice-password")
	ctx := ctxT(t)
	tp := e.login("alice@example.com", "alice-password")
	c.add("latch_logins_total", map[string]string{"outcome": server.LoginSuccess}, 1)
	c.rpc("Login", codes.OK)
	c.check("after a login")

	_, err := e.client.Login(ctx, &latchv1.LoginRequest{Email: "alice@example.com", Password: "wrong-password"})
	wantStatus(t, err, codes.Unauthenticated, "")
	c.add("latch_logins_total", map[string]string{"outcome": server.LoginInvalidCredentials}, 1)
	c.rpc("Login", codes.Unauthenticated)
	_, err = e.client.Login(ctx, &latchv1.LoginRequest{Password: "x"})
	wantStatus(t, err, codes.InvalidArgument, "")
	c.add("latch_logins_total", map[string]string{"outcome": server.LoginInvalidRequest}, 1)
	c.rpc("Login", codes.InvalidArgument)
	c.check("after failed logins")

	// Refresh, then reuse of the first token after its retry window.
	_, err = e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	c.add("latch_refreshes_total", map[string]string{"outcome": server.RefreshRotated}, 1)
	c.rpc("Refresh", codes.OK)
	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	_, err = e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "")
	c.add("latch_refreshes_total", map[string]string{"outcome": server.RefreshReuseDetected}, 1)
	c.rpc("Refresh", codes.Unauthenticated)
	_, err = e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: strings.Repeat("A", 43)})
	wantStatus(t, err, codes.Unauthenticated, "")
	c.add("latch_refreshes_total", map[string]string{"outcome": server.RefreshInvalid}, 1)
	c.rpc("Refresh", codes.Unauthenticated)
	_, err = e.client.Refresh(ctx, &latchv1.RefreshRequest{})
	wantStatus(t, err, codes.InvalidArgument, "")
	c.add("latch_refreshes_total", map[string]string{"outcome": server.RefreshBadRequest}, 1)
	c.rpc("Refresh", codes.InvalidArgument)
	c.check("after refresh, reuse, invalid")

	// Revocations: an access token, then a session by its refresh token.
	tp2 := e.login("alice@example.com", "alice-password")
	c.add("latch_logins_total", map[string]string{"outcome": server.LoginSuccess}, 1)
	c.rpc("Login", codes.OK)
	if _, err := e.client.Revoke(ctx, &latchv1.RevokeRequest{Token: tp2.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	c.add("latch_revocations_total", map[string]string{"kind": server.RevokedAccess}, 1)
	if _, err := e.client.Revoke(ctx, &latchv1.RevokeRequest{Token: tp2.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	c.add("latch_revocations_total", map[string]string{"kind": server.RevokedSession}, 1)
	if _, err := e.client.Revoke(ctx, &latchv1.RevokeRequest{Token: "no-such-token"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.rpc("Revoke", codes.OK)
	}
	c.check("after revocations")

	// Hooks for code outside AuthService (administration, key rotation).
	m.Revoked(server.RevokedAdmin, 3)
	c.add("latch_revocations_total", map[string]string{"kind": server.RevokedAdmin}, 3)
	var nilMetrics *server.Metrics
	nilMetrics.KeyRotated(server.RotationManual) // a nil Metrics records nothing, and does not panic
	nilMetrics.Revoked(server.RevokedAdmin, 1)
	c.check("after hooks")

	// Rate limits: the account's burst of failures (2), then refusal.
	for range 2 {
		_, err := e.client.Login(ctx, &latchv1.LoginRequest{Email: "bob@example.com", Password: "wrong-password"})
		wantStatus(t, err, codes.Unauthenticated, "")
	}
	c.add("latch_logins_total", map[string]string{"outcome": server.LoginInvalidCredentials}, 2)
	c.rpc("Login", codes.Unauthenticated)
	c.rpc("Login", codes.Unauthenticated)
	_, err = e.client.Login(ctx, &latchv1.LoginRequest{Email: "bob@example.com", Password: "wrong-password"})
	wantStatus(t, err, codes.ResourceExhausted, "")
	c.add("latch_logins_total", map[string]string{"outcome": server.LoginRateLimited}, 1)
	c.add("latch_rate_limited_total", map[string]string{"limiter": server.LimiterLoginAccount}, 1)
	c.rpc("Login", codes.ResourceExhausted)
	// The refresh probe budget (4) was spent by reuse and invalid above
	// (2 failures); two more bad tokens, then refusal.
	for range 2 {
		_, err := e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: strings.Repeat("B", 43)})
		wantStatus(t, err, codes.Unauthenticated, "")
	}
	c.add("latch_refreshes_total", map[string]string{"outcome": server.RefreshInvalid}, 2)
	c.rpc("Refresh", codes.Unauthenticated)
	c.rpc("Refresh", codes.Unauthenticated)
	_, err = e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: strings.Repeat("B", 43)})
	wantStatus(t, err, codes.ResourceExhausted, "")
	c.add("latch_refreshes_total", map[string]string{"outcome": server.RefreshRateLimited}, 1)
	c.add("latch_rate_limited_total", map[string]string{"limiter": server.LimiterProbeRefresh}, 1)
	c.rpc("Refresh", codes.ResourceExhausted)
	c.check("after rate limits")

	// Revocation watchers: a live stream counts, a closed one stops counting.
	wctx, cancel := context.WithCancel(e.introspector())
	c.add("latch_logins_total", map[string]string{"outcome": server.LoginSuccess}, 1)
	c.rpc("Login", codes.OK)
	stream, err := e.client.WatchRevocations(wctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // sent once subscribed
		t.Fatal(err)
	}
	c.want[key("latch_revocation_watchers", nil)] = 1
	c.check("with a watcher")
	cancel()
	waitFor(t, "watcher gauge back to 0", func() bool {
		v, _ := sample(scrape(t, e), "latch_revocation_watchers", nil)
		return v == 0
	})
	c.want[key("latch_revocation_watchers", nil)] = 0

	// Key rotations: an emergency one now, then the schedule's once due.
	if _, err := e.srv.RotateSigningKey(ctx, true); err != nil {
		t.Fatal(err)
	}
	c.add("latch_key_rotations_total", map[string]string{"trigger": server.RotationImmediate}, 1)
	c.check("after an immediate rotation")
	if err := e.srv.SyncSigningKeys(ctx); err != nil {
		t.Fatal(err)
	}
	c.check("after a sync with nothing due") // no rotation counted
	e.clock.Advance(e.srv.Config().KeyRotation + time.Hour)
	if err := e.srv.SyncSigningKeys(ctx); err != nil {
		t.Fatal(err)
	}
	c.add("latch_key_rotations_total", map[string]string{"trigger": server.RotationScheduled}, 1)
	c.check("after a scheduled rotation")
}

// TestMetricsOwnRegistry checks that two servers in one process keep
// separate counts (no global registry) and that one Metrics cannot serve two
// servers.
func TestMetricsOwnRegistry(t *testing.T) {
	m1, m2 := server.NewMetrics(), server.NewMetrics()
	e1 := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(m1)}})
	e2 := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(m2)}})
	e1.addUser("a@example.com", "a-password")
	e1.login("a@example.com", "a-password")
	v1, _ := sample(scrape(t, e1), "latch_logins_total", map[string]string{"outcome": "success"})
	v2, _ := sample(scrape(t, e2), "latch_logins_total", map[string]string{"outcome": "success"})
	if v1 != 1 || v2 != 0 {
		t.Errorf("logins: server 1 = %v, server 2 = %v; want 1 and 0", v1, v2)
	}
	_, err := server.New(ctxT(t), e1.store, e1.hasher, baseConfig(), server.WithMetrics(m1))
	if err == nil {
		t.Errorf("a Metrics bound to a second server: no error")
	}
}

// TestNoMetricsEndpointWithoutMetrics: a server without Metrics serves no
// /metrics.
func TestNoMetricsEndpointWithoutMetrics(t *testing.T) {
	e := newOpsEnv(t, opsConfig{})
	resp, err := http.Get(e.http.URL + server.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics without Metrics: %s, want 404", resp.Status)
	}
}

// TestSessionsLiveGauge: latch_sessions_live is the store's count, reused
// for 30 s of the server's clock between scrapes, then counted again.
func TestSessionsLiveGauge(t *testing.T) {
	e := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(server.NewMetrics())}})
	live := func() float64 {
		t.Helper()
		v, ok := sample(scrape(t, e), "latch_sessions_live", nil)
		if !ok {
			t.Fatal("latch_sessions_live missing")
		}
		return v
	}
	if got := live(); got != 0 {
		t.Errorf("empty store: %v live sessions, want 0", got)
	}
	e.clock.Advance(31 * time.Second)
	e.addUser("alice@example.com", "alice-password")
	a := e.login("alice@example.com", "alice-password")
	e.login("alice@example.com", "alice-password")
	if got := live(); got != 2 {
		t.Errorf("after two logins: %v, want 2", got)
	}
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: a.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	if got := live(); got != 2 {
		t.Errorf("within 30 s of the last count: %v, want the cached 2", got)
	}
	e.clock.Advance(30 * time.Second)
	if got := live(); got != 1 {
		t.Errorf("30 s later, after one revocation: %v, want 1", got)
	}
}

// TestSessionsLiveGaugeStoreFailure: when the store cannot count, the
// series is left out (never a stale number), the failure is logged once,
// and the next scrape after recovery counts again.
func TestSessionsLiveGaugeStoreFailure(t *testing.T) {
	e, fs := newFaultyOpsEnv(t, server.WithMetrics(server.NewMetrics()))
	fs.down.Store(true)
	for range 2 {
		fams := scrape(t, e)
		if _, ok := sample(fams, "latch_sessions_live", nil); ok {
			t.Errorf("latch_sessions_live exported while the store cannot count")
		}
		if _, ok := sample(fams, "latch_logins_total", map[string]string{"outcome": "success"}); !ok {
			t.Errorf("other metrics missing while the count fails")
		}
	}
	if n := strings.Count(e.logs.String(), `"event":"metrics_error"`); n != 1 {
		t.Errorf("count failure logged %d times, want once", n)
	}
	fs.down.Store(false)
	if v, ok := sample(scrape(t, e), "latch_sessions_live", nil); !ok || v != 0 {
		t.Errorf("after recovery: %v, %v; want 0, present", v, ok)
	}
}

// TestHTTPMetrics: HTTP requests are counted by the route that matched,
// with unknown paths under one "unmatched" label.
func TestHTTPMetrics(t *testing.T) {
	e := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(server.NewMetrics())}})
	for _, path := range []string{server.JWKSPath, server.JWKSPath, "/readyz", "/no/such/path", "/another/unknown"} {
		get(t, e.http.URL+path)
	}
	fams := scrape(t, e)
	for _, c := range []struct {
		route, code string
		want        float64
	}{
		{"GET " + server.JWKSPath, "200", 2},
		{"GET /readyz", "200", 1},
		{"unmatched", "404", 2},
	} {
		if got, _ := sample(fams, "latch_http_requests_total", map[string]string{"route": c.route, "code": c.code}); got != c.want {
			t.Errorf("latch_http_requests_total{route=%q,code=%s} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
	if got, _ := sample(fams, "latch_http_request_duration_seconds", map[string]string{"route": "GET " + server.JWKSPath}); got != 2 {
		t.Errorf("duration histogram count for the JWKS route = %v, want 2", got)
	}
}

// TestReadmeListsEveryMetric: every metric family a server with metrics
// exposes (apart from the Go runtime and process collectors) has a row in
// the metrics table of docs/operations.md.
func TestReadmeListsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/operations.md has no \"## Metrics\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows strings.Builder
	for _, line := range strings.Split(section, "\n") {
		if cells := strings.Split(line, "|"); strings.HasPrefix(line, "|") && len(cells) > 2 {
			rows.WriteString(cells[1])
		}
	}
	e := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(server.NewMetrics())}})
	n := 0
	for name := range scrape(t, e) {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		n++
		if !strings.Contains(rows.String(), "`"+name+"`") {
			t.Errorf("metric %s is exposed but has no row in the metrics table of docs/operations.md", name)
		}
	}
	if n < 10 {
		t.Fatalf("only %d Latch metric families scraped", n)
	}
}
