package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newKEKText(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// serveFails runs `latch serve` expecting it to exit 1 before listening,
// and returns its output.
func serveFails(t *testing.T, ctx context.Context, env []string, args ...string) string {
	t.Helper()
	cmd := serveCommand(t, ctx, append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("serve %v: err=%v, want exit 1\n%s", args, err, out)
	}
	return string(out)
}

// TestServeKeyEncryption runs the real binary: a database started with a
// key-encryption key refuses to start without it (naming the key and the
// variables), refuses a wrong one without repeating either, and starts with
// the right one given either way.
func TestServeKeyEncryption(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	dir := t.TempDir()
	db := filepath.Join(dir, "latch.db")
	kek := newKEKText(t)
	kekFile := filepath.Join(dir, "kek")
	if err := os.WriteFile(kekFile, []byte(kek+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startLatch(t, ctx, db, "--key-encryption-key-file", kekFile)
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logText())
	}
	if strings.Contains(p.logText(), "key_encryption_disabled") {
		t.Errorf("warned about unencrypted keys with a KEK given:\n%s", p.logText())
	}

	out := serveFails(t, ctx, nil, "--db", db)
	for _, want := range []string{"encrypted", "set keys.encryption_key_file (LATCH_KEY_ENCRYPTION_KEY_FILE)", "LATCH_KEY_ENCRYPTION_KEY"} {
		if !strings.Contains(out, want) {
			t.Errorf("start without the KEK: output lacks %q:\n%s", want, out)
		}
	}

	wrong := newKEKText(t)
	out = serveFails(t, ctx, []string{"LATCH_KEY_ENCRYPTION_KEY=" + wrong}, "--db", db)
	if !strings.Contains(out, "does not open the signing keys") {
		t.Errorf("start with a wrong KEK: output lacks the reason:\n%s", out)
	}
	if strings.Contains(out, wrong) || strings.Contains(out, kek) {
		t.Errorf("start with a wrong KEK: output repeats a key:\n%s", out)
	}

	out = serveFails(t, ctx, []string{"LATCH_KEY_ENCRYPTION_KEY=" + kek}, "--db", db, "--key-encryption-key-file", kekFile)
	if !strings.Contains(out, "not both") {
		t.Errorf("KEK given twice: output lacks the reason:\n%s", out)
	}

	t.Setenv("LATCH_KEY_ENCRYPTION_KEY", kek)
	p = startLatch(t, ctx, db)
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logText())
	}
	checkLogsHoldNoSecrets(t, p.logText(), kek)
}

// TestServeWarnsWithoutKEK: without a key-encryption key the server starts
// and warns exactly once.
func TestServeWarnsWithoutKEK(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"))
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if n := strings.Count(p.logText(), `"event":"key_encryption_disabled"`); n != 1 {
		t.Errorf("%d key_encryption_disabled warnings, want 1:\n%s", n, p.logText())
	}
}

// TestServeRejectsBadKeyConfig: every key problem is reported at once,
// each with its fix, and nothing is created.
func TestServeRejectsBadKeyConfig(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	badKEK := hex.EncodeToString(make([]byte, 32))
	out := serveFails(t, ctx, []string{"LATCH_KEY_ENCRYPTION_KEY=" + badKEK}, "--db", db,
		"--key-rotation", "10m", "--key-publish-lead", "1m", "--key-reload-interval", "0s")
	for _, want := range []string{
		"keys.publish_lead (LATCH_KEY_PUBLISH_LEAD) 1m0s must be at least the JWKS max-age",
		"keys.rotation (LATCH_KEY_ROTATION) 10m0s must be at least", "raise keys.rotation (LATCH_KEY_ROTATION)",
		"keys.reload_interval (LATCH_KEY_RELOAD_INTERVAL) 0s must be positive",
		"LATCH_KEY_ENCRYPTION_KEY: keyseal: bad key-encryption key", "head -c32 /dev/urandom | base64",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, badKEK) {
		t.Errorf("output repeats the bad key:\n%s", out)
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("database created despite invalid configuration")
	}
}
