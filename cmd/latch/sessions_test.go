package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSessionsRevokeFlags: latch sessions revoke refuses a missing or
// malformed --before and a stray argument with a message saying what to
// give, before it opens any store.
func TestSessionsRevokeFlags(t *testing.T) {
	db := filepath.Join(t.TempDir(), "latch.db")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sessions"}, 2, "Usage: latch sessions revoke"},
		{[]string{"sessions", "revoke", "--db", db}, 1, "--before is required"},
		{[]string{"sessions", "revoke", "--db", db, "--before", "yesterday"}, 1, `--before "yesterday" is not an RFC 3339 time`},
		{[]string{"sessions", "revoke", "--db", db, "--before", "2026-01-02T15:04:05Z", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"sessions", "revoke", "--before", "2026-01-02T15:04:05Z", "--etcd-prefix", "/x/"}, 1, "applies only to --storage etcd"},
		{[]string{"sessions", "revoke", "--db", db, "--before", "2026-01-02T15:04:05Z", "--revoked-session-retention", "-1s"}, 1, "must not be negative"},
	} {
		var out bytes.Buffer
		code := run(context.Background(), tc.args, env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }})
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("latch %s: exit %d, output %q; want exit %d with %q", strings.Join(tc.args, " "), code, out.String(), tc.code, tc.want)
		}
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused command touched the database: %v", err)
	}
}
