package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/storagetest"
)

func parseStorageFlags(t *testing.T, args ...string) *storageFlags {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f storageFlags
	f.register(fs)
	if err := parseFlags(fs, args, func(string) string { return "" }, envName); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	f.checkFlags(fs, func(string) string { return "" }, io.Discard) // each test reads validate itself
	return &f
}

// TestEtcdRequestTimeoutIsNotTheDialTimeout: a long wait for etcd at start
// (--etcd-dial-timeout) does not make every request wait as long: each
// request is bounded by --etcd-request-timeout.
func TestEtcdRequestTimeoutIsNotTheDialTimeout(t *testing.T) {
	srv := etcdtest.Start(t)
	f := parseStorageFlags(t, "--storage", "etcd", "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", "/timeouts/",
		"--etcd-dial-timeout", "45s", "--etcd-request-timeout", "2s")
	if errs := f.validate(); len(errs) != 0 {
		t.Fatal(errs)
	}
	store, err := f.open(t.Context(), slog.New(slog.DiscardHandler), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if got := store.(*etcd.Store).OpTimeout(); got != 2*time.Second {
		t.Fatalf("request bound = %v, want --etcd-request-timeout (2s), not --etcd-dial-timeout", got)
	}
}

// TestEtcdStorageFlagErrors: the new etcd flags are checked like the others.
func TestEtcdStorageFlagErrors(t *testing.T) {
	f := parseStorageFlags(t, "--storage", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379",
		"--etcd-request-timeout", "0s", "--etcd-max-txn-ops", "8")
	var msgs []string
	for _, err := range f.validate() {
		msgs = append(msgs, err.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"--etcd-request-timeout 0s must be positive", "--etcd-max-txn-ops 8: want at least 16"} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q:\n%s", want, all)
		}
	}
	f = parseStorageFlags(t, "--etcd-request-timeout", "1s", "--etcd-max-txn-ops", "64")
	if errs := f.validate(); len(errs) != 2 {
		t.Errorf("etcd-only flags with bbolt: %v, want two errors", errs)
	}
}

// TestRevokedSessionRetention: serve's store keeps a revoked session for
// --access-ttl plus the leeway unless --revoked-session-retention asks for
// longer (never shorter), and the bbolt store it opens deletes a revoked
// session at the first sweep after that.
func TestRevokedSessionRetention(t *testing.T) {
	cfg := server.Config{AccessTTL: 10 * time.Minute}
	for _, tc := range []struct {
		flag, want time.Duration
		err        string
	}{
		{0, 10*time.Minute + 30*time.Second, ""},
		{time.Hour, time.Hour, ""},
		{10 * time.Minute, 0, "--revoked-session-retention 10m0s must be at least --access-ttl plus the leeway (10m30s)"},
		{-time.Second, 0, "must be at least"},
	} {
		got, err := revokedRetention(tc.flag, cfg, flagName)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("revokedRetention(%v) = %v, %v; want an error with %q", tc.flag, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("revokedRetention(%v) = %v, %v; want %v", tc.flag, got, err, tc.want)
		}
	}

	retention, err := revokedRetention(0, cfg, flagName)
	if err != nil {
		t.Fatal(err)
	}
	f := parseStorageFlags(t, "--db", filepath.Join(t.TempDir(), "latch.db"))
	store, err := f.open(t.Context(), slog.New(slog.DiscardHandler), retention)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	storagetest.EnsureUser(t, store, "u1")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := store.CreateSession(t.Context(), storage.Session{ID: "s1", UserID: "u1", CurrentHash: storagetest.Digest(t),
		CreatedAt: now, LastRotatedAt: now, IdleExpiresAt: now.Add(7 * 24 * time.Hour), AbsoluteExpiresAt: now.Add(30 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.RevokeSession(t.Context(), "s1", storage.ReasonRevoked, now); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.SweepOnce(t.Context(), store, 16, now.Add(retention+time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetSession(t.Context(), "s1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("revoked session after --access-ttl plus leeway and a sweep: %v; want it deleted", err)
	}
}

// TestSecretFileErrorsDoNotRepeatTheValue: a secret put where its file's
// name belongs is not echoed by the error that the file cannot be opened
// (every secret file is read by readSecretFile).
func TestSecretFileErrorsDoNotRepeatTheValue(t *testing.T) {
	const secret = "s3cretPassw0rd-not-a-path"
	if _, err := readSecretFile(secret, "storage.etcd.password_file", slog.New(slog.DiscardHandler)); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("readSecretFile(secret) = %v, want an error without the value", err)
	}
}

// TestSecretFilesWarnWhenOthersCanRead: every file that holds a secret (the
// bootstrap admin's password, the etcd user's password, the key-encryption
// key) gets the same warning when users other than its owner may read it,
// naming the setting and never the secret; latch user add warns as serve
// does.
func TestSecretFilesWarnWhenOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	const adminPW, etcdPW = "admin-secret-password", "etcd-secret-password"
	adminFile, etcdFile := write("admin-pw", adminPW+"\n"), write("etcd-pw", etcdPW+"\n")
	kekFile := write("kek", base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")
	etcdFlags := []string{"--storage", "etcd", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-username", "latch", "--etcd-password-file", etcdFile}
	serveEnv := map[string]string{"LATCH_STORAGE": "etcd", "LATCH_ETCD_ENDPOINTS": "http://127.0.0.1:1", "LATCH_ETCD_USERNAME": "latch",
		"LATCH_ETCD_PASSWORD_FILE": etcdFile, "LATCH_BOOTSTRAP_ADMIN": "root@example.com", "LATCH_BOOTSTRAP_ADMIN_PASSWORD_FILE": adminFile,
		"LATCH_KEY_ENCRYPTION_KEY_FILE": kekFile}

	// Each command has a problem besides (serve no issuer, user add no
	// --password-stdin), so it reports its problems and stops before it
	// opens any storage.
	var serveOut, userOut bytes.Buffer
	run(t.Context(), []string{"serve"}, env{stdout: io.Discard, stderr: &serveOut, getenv: func(k string) string { return serveEnv[k] }})
	run(t.Context(), append([]string{"user", "add", "--email", "a@example.com"}, etcdFlags...),
		env{stdout: io.Discard, stderr: &userOut, getenv: func(string) string { return "" }})

	for _, c := range []struct{ what, out, setting string }{
		{"serve", serveOut.String(), "bootstrap_admin.password_file"},
		{"serve", serveOut.String(), "storage.etcd.password_file"},
		{"serve", serveOut.String(), "keys.encryption_key_file"},
		{"user add", userOut.String(), "--etcd-password-file"},
	} {
		found := false
		for line := range strings.Lines(c.out) {
			if strings.Contains(line, "secret_file_mode") && strings.Contains(line, c.setting) && strings.Contains(line, "rw-r--r--") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no secret_file_mode warning naming %s and mode -rw-r--r--:\n%s", c.what, c.setting, c.out)
		}
		if strings.Contains(c.out, adminPW) || strings.Contains(c.out, etcdPW) {
			t.Errorf("%s: output holds a secret:\n%s", c.what, c.out)
		}
	}
}
