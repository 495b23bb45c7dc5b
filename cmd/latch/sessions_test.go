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
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
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
		{[]string{"sessions", "revoke", "--db", db, "--before", "2026-01-02T15:04:05Z", "--revoked-session-retention", "1m"}, 1, "shorter than an access token can verify"},
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

// TestSessionsRevokeFutureCutoff: a --before later than a minute from now is
// refused with one line naming the cutoff in UTC and exit 2, before the
// store is opened; a restore's cutoff is in the past, and a future one
// would also end the sessions created after the restore. A cutoff a few
// seconds ahead (clocks a little apart) is accepted.
func TestSessionsRevokeFutureCutoff(t *testing.T) {
	db := filepath.Join(t.TempDir(), "latch.db")
	future := time.Now().Add(time.Hour).Truncate(time.Second).In(time.FixedZone("CEST", 2*3600))
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"sessions", "revoke", "--db", db, "--before", future.Format(time.RFC3339)},
		env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }})
	msg := stderr.String()
	if want := future.UTC().Format(time.RFC3339); code != 2 || !strings.Contains(msg, want) || !strings.Contains(msg, "future") {
		t.Errorf("latch sessions revoke --before %s: exit %d, stderr %q; want exit 2 naming the cutoff %s as in the future", future.Format(time.RFC3339), code, msg, want)
	}
	if lines := strings.Count(strings.TrimSpace(msg), "\n") + 1; lines != 1 || stdout.Len() != 0 {
		t.Errorf("refusal printed %d lines on stderr and %q on stdout; want one line on stderr", lines, stdout.String())
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused command touched the database: %v", err)
	}

	near := time.Now().Add(10 * time.Second)
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), []string{"sessions", "revoke", "--db", db, "--before", near.Format(time.RFC3339Nano)},
		env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }})
	if code != 0 {
		t.Errorf("latch sessions revoke --before now+10s: exit %d, stderr %q; want it accepted", code, stderr.String())
	}
}

// TestSessionsRevokeReport: latch sessions revoke ends the live sessions
// created before the cutoff, keeps the others, and says how many of each
// with the cutoff in UTC, so that a rerun can give the same one.
func TestSessionsRevokeReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := filepath.Join(t.TempDir(), "latch.db")
	now := time.Now()
	cutoff := now.Add(-time.Hour).Truncate(time.Second)
	st, err := bolt.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	sessions := map[string]storage.Session{}
	add := func(id, user string, created time.Time, revoked bool) {
		t.Helper()
		s := storage.Session{ID: id, UserID: user, Audience: "orders", CurrentHash: storage.TokenHash{1},
			CreatedAt: created, LastRotatedAt: created, IdleExpiresAt: now.Add(time.Hour), AbsoluteExpiresAt: now.Add(2 * time.Hour)}
		if err := st.CreateSession(ctx, s); err != nil {
			t.Fatalf("CreateSession %s: %v", id, err)
		}
		if revoked {
			if _, _, err := st.RevokeSession(ctx, id, storage.ReasonRevoked, created.Add(time.Minute)); err != nil {
				t.Fatalf("RevokeSession %s: %v", id, err)
			}
		}
		sessions[id] = s
	}
	for _, u := range []string{"user-a", "user-b", "user-c"} {
		if err := st.CreateUser(ctx, storage.User{ID: u, Email: u + "@example.com", PasswordHash: "$argon2id$x", CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatalf("CreateUser %s: %v", u, err)
		}
	}
	add("a-old-1", "user-a", cutoff.Add(-2*time.Hour), false)
	add("a-old-2", "user-a", cutoff.Add(-time.Minute), false)
	add("a-new", "user-a", cutoff, false) // at the cutoff: kept
	add("b-old", "user-b", cutoff.Add(-time.Second), false)
	add("b-old-revoked", "user-b", cutoff.Add(-time.Hour), true)
	add("c-new", "user-c", cutoff.Add(time.Minute), false)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	given := cutoff.In(time.FixedZone("EST", -5*3600)).Format(time.RFC3339)
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"sessions", "revoke", "--db", db, "--before", given}, env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }})
	if code != 0 {
		t.Fatalf("latch sessions revoke: exit %d, stderr %q", code, stderr.String())
	}
	want := "revoked 3 sessions of 2 users created before " + cutoff.UTC().Format(time.RFC3339) + "; kept 2 live sessions created at or after it"
	if got := strings.TrimSpace(stdout.String()); got != want {
		t.Errorf("output %q, want %q", got, want)
	}

	st, err = bolt.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for id, wantLive := range map[string]bool{"a-old-1": false, "a-old-2": false, "a-new": true, "b-old": false, "b-old-revoked": false, "c-new": true} {
		s, err := st.GetSession(ctx, id)
		if err != nil {
			t.Fatalf("GetSession %s: %v", id, err)
		}
		if s.Live(time.Now()) != wantLive {
			t.Errorf("session %s live = %v, want %v", id, !wantLive, wantLive)
		}
		if id == "b-old-revoked" && s.RevokeReason != storage.ReasonRevoked {
			t.Errorf("session revoked before the command: reason %q, want it left %q", s.RevokeReason, storage.ReasonRevoked)
		}
	}
}

// TestSessionsRevokeInterruptedNamesCutoff: when the walk stops part-way
// (here the command is interrupted before it starts), the error says how
// many sessions were revoked and gives the same --before to finish with,
// so a rerun does not take a fresh time.
func TestSessionsRevokeInterruptedNamesCutoff(t *testing.T) {
	db := filepath.Join(t.TempDir(), "latch.db")
	cutoff := time.Now().Add(-time.Hour).Truncate(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"sessions", "revoke", "--db", db, "--before", cutoff.Format(time.RFC3339)}, env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }})
	msg := stderr.String()
	if want := "--before " + cutoff.UTC().Format(time.RFC3339); code != 1 || !strings.Contains(msg, "revoked 0 sessions") || !strings.Contains(msg, want) {
		t.Errorf("interrupted latch sessions revoke: exit %d, stderr %q; want exit 1 saying how many were revoked and to rerun with %q", code, msg, want)
	}
}
