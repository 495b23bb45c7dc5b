package main

// Restoring a backup brings back what was revoked after it was taken; the
// procedure of docs/administration.md ("Backup and restore") makes sure
// nothing comes back to life.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// restoreTarget is the store a restore scenario runs on.
type restoreTarget struct {
	// args are the storage flags of latch serve and latch sessions.
	args func() []string
	// addUser adds a user with one role.
	addUser func(email, pw, role string)
	// backup is called with no server running; restore puts the backup
	// back, also with no server running.
	backup, restore func()
}

// TestRestoreBoltBackup: a bbolt backup (a copy of the file taken with the
// server stopped) restored over a store that has moved on brings back a
// revoked session, a revoked access token and a rotated-away refresh token;
// `latch sessions revoke --before` run before serving neutralises all of
// them, and every other token issued before the restore, while sessions
// created afterwards are untouched.
func TestRestoreBoltBackup(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	bin := latchBinary(t)
	dir := t.TempDir()
	db, saved := filepath.Join(dir, "latch.db"), filepath.Join(dir, "backup.db")
	runRestoreScenario(t, ctx, restoreTarget{
		args: func() []string { return []string{"--db", db} },
		addUser: func(email, pw, role string) {
			if out, err := userAdd(ctx, bin, db, email, pw, role); err != nil {
				t.Fatalf("user add %s: %v\n%s", email, err, out)
			}
		},
		backup:  func() { copyFile(t, db, saved) },
		restore: func() { copyFile(t, saved, db) },
	})
}

// TestRestoreEtcdSnapshot: the same with an etcd snapshot (the Maintenance
// Snapshot API, what `etcdctl snapshot save` calls) restored into a new
// cluster by writing its key-values back.
func TestRestoreEtcdSnapshot(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	const prefix = "/latch-restore/"
	srv := etcdtest.Start(t)
	snap := filepath.Join(t.TempDir(), "snapshot.db")
	runRestoreScenario(t, ctx, restoreTarget{
		args: func() []string { return etcdArgs(srv, prefix) },
		addUser: func(email, pw, role string) {
			etcdUserAdd(t, ctx, srv, prefix, email, pw, role)
		},
		backup: func() { saveSnapshot(t, ctx, srv.Endpoint, snap) },
		restore: func() {
			srv = etcdtest.Start(t) // a new cluster; the old one is lost
			loadSnapshot(t, ctx, snap, srv.Endpoint, prefix)
		},
	})
}

func runRestoreScenario(t *testing.T, ctx context.Context, target restoreTarget) {
	const alicePW, svcPW, issuer = "alice-password-1", "service-password-1", "https://latch.test"
	target.addUser("alice@example.com", alicePW, "user")
	target.addUser("svc@example.com", svcPW, server.RoleIntrospect)

	type node struct {
		proc *latchProc
		cli  latchv1.AuthServiceClient
	}
	start := func() node {
		t.Helper()
		p := startLatch(t, ctx, "", append(target.args(), "--refresh-reuse-grace", "0")...)
		conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return node{proc: p, cli: latchv1.NewAuthServiceClient(conn)}
	}
	stop := func(n node) {
		t.Helper()
		if err := n.proc.stop(t, ctx, syscall.SIGTERM); err != nil {
			t.Fatalf("latch serve did not stop cleanly: %v\n%s", err, n.proc.logText())
		}
	}
	login := func(n node, email, pw, aud string) *latchv1.TokenPair {
		t.Helper()
		r, err := n.cli.Login(ctx, &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
		if err != nil {
			t.Fatalf("Login %s: %v", email, err)
		}
		return r.GetTokens()
	}
	refresh := func(n node, rt string) (*latchv1.TokenPair, error) {
		r, err := n.cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: rt})
		return r.GetTokens(), err
	}
	// active introspects tok with caller's access token.
	active := func(n node, caller, tok string) (bool, error) {
		c := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+caller)
		r, err := n.cli.Introspect(c, &latchv1.IntrospectRequest{Token: tok})
		return r.GetActive(), err
	}
	sessions := func(wantOut string, before time.Time, extra ...string) {
		t.Helper()
		args := append(append([]string{"sessions", "revoke", "--before", before.Format(time.RFC3339Nano)}, target.args()...), extra...)
		out, err := exec.CommandContext(ctx, latchBinary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("latch %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), wantOut) {
			t.Fatalf("latch sessions revoke printed %q, want %q", out, wantOut)
		}
	}

	// Before the backup: four sessions of Alice's and the service's.
	n := start()
	s1 := login(n, "alice@example.com", alicePW, "orders") // revoked after the backup
	s2 := login(n, "alice@example.com", alicePW, "orders") // rotated after the backup
	s3 := login(n, "alice@example.com", alicePW, "orders") // its access token revoked after the backup
	s5 := login(n, "alice@example.com", alicePW, "orders") // untouched
	svcOld := login(n, "svc@example.com", svcPW, issuer)
	stop(n)
	target.backup()

	// After the backup: the store moves on.
	n = start()
	for _, tok := range []string{s1.GetRefreshToken(), s3.GetAccessToken()} {
		if _, err := n.cli.Revoke(ctx, &latchv1.RevokeRequest{Token: tok}); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	s2b, err := refresh(n, s2.GetRefreshToken())
	if err != nil {
		t.Fatalf("Refresh s2: %v", err)
	}
	s4 := login(n, "alice@example.com", alicePW, "orders") // created after the backup
	for _, tok := range []string{s1.GetAccessToken(), s3.GetAccessToken()} {
		if act, err := active(n, svcOld.GetAccessToken(), tok); err != nil || act {
			t.Fatalf("Introspect of a revoked token before the restore = %v, %v; want inactive", act, err)
		}
	}
	stop(n)
	target.restore()

	// A replica started on the restored store before the procedure: what
	// was revoked after the backup is valid again (the hazard the
	// procedure exists for).
	n = start()
	if act, err := active(n, svcOld.GetAccessToken(), s3.GetAccessToken()); err != nil || !act {
		t.Errorf("restored store: Introspect of the revoked access token = %v, %v; the backup should have brought it back", act, err)
	}
	s1b, err := refresh(n, s1.GetRefreshToken())
	if err != nil {
		t.Errorf("restored store: Refresh of the revoked session = %v; the backup should have brought it back", err)
	}
	stop(n)

	cutoff := time.Now()
	sessions("revoked 5 sessions", cutoff, "--revoked-session-retention", "15m30s")

	n = start()
	if _, err := active(n, svcOld.GetAccessToken(), s5.GetAccessToken()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Introspect with a caller credential issued before the restore: %v, want UNAUTHENTICATED", err)
	}
	svc := login(n, "svc@example.com", svcPW, issuer)
	for name, tok := range map[string]string{"revoked session": s1.GetAccessToken(), "rotated session": s2b.GetAccessToken(),
		"revoked access token": s3.GetAccessToken(), "session created after the backup": s4.GetAccessToken(),
		"untouched session": s5.GetAccessToken(), "refreshed on the restored store": s1b.GetAccessToken()} {
		if act, err := active(n, svc.GetAccessToken(), tok); err != nil || act {
			t.Errorf("after the procedure: Introspect of the access token of the %s = %v, %v; want inactive", name, act, err)
		}
	}
	for name, rt := range map[string]string{"revoked session": s1.GetRefreshToken(), "its token refreshed on the restored store": s1b.GetRefreshToken(),
		"rotated-away token": s2.GetRefreshToken(), "rotated token": s2b.GetRefreshToken(), "revoked access token's session": s3.GetRefreshToken(),
		"session created after the backup": s4.GetRefreshToken(), "untouched session": s5.GetRefreshToken()} {
		if _, err := refresh(n, rt); status.Code(err) != codes.Unauthenticated {
			t.Errorf("after the procedure: Refresh of the %s = %v, want UNAUTHENTICATED", name, err)
		}
	}
	fresh := login(n, "alice@example.com", alicePW, "orders")
	stop(n)

	// Repeating the procedure with the same cutoff keeps the sessions
	// created after it.
	sessions("revoked 0 sessions", cutoff)
	n = start()
	next, err := refresh(n, fresh.GetRefreshToken())
	if err != nil {
		t.Fatalf("Refresh of a session created after the cutoff: %v", err)
	}
	if act, err := active(n, svc.GetAccessToken(), next.GetAccessToken()); err != nil || !act {
		t.Errorf("Introspect of a session created after the cutoff = %v, %v; want active", act, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// saveSnapshot writes a snapshot of the etcd at endpoint to path.
func saveSnapshot(t *testing.T, ctx context.Context, endpoint, path string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// loadSnapshot writes the latest value of every key under prefix in the
// snapshot at path (etcd's bbolt file: bucket "key", keyed by revision,
// each value an mvccpb.KeyValue, a deletion marked by a trailing 't') to
// the etcd at endpoint, as `etcdutl snapshot restore` would bring them back
// (without leases: nothing expires by itself in the test's minutes).
func loadSnapshot(t *testing.T, ctx context.Context, path, endpoint, prefix string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size()%4096 == sha256Len { // etcd appends the snapshot's digest
		if err := os.Truncate(path, st.Size()-sha256Len); err != nil {
			t.Fatal(err)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open snapshot: %v", err)
	}
	defer db.Close()
	latest := map[string][]byte{}
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("no key bucket")
		}
		return b.ForEach(func(rev, v []byte) error {
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return fmt.Errorf("revision %x: %w", binary.BigEndian.Uint64(rev), err)
			}
			if !bytes.HasPrefix(kv.Key, []byte(prefix)) {
				return nil
			}
			if len(rev) > 17 && rev[17] == 't' {
				delete(latest, string(kv.Key))
			} else {
				latest[string(kv.Key)] = kv.Value
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("read snapshot: %v", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for k, v := range latest {
		if _, err := cli.Put(ctx, k, string(v)); err != nil {
			t.Fatalf("restore %q: %v", k, err)
		}
	}
	if len(latest) < 10 {
		t.Fatalf("the snapshot held %d keys under %s; want the users, sessions and keys", len(latest), prefix)
	}
}

const sha256Len = 32
