package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/server"
)

// TestConfigExampleIsTheDefaults: `latch config example` prints every key,
// each with its variable, and the printed file loads strictly to exactly
// the defaults.
func TestConfigExampleIsTheDefaults(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"config", "example"}, env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("latch config example: exit %d\n%s", code, out.String())
	}
	d := defaultConfig()
	for _, s := range settings(&d) {
		leaf := s.key[strings.LastIndex(s.key, ".")+1:]
		if !regexp.MustCompile(`(?m)^\s*`+leaf+`:`).Match(out.Bytes()) || !strings.Contains(out.String(), "["+s.env+"]") {
			t.Errorf("the example lacks %s [%s]", s.key, s.env)
		}
	}
	got := config{}
	if err := decodeConfig("example", out.Bytes(), &got); err != nil {
		t.Fatalf("the example does not load: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(got, defaultConfig()) {
		t.Errorf("the example loads as\n%+v\nwant the defaults\n%+v", got, defaultConfig())
	}
}

// TestConfigFileStrict: unknown keys, values of the wrong type and secrets
// in the file are all reported at once, each with its line.
func TestConfigFileStrict(t *testing.T) {
	src := "issuer: https://a.example\nlisten:\n  grpcc: 127.0.0.1:1\ntokens:\n  access_ttl: soon\n  verify_cache: many\n" +
		"bootstrap_admin:\n  password: hunter2hunter2\nkeys:\n  rotation: 5\n"
	c := defaultConfig()
	err := decodeConfig("latch.yaml", []byte(src), &c)
	if err == nil {
		t.Fatal("a file with unknown keys and bad values was accepted")
	}
	for _, want := range []string{
		`latch.yaml line 3: unknown key "grpcc"`,
		"latch.yaml line 5: `soon` is not a duration",
		"latch.yaml line 6: `many` is not a whole number",
		`latch.yaml line 8: unknown key "password" (secrets are never read from the file: use bootstrap_admin.password_file or LATCH_BOOTSTRAP_ADMIN_PASSWORD`,
		"latch.yaml line 10: `5` is not a duration",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error repeats the secret:\n%v", err)
	}
}

// TestConfigPrecedence: flag > environment > file > default, key by key.
func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.yaml")
	src := "issuer: https://file.example\nlisten:\n  grpc: 127.0.0.1:1111\n  http: 127.0.0.1:2222\ntokens:\n  access_ttl: 5m\n  refresh_ttl: 1h\n" +
		"limits:\n  trusted_proxies: [10.0.0.0/8]\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := map[string]string{"LATCH_GRPC_ADDR": "127.0.0.1:3333", "LATCH_HTTP_ADDR": "127.0.0.1:4444",
		"LATCH_ACCESS_TTL": "7m", "LATCH_TRUSTED_PROXY": "192.168.0.0/16, 172.16.0.0/12", "LATCH_CONFIG": "/nonexistent"}
	sa, errs := parseServeArgs([]string{"--config", path, "--grpc-addr=127.0.0.1:5555", "--dev"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cfg, errs := loadServeConfig(sa, func(k string) string { return environ[k] })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := defaultConfig()
	want.Issuer, want.Dev = "https://file.example", true
	want.Listen.GRPC, want.Listen.HTTP = "127.0.0.1:5555", "127.0.0.1:4444"  // flag; environment
	want.Tokens.AccessTTL, want.Tokens.RefreshTTL = 7*time.Minute, time.Hour // environment; file
	want.Limits.TrustedProxies = []string{"192.168.0.0/16", "172.16.0.0/12"}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config =\n%+v\nwant\n%+v", cfg, want)
	}
	// Without --config, LATCH_CONFIG names the file.
	_, errs = loadServeConfig(serveArgs{}, func(k string) string { return environ[k] })
	if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), "/nonexistent") {
		t.Errorf("LATCH_CONFIG was not read: %v", err)
	}
}

// TestEveryKeyHasAnEnvironmentVariable: the variables are distinct and all
// LATCH_*, and every one reaches its key.
func TestEveryKeyHasAnEnvironmentVariable(t *testing.T) {
	d := defaultConfig()
	seen := map[string]string{}
	for _, s := range settings(&d) {
		if !strings.HasPrefix(s.env, "LATCH_") || s.doc == "" {
			t.Errorf("%s: env %q, doc %q", s.key, s.env, s.doc)
		}
		if other, ok := seen[s.env]; ok {
			t.Errorf("%s and %s share %s", s.key, other, s.env)
		}
		seen[s.env] = s.key
	}
	values := map[string]string{}
	for env := range seen {
		values[env] = "1"
	}
	c := defaultConfig()
	err := applyEnv(&c, func(k string) string { return values[k] })
	// "1" is a bool, an int, a string and a list, but not a duration: every
	// duration is reported, all at once.
	for _, s := range settings(&c) {
		if s.v.Type() == durationType {
			if err == nil || !strings.Contains(err.Error(), s.env+`="1": not a duration`) {
				t.Errorf("bad %s not reported: %v", s.env, err)
			}
			continue
		}
		if s.v.Kind() == reflect.String && s.v.String() != "1" {
			t.Errorf("%s did not set %s", s.env, s.key)
		}
	}
}

// TestServeUnknownFlag: an unknown flag is one line naming the closest
// valid flag, reported with every other problem, and no usage dump.
func TestServeUnknownFlag(t *testing.T) {
	var stderr bytes.Buffer
	code := run(t.Context(), []string{"serve", "--isuer", "https://a.example", "--log-level", "loud"},
		env{stdout: &stderr, stderr: &stderr, getenv: func(k string) string { return map[string]string{"LATCH_LOG_FORMAT": "xml"}[k] }})
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	out := stderr.String()
	for _, want := range []string{"unknown flag --isuer; did you mean --issuer?", `log.level (--log-level, LATCH_LOG_LEVEL) "loud"`,
		`log.format (LATCH_LOG_FORMAT) "xml": want json or text`, "issuer (--issuer, LATCH_ISSUER) is required outside --dev"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Usage") || strings.Count(out, "\n") > 6 {
		t.Errorf("output is more than the problems:\n%s", out)
	}
}

// TestServeRequiresIssuer: outside --dev, serve refuses to start without
// an issuer and names the flag, the variable and the key; the container
// image, configured by its Dockerfile's environment, refuses the same way.
func TestServeRequiresIssuer(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	cmd := exec.CommandContext(ctx, latchBinary(t), "serve", "--db", db, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	cmd.Env = withoutLatchEnv()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("serve without an issuer: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"--issuer", "LATCH_ISSUER", "issuer", "required"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("database created without an issuer")
	}

	// The image: its ENV, its CMD, nothing else.
	vars := dockerfileEnv(t)
	if _, ok := vars["LATCH_ISSUER"]; ok {
		t.Fatal("the Dockerfile sets LATCH_ISSUER: every image would share one issuer")
	}
	img := exec.CommandContext(ctx, latchBinary(t), "serve")
	img.Env = withoutLatchEnv()
	img.Dir = t.TempDir()
	for k, v := range vars {
		if k == "LATCH_DB" {
			v = filepath.Join(img.Dir, "latch.db")
		}
		img.Env = append(img.Env, k+"="+v)
	}
	out, err = img.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "LATCH_ISSUER") {
		t.Errorf("the image's configuration started without an issuer (%v) or did not say what to set:\n%s", err, out)
	}
}

// withoutLatchEnv is the process environment without LATCH_* variables.
func withoutLatchEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LATCH_") {
			out = append(out, kv)
		}
	}
	return out
}

// dockerfileEnv reads the ENV of the Dockerfile.
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(LATCH_[A-Z_]+)=(\S+)`).FindAllStringSubmatch(string(raw), -1) {
		vars[m[1]] = m[2]
	}
	return vars
}

// TestServeBindsBeforeCreatingState: with a port in use, serve stops
// before it creates the database (and so before it generates keys), and
// says which address is taken.
func TestServeBindsBeforeCreatingState(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, flagName := range []string{"--grpc-addr", "--http-addr"} {
		t.Run(flagName, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "latch.db")
			args := []string{"--db", db, "--issuer", "https://latch.test", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", flagName, taken.Addr().String()}
			out, err := exec.CommandContext(ctx, latchBinary(t), append([]string{"serve"}, args...)...).CombinedOutput()
			if err == nil {
				t.Fatalf("serve started on a port in use:\n%s", out)
			}
			if !strings.Contains(string(out), taken.Addr().String()) || !strings.Contains(string(out), "in use") {
				t.Errorf("output does not name the address in use:\n%s", out)
			}
			if _, err := os.Stat(db); err == nil {
				t.Errorf("database created before the port was found in use:\n%s", out)
			}
		})
	}
}

// TestServeDatabaseDirectoryMissing: a database path whose directory does
// not exist is named once, with what to do.
func TestServeDatabaseDirectoryMissing(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	dir := filepath.Join(t.TempDir(), "no", "such")
	db := filepath.Join(dir, "latch.db")
	out, err := exec.CommandContext(ctx, latchBinary(t), "serve", "--db", db, "--issuer", "https://latch.test",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil {
		t.Fatalf("serve started on a missing directory:\n%s", out)
	}
	if n := strings.Count(string(out), db); n != 1 {
		t.Errorf("the path appears %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(string(out), "mkdir -p "+dir) {
		t.Errorf("no hint to create the directory:\n%s", out)
	}
}

// TestHelpShowsValuesAndRoutes: the example configuration and serve's help
// show the key publish lead as the duration it comes to, name both signals
// that drain, and list every route of the HTTP port.
func TestHelpShowsValuesAndRoutes(t *testing.T) {
	text := func(args ...string) string {
		var out bytes.Buffer
		run(t.Context(), args, env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }})
		return out.String()
	}
	example, help := text("config", "example"), text("serve", "--help")
	if lead := (server.Config{}).Defaults().KeyPublishLead; lead != time.Hour+5*time.Minute {
		t.Fatalf("default key publish lead = %v, want 1h5m0s (the JWKS max-age 5m + 1h)", lead)
	}
	if !strings.Contains(example, "publish_lead: 1h5m0s") {
		t.Errorf("the example does not show the publish lead as 1h5m0s:\n%s", example)
	}
	drain := regexp.MustCompile(`(?m)^\s*# (.*)\n\s*drain_delay:`).FindStringSubmatch(example)
	if drain == nil || !strings.Contains(drain[1], "SIGTERM or SIGINT") {
		t.Errorf("shutdown.drain_delay's comment does not name SIGTERM and SIGINT: %q", drain)
	}
	if !strings.Contains(help, "SIGINT or SIGTERM") {
		t.Errorf("serve's help does not say that SIGINT and SIGTERM both stop it gracefully:\n%s", help)
	}
	httpDoc := regexp.MustCompile(`(?m)^\s*# (.*)\n\s*http:`).FindStringSubmatch(example)
	if httpDoc == nil {
		t.Fatalf("the example has no listen.http comment:\n%s", example)
	}
	for _, route := range []string{server.JWKSPath, server.DiscoveryPath, "/healthz", "/readyz", server.MetricsPath} {
		if !strings.Contains(httpDoc[1], route) {
			t.Errorf("listen.http's comment does not list %s: %q", route, httpDoc[1])
		}
		if !strings.Contains(help, route) {
			t.Errorf("serve's help does not list %s under --http-addr", route)
		}
	}
}
