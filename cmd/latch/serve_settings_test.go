package main

import (
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServeZeroDisablesCacheAndReuseGrace checks that 0 for
// tokens.verify_cache and tokens.refresh_reuse_grace reaches the server as
// "disabled" (negative), not as "use the default" (0), and that other values
// pass through.
func TestServeZeroDisablesCacheAndReuseGrace(t *testing.T) {
	e := env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	for _, c := range []struct {
		cache     int
		grace     time.Duration
		wantCache int
		wantGrace time.Duration
	}{
		{0, 0, -1, -1},
		{1234, 5 * time.Second, 1234, 5 * time.Second},
	} {
		cfg := defaultConfig()
		cfg.Issuer = "https://auth.example.com"
		cfg.Storage.DB = t.TempDir() + "/latch.db"
		cfg.Tokens.VerifyCache, cfg.Tokens.RefreshReuseGrace = c.cache, c.grace
		st, errs := prepareServe(cfg, e)
		if len(errs) > 0 {
			t.Fatalf("prepareServe: %v", errs)
		}
		if st.srv.VerifyCacheSize != c.wantCache || st.srv.RefreshReuseGrace != c.wantGrace {
			t.Errorf("verify_cache %d, refresh_reuse_grace %v: server got VerifyCacheSize %d, RefreshReuseGrace %v; want %d, %v",
				c.cache, c.grace, st.srv.VerifyCacheSize, st.srv.RefreshReuseGrace, c.wantCache, c.wantGrace)
		}
	}
}

// TestServeIssuerCheckedUnlessDevLeavesItEmpty checks that the issuer is
// required outside dev mode and, when given, checked in dev mode too.
func TestServeIssuerCheckedUnlessDevLeavesItEmpty(t *testing.T) {
	e := env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	for _, c := range []struct {
		dev     bool
		issuer  string
		wantErr bool
	}{
		{false, "", true}, {false, "ftp://auth.example.com", true}, {false, "https://auth.example.com", false},
		{true, "", false}, {true, "ftp://auth.example.com", true}, {true, "http://127.0.0.1:7301", false},
	} {
		cfg := defaultConfig()
		cfg.Dev, cfg.Issuer = c.dev, c.issuer
		cfg.Storage.DB = t.TempDir() + "/latch.db"
		_, errs := prepareServe(cfg, e)
		gotErr := false
		for _, err := range errs {
			gotErr = gotErr || strings.Contains(err.Error(), "issuer (--issuer, LATCH_ISSUER)")
		}
		if gotErr != c.wantErr {
			t.Errorf("dev %v, issuer %q: issuer error %v, want %v (errors: %v)", c.dev, c.issuer, gotErr, c.wantErr, errs)
		}
	}
}

// TestServeFlagsSetTheirKeys checks that each of serve's flags sets its
// key, and that a bad flag value is reported with the flag's name.
func TestServeFlagsSetTheirKeys(t *testing.T) {
	sa, errs := parseServeArgs([]string{"--issuer", "https://a.example", "--dev=false", "--grpc-addr", "127.0.0.1:1",
		"--http-addr", "127.0.0.1:2", "--db", "/tmp/x.db", "--log-level", "debug"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cfg, errs := loadServeConfig(sa, func(string) string { return "" })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := []string{cfg.Issuer, strconv.FormatBool(cfg.Dev), cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Storage.DB, cfg.Log.Level}
	if want := []string{"https://a.example", "false", "127.0.0.1:1", "127.0.0.1:2", "/tmp/x.db", "debug"}; !slices.Equal(got, want) {
		t.Errorf("settings from flags = %q, want %q", got, want)
	}
	_, errs = loadServeConfig(serveArgs{values: map[string]string{"dev": "maybe"}}, func(string) string { return "" })
	if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), `--dev "maybe": want true or false`) {
		t.Errorf("--dev=maybe: %v, want an error naming the flag", err)
	}
}
