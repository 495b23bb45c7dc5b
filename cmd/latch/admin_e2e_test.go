package main

// End-to-end tests of administration: `latch serve --bootstrap-admin` and
// `latch admin ...` as real processes, plus grpcurl as an independent
// AdminService client.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/certs/certstest"
)

// adminRun runs `latch admin <args>` against p with stdin and extra
// environment, and returns stdout, stderr and the exit code.
func adminRun(t *testing.T, ctx context.Context, p *latchProc, stdin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	full := append([]string{"admin", "--insecure", "--addr", p.grpcAddr, "--issuer", "https://latch.test"}, args...)
	cmd := exec.CommandContext(ctx, latchBinary(t), full...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("latch admin %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

func mustAdmin(t *testing.T, ctx context.Context, p *latchProc, stdin string, env []string, args ...string) string {
	t.Helper()
	out, errOut, code := adminRun(t, ctx, p, stdin, env, args...)
	if code != 0 {
		t.Fatalf("latch admin %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// TestAdminEndToEnd: bootstrap the first admin with the password from the
// environment, administer with `latch admin` (login prompt on stdin, then a
// token from LATCH_ADMIN_TOKEN) and with grpcurl, restart idempotently.
func TestAdminEndToEnd(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	const rootPW, alicePW = "root-password-1", "alice-password-1"
	t.Setenv("LATCH_ADMIN_TOKEN", "")
	t.Setenv(bootstrapPasswordEnv, rootPW)
	p := startLatch(t, ctx, db, "--bootstrap-admin", "root@example.com")
	if !strings.Contains(p.logText(), `"event":"admin_bootstrap","outcome":"created"`) {
		t.Fatalf("no admin_bootstrap created event:\n%s", p.logText())
	}
	asRoot := []string{"--email", "root@example.com"}

	// users create: the admin's password, then the new one, on stdin.
	out := mustAdmin(t, ctx, p, rootPW+"\n"+alicePW+"\n", nil, append(asRoot, "users", "create", "alice@example.com", "--role", "user")...)
	if !strings.Contains(out, "created user") || !strings.Contains(out, "alice@example.com") {
		t.Fatalf("users create printed:\n%s", out)
	}
	// users list --json, a flag after the command.
	out = mustAdmin(t, ctx, p, rootPW+"\n", nil, append(asRoot, "users", "list", "--json")...)
	var list struct {
		Users []struct {
			ID    string   `json:"id"`
			Email string   `json:"email"`
			Roles []string `json:"roles"`
		} `json:"users"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("users list --json is not JSON: %v\n%s", err, out)
	}
	ids := map[string]string{}
	for _, u := range list.Users {
		ids[u.Email] = u.ID
	}
	if len(list.Users) != 2 || ids["alice@example.com"] == "" || ids["root@example.com"] == "" {
		t.Fatalf("users list = %+v", list.Users)
	}
	if out := mustAdmin(t, ctx, p, rootPW+"\n", nil, append(asRoot, "users", "list")...); !strings.Contains(out, "EMAIL") || !strings.Contains(out, "2 user(s)") {
		t.Fatalf("human users list:\n%s", out)
	}

	// Alice logs in twice; "log out everywhere" ends both sessions.
	var alice []pair
	for range 2 {
		alice = append(alice, tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
			map[string]string{"email": "alice@example.com", "password": alicePW}), "alice login")))
	}
	out = mustAdmin(t, ctx, p, rootPW+"\n", nil, append(asRoot, "sessions", "revoke-all", ids["alice@example.com"])...)
	if !strings.Contains(out, "revoked 2 session(s)") {
		t.Fatalf("sessions revoke-all printed:\n%s", out)
	}
	for _, a := range alice {
		wantCode(t, grpcurl(t, ctx, p.grpcAddr, nil, svcRefresh, map[string]string{"refresh_token": a.refresh}),
			"Unauthenticated", "invalid refresh token", "refresh after revoke-all")
	}

	// A token from the environment instead of a login; grpcurl as a second
	// client of AdminService.
	root := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "root@example.com", "password": rootPW, "audience": "https://latch.test"}), "root login"))
	tokenEnv := []string{"LATCH_ADMIN_TOKEN=" + root.access}
	out = mustAdmin(t, ctx, p, "", tokenEnv, "sessions", "list", ids["alice@example.com"], "--json")
	if strings.Count(out, "SESSION_STATE_REVOKED") != 2 {
		t.Fatalf("alice's sessions after revoke-all:\n%s", out)
	}
	bearer := []string{"authorization: Bearer " + root.access}
	got := mustOK(t, grpcurl(t, ctx, p.grpcAddr, bearer, "latch.v1.AdminService/ListSessions",
		map[string]string{"user_id": ids["root@example.com"]}), "grpcurl ListSessions")
	live := 0
	sessions, _ := got["sessions"].([]any)
	for _, s := range sessions {
		if s.(map[string]any)["state"] == "SESSION_STATE_LIVE" {
			live++
		}
	}
	// Four `latch admin --email` runs logged in; each revoked its session
	// when it ended. Only grpcurl's login is live.
	if len(sessions) != 5 || live != 1 {
		t.Fatalf("root's sessions: %d stored, %d live; want 5 and 1 (each CLI login ended)", len(sessions), live)
	}
	wantCode(t, grpcurl(t, ctx, p.grpcAddr, nil, "latch.v1.AdminService/ListUsers", map[string]any{}),
		"Unauthenticated", "", "grpcurl ListUsers without a token")
	aliceNow := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "alice@example.com", "password": alicePW, "audience": "https://latch.test"}), "alice login"))
	wantCode(t, grpcurl(t, ctx, p.grpcAddr, []string{"authorization: Bearer " + aliceNow.access}, "latch.v1.AdminService/ListUsers", map[string]any{}),
		"PermissionDenied", "", "grpcurl ListUsers as a user")
	// A token for a relying party's audience, even an administrator's, never
	// administers Latch.
	rootRP := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "root@example.com", "password": rootPW, "audience": "orders"}), "root login for orders"))
	wantCode(t, grpcurl(t, ctx, p.grpcAddr, []string{"authorization: Bearer " + rootRP.access}, "latch.v1.AdminService/ListUsers", map[string]any{}),
		"Unauthenticated", "", "grpcurl ListUsers with an admin's token for orders")

	// Errors are reported with their code, and exit 1.
	_, errOut, code := adminRun(t, ctx, p, "", tokenEnv, "users", "get", "nobody@example.com")
	if code != 1 || !strings.Contains(errOut, "NotFound: user not found") {
		t.Fatalf("users get unknown: exit %d, %s", code, errOut)
	}
	_, errOut, code = adminRun(t, ctx, p, rootPW+"\n", nil, append(asRoot, "users", "create", "eve@example.com", "--password", "x")...)
	if code != 2 {
		t.Fatalf("a password flag was accepted: exit %d, %s", code, errOut)
	}
	_, errOut, code = adminRun(t, ctx, p, "wrong-password\n", nil, append(asRoot, "users", "list")...)
	if code != 1 || !strings.Contains(errOut, "Unauthenticated: invalid email or password") {
		t.Fatalf("wrong admin password: exit %d, %s", code, errOut)
	}

	// Signing keys: listed, an early rotation refused, an emergency one done.
	out = mustAdmin(t, ctx, p, "", tokenEnv, "keys", "list")
	if !strings.Contains(out, "active") || !strings.Contains(out, "next") {
		t.Fatalf("keys list:\n%s", out)
	}
	_, errOut, code = adminRun(t, ctx, p, "", tokenEnv, "keys", "rotate")
	if code != 1 || !strings.Contains(errOut, "FailedPrecondition") || !strings.Contains(errOut, "may be activated from") {
		t.Fatalf("early keys rotate: exit %d, %s", code, errOut)
	}
	out = mustAdmin(t, ctx, p, "", tokenEnv, "keys", "rotate", "--immediate", "--json")
	if strings.Count(out, "SIGNING_KEY_STATE_RETIRED") != 1 || strings.Count(out, "SIGNING_KEY_STATE_ACTIVE") != 1 {
		t.Fatalf("keys rotate --immediate:\n%s", out)
	}

	logs := p.logText()
	for _, ev := range []string{"admin_user_created", "admin_sessions_revoked", "admin_signing_key_rotated"} {
		if !strings.Contains(logs, `"event":"`+ev+`"`) {
			t.Errorf("no %s event in the server log", ev)
		}
	}
	checkLogsHoldNoSecrets(t, logs, rootPW, alicePW, root.access, root.refresh, alice[0].refresh)

	// A restart with the same flag changes nothing.
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Setenv(bootstrapPasswordEnv, "another-password")
	p2 := startLatch(t, ctx, db, "--bootstrap-admin", "root@example.com")
	if !strings.Contains(p2.logText(), `"event":"admin_bootstrap","outcome":"admin_exists"`) {
		t.Fatalf("restart did not skip the bootstrap:\n%s", p2.logText())
	}
	mustAdmin(t, ctx, p2, rootPW+"\n", nil, append(asRoot, "users", "get", "root@example.com")...)
}

// TestAdminUserAddRoleAdmin: an admin added offline with `latch user add
// --role admin` administers the running server.
func TestAdminUserAddRoleAdmin(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	t.Setenv("LATCH_ADMIN_TOKEN", "")
	if out, err := userAdd(ctx, latchBinary(t), db, "ops@example.com", "ops-password-1", "admin"); err != nil {
		t.Fatalf("user add --role admin: %v\n%s", err, out)
	}
	p := startLatch(t, ctx, db)
	out := mustAdmin(t, ctx, p, "ops-password-1\n", nil, "--email", "ops@example.com", "users", "get", "ops@example.com")
	if !strings.Contains(out, "roles:") || !strings.Contains(out, "admin") {
		t.Fatalf("users get printed:\n%s", out)
	}
}

// TestServeBootstrapConfig: the bootstrap password never comes from a flag
// value, and a missing or doubled password is refused before anything is
// opened.
func TestServeBootstrapConfig(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("file-password-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		env  []string
		want string
	}{
		"no password":    {[]string{"--bootstrap-admin", "root@example.com"}, nil, "needs a password"},
		"both sources":   {[]string{"--bootstrap-admin", "root@example.com", "--bootstrap-admin-password-file", pwFile}, []string{bootstrapPasswordEnv + "=env-password-1"}, "not both"},
		"short password": {[]string{"--bootstrap-admin", "root@example.com"}, []string{bootstrapPasswordEnv + "=short"}, "8 to 1024"},
		"bad email":      {[]string{"--bootstrap-admin", "Root <root@example.com>"}, []string{bootstrapPasswordEnv + "=env-password-1"}, "plain email"},
		"file without email": {[]string{"--bootstrap-admin-password-file", pwFile}, nil,
			"bootstrap_admin.password_file (LATCH_BOOTSTRAP_ADMIN_PASSWORD_FILE) is given without bootstrap_admin.email (LATCH_BOOTSTRAP_ADMIN)"},
		"missing file": {[]string{"--bootstrap-admin", "root@example.com", "--bootstrap-admin-password-file", filepath.Join(dir, "nope")}, nil, "no such file"},
		"password flag": {[]string{"--bootstrap-admin", "root@example.com", "--bootstrap-admin-password", "x"}, nil,
			"--bootstrap-admin-password is not a flag: a secret is read from LATCH_BOOTSTRAP_ADMIN_PASSWORD or the file bootstrap_admin.password_file names"},
	} {
		t.Run(name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "latch.db")
			cmd := serveCommand(t, ctx, append([]string{"--db", db, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, tc.args...)...)
			cmd.Env = append(cmd.Env, tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("serve %v: err=%v, want a failing exit\n%s", tc.args, err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
			if _, err := os.Stat(db); err == nil {
				t.Error("database created despite invalid configuration")
			}
		})
	}
	// Reported with every other configuration problem, at once.
	cmd := serveCommand(t, ctx, "--db", filepath.Join(dir, "x.db"), "--access-ttl", "-1s", "--bootstrap-admin", "root@example.com")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "tokens.access_ttl (LATCH_ACCESS_TTL) -1s") || !strings.Contains(string(out), "needs a password") {
		t.Errorf("bootstrap and other configuration errors not reported together:\n%s", out)
	}
	// From a file: it works, and the password is not logged.
	db := filepath.Join(dir, "latch.db")
	p := startLatch(t, ctx, db, "--bootstrap-admin", "root@example.com", "--bootstrap-admin-password-file", pwFile)
	t.Setenv("LATCH_ADMIN_TOKEN", "")
	mustAdmin(t, ctx, p, "file-password-1\n", nil, "--email", "root@example.com", "users", "list")
	checkLogsHoldNoSecrets(t, p.logText(), "file-password-1")
}

// TestAdminCLICommands drives every remaining `latch admin` command against
// the real binary with a token from LATCH_ADMIN_TOKEN, checking each effect
// through AuthService with grpcurl.
func TestAdminCLICommands(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	t.Setenv("LATCH_ADMIN_TOKEN", "")
	t.Setenv(bootstrapPasswordEnv, "root-password-1")
	p := startLatch(t, ctx, db, "--bootstrap-admin", "root@example.com")
	root := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "root@example.com", "password": "root-password-1", "audience": "https://latch.test"}), "root login"))
	tok := []string{"LATCH_ADMIN_TOKEN=" + root.access}
	login := func(email, pw string) grpcResult {
		return grpcurl(t, ctx, p.grpcAddr, nil, svcLogin, map[string]string{"email": email, "password": pw})
	}

	// With a token, standard input holds only the new password.
	out := mustAdmin(t, ctx, p, "bob-password-1\n", tok, "users", "create", "bob@example.com", "--role", "user", "--json")
	var created struct {
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.User.ID == "" {
		t.Fatalf("users create --json: %v\n%s", err, out)
	}
	bob := created.User.ID

	out = mustAdmin(t, ctx, p, "", tok, "users", "update", bob, "--role", "orders:read", "--role", "user", "--set-email", "robert@example.com")
	if !strings.Contains(out, "robert@example.com") || !strings.Contains(out, "orders:read,user") {
		t.Fatalf("users update:\n%s", out)
	}
	session := tokensOf(t, mustOK(t, login("robert@example.com", "bob-password-1"), "login with the new email"))

	out = mustAdmin(t, ctx, p, "", tok, "sessions", "list", bob)
	if !strings.Contains(out, session.sid) || !strings.Contains(out, "live") || !strings.Contains(out, "1 session(s)") {
		t.Fatalf("sessions list:\n%s", out)
	}
	if out := mustAdmin(t, ctx, p, "", tok, "sessions", "revoke", session.sid); !strings.Contains(out, "revoked (reason admin)") {
		t.Fatalf("sessions revoke:\n%s", out)
	}
	wantCode(t, grpcurl(t, ctx, p.grpcAddr, nil, svcRefresh, map[string]string{"refresh_token": session.refresh}),
		"Unauthenticated", "", "refresh after sessions revoke")

	mustOK(t, login("robert@example.com", "bob-password-1"), "login before disable")
	if out := mustAdmin(t, ctx, p, "", tok, "users", "disable", bob); !strings.Contains(out, "revoked 1 session(s)") {
		t.Fatalf("users disable:\n%s", out)
	}
	wantCode(t, login("robert@example.com", "bob-password-1"), "Unauthenticated", "invalid email or password", "login while disabled")
	mustAdmin(t, ctx, p, "", tok, "users", "enable", bob)
	kept := tokensOf(t, mustOK(t, login("robert@example.com", "bob-password-1"), "login after enable"))

	if out := mustAdmin(t, ctx, p, "bob-password-2\n", tok, "users", "set-password", bob, "--keep-sessions"); !strings.Contains(out, "revoked 0 session(s)") {
		t.Fatalf("users set-password --keep-sessions:\n%s", out)
	}
	mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcRefresh, map[string]string{"refresh_token": kept.refresh}), "refresh after keep-sessions")
	wantCode(t, login("robert@example.com", "bob-password-1"), "Unauthenticated", "", "old password")
	mustOK(t, login("robert@example.com", "bob-password-2"), "new password")
	if out := mustAdmin(t, ctx, p, "bob-password-3\n", tok, "users", "set-password", bob); !strings.Contains(out, "revoked 2 session(s)") {
		t.Fatalf("users set-password:\n%s", out)
	}

	_, errOut, code := adminRun(t, ctx, p, "", tok, "users", "update", bob, "--role", "x", "--no-roles")
	if code != 1 || !strings.Contains(errOut, "not both") {
		t.Fatalf("--role with --no-roles: exit %d, %s", code, errOut)
	}
	_, errOut, code = adminRun(t, ctx, p, "short\n", tok, "users", "set-password", bob)
	if code != 1 || !strings.Contains(errOut, "8 to 1024 bytes") {
		t.Fatalf("short new password: exit %d, %s", code, errOut)
	}
	_, errOut, code = adminRun(t, ctx, p, "", tok, "users", "delete")
	if code != 2 {
		t.Fatalf("users delete without an id: exit %d, %s", code, errOut)
	}
	if out := mustAdmin(t, ctx, p, "", tok, "users", "delete", bob); !strings.Contains(out, "deleted user "+bob) {
		t.Fatalf("users delete:\n%s", out)
	}
	wantCode(t, login("robert@example.com", "bob-password-3"), "Unauthenticated", "", "login after delete")
	checkLogsHoldNoSecrets(t, p.logText(), "bob-password-1", "bob-password-2", "bob-password-3", root.access)
}

// TestAdminOverMutualTLS: `latch admin` verifies Latch's certificate
// against --tls-ca and presents a client certificate under mTLS; it does not
// fall back to plaintext.
func TestAdminOverMutualTLS(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	dir := t.TempDir()
	serverCA, clientCA, otherCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "client CA"), certstest.NewCA(t, "other CA")
	certFile, keyFile := serverCA.Server(t).WriteFiles(t, dir, "server")
	clientCert, clientKey := clientCA.Client(t, "ops", "spiffe://latch.test/ops").WriteFiles(t, dir, "client")
	caFile, clientCAFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "clients.pem"), filepath.Join(dir, "other.pem")
	certstest.WriteFile(t, caFile, serverCA.PEM)
	certstest.WriteFile(t, clientCAFile, clientCA.PEM)
	certstest.WriteFile(t, otherFile, otherCA.PEM)
	t.Setenv("LATCH_ADMIN_TOKEN", "")
	t.Setenv(bootstrapPasswordEnv, "root-password-1")
	p := startLatch(t, ctx, filepath.Join(dir, "latch.db"), "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", clientCAFile,
		"--bootstrap-admin", "root@example.com")

	run := func(args ...string) (string, string, int) {
		full := append([]string{"admin", "--addr", p.grpcAddr, "--issuer", "https://latch.test", "--email", "root@example.com", "--timeout", "10s"}, args...)
		cmd := exec.CommandContext(ctx, latchBinary(t), full...)
		cmd.Stdin = strings.NewReader("root-password-1\n")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stdout.String(), stderr.String(), code
	}
	mtls := []string{"--tls-ca", caFile, "--tls-cert", clientCert, "--tls-key", clientKey}
	if out, errOut, code := run(append(mtls, "users", "list")...); code != 0 || !strings.Contains(out, "root@example.com") {
		t.Fatalf("users list over mTLS: exit %d\n%s%s", code, out, errOut)
	}
	for name, args := range map[string][]string{
		"no client certificate": {"--tls-ca", caFile},
		"untrusted server":      {"--tls-ca", otherFile, "--tls-cert", clientCert, "--tls-key", clientKey},
		"plaintext":             {"--insecure"},
	} {
		if out, errOut, code := run(append(args, "users", "list")...); code == 0 {
			t.Errorf("%s: succeeded\n%s%s", name, out, errOut)
		}
	}
}

// TestAdminPromptsOnTerminal: on a terminal (a pseudo-terminal made by
// util-linux script(1), part of every Debian system), `latch admin` prompts
// for the admin's password, then for the new password twice, and refuses
// two different entries.
func TestAdminPromptsOnTerminal(t *testing.T) {
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("script(1) not found (Debian package bsdutils): %v", err)
	}
	ctx := testCtx(t, 2*time.Minute)
	t.Setenv("LATCH_ADMIN_TOKEN", "")
	t.Setenv(bootstrapPasswordEnv, "root-password-1")
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"), "--bootstrap-admin", "root@example.com")

	// converse runs the command on a pseudo-terminal and answers each
	// prompt when it appears.
	converse := func(answers map[string]string, order []string, args ...string) (string, error) {
		line := latchBinary(t) + " admin --insecure --addr " + p.grpcAddr + " --issuer https://latch.test --email root@example.com " + strings.Join(args, " ")
		cmd := exec.CommandContext(ctx, scriptBin, "-qec", line, "/dev/null")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out lockedBuilder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for _, prompt := range order { // each prompt appears once
			for !strings.Contains(out.String(), prompt) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := io.WriteString(in, answers[prompt]+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		err = cmd.Wait()
		return out.String(), err
	}
	out, err := converse(map[string]string{"password of root@example.com:": "root-password-1", "new password of carol@example.com:": "carol-password-1", "again:": "carol-password-1"},
		[]string{"password of root@example.com:", "new password of carol@example.com:", "again:"}, "users", "create", "carol@example.com")
	if err != nil || !strings.Contains(out, "created user") {
		t.Fatalf("users create on a terminal: %v\n%s", err, out)
	}
	out, err = converse(map[string]string{"password of root@example.com:": "root-password-1", "new password of dave@example.com:": "dave-password-1", "again:": "dave-password-2"},
		[]string{"password of root@example.com:", "new password of dave@example.com:", "again:"}, "users", "create", "dave@example.com")
	if err == nil || !strings.Contains(out, "differ") {
		t.Fatalf("mismatched confirmation: %v\n%s", err, out)
	}
	mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin, map[string]string{"email": "carol@example.com", "password": "carol-password-1"}), "carol login")
	wantCode(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin, map[string]string{"email": "dave@example.com", "password": "dave-password-1"}),
		"Unauthenticated", "", "dave was not created")
}

// lockedBuilder is a strings.Builder safe for a writer goroutine and a
// reading test.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
