package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/storage/bolt"
)

// TestUserAddRefusesNonPlainEmail: `latch user add` applies the same email
// policy as AdminService.CreateUser and --bootstrap-admin
// (server.ParseNewEmail). A display-name address used to be stored as
// "alice <alice@example.com>", an account nobody could log in to.
func TestUserAddRefusesNonPlainEmail(t *testing.T) {
	for name, email := range map[string]string{
		"display name": "Alice <alice@example.com>",
		"list":         "a@example.com, b@example.com",
	} {
		t.Run(name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "latch.db")
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"user", "add", "--db", db, "--email", email, "--password-stdin"},
				env{stdin: strings.NewReader("alice-password-1\n"), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
			if code == 0 || !strings.Contains(errOut.String(), "plain address") {
				t.Fatalf("user add --email %q: code %d, stderr %q; want refusal naming a plain address", email, code, errOut.String())
			}
			if strings.Contains(errOut.String()+out.String(), "alice-password-1") {
				t.Errorf("the password reached the output: %q %q", out.String(), errOut.String())
			}
			// Refused before the database is opened: nothing was created.
			st, err := bolt.Open(db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			users, err := st.ListUsers(context.Background(), "", 10)
			if err != nil || len(users) != 0 {
				t.Errorf("users after refusal: %v, %v; want none", users, err)
			}
		})
	}
}

// TestUserAddRolesLikeAdminService: `latch user add` stores roles as
// AdminService does (server.ParseRoles): sorted, without duplicates.
func TestUserAddRolesLikeAdminService(t *testing.T) {
	db := filepath.Join(t.TempDir(), "latch.db")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"user", "add", "--db", db, "--email", "svc@example.com", "--password-stdin",
		"--role", "user", "--role", "introspect", "--role", "user"},
		env{stdin: strings.NewReader("svc-password-1\n"), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
	if code != 0 {
		t.Fatalf("user add: code %d, stderr %q", code, errOut.String())
	}
	st, err := bolt.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.GetUserByEmail(context.Background(), "svc@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"introspect", "user"}; !slices.Equal(u.Roles, want) {
		t.Errorf("stored roles %q, want %q", u.Roles, want)
	}
}

// endlessReader is standard input that never ends a line; it counts what was
// read from it.
type endlessReader struct{ n int }

func (r *endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	r.n += len(p)
	return len(p), nil
}

// TestPasswordLineIsBounded: a password line without end, on `latch user
// add`'s or `latch admin`'s standard input or in a secret file, is refused
// after at most one buffer (the longest password and a CR LF), not read
// without bound.
func TestPasswordLineIsBounded(t *testing.T) {
	if _, err := readSecretFile("/dev/zero", "storage.etcd.password_file", slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "longer than 1024 bytes") {
		t.Errorf("secret file of endless zeros: err %v, want the length refusal", err)
	}
	in := &endlessReader{}
	p := newPrompter(env{stdin: in, stderr: &bytes.Buffer{}})
	if _, err := p.secret("new password", true); err == nil || !strings.Contains(err.Error(), "8 to 1024 bytes") {
		t.Errorf("prompter: err %v, want the length refusal", err)
	}
	if in.n > secretLineBuffer {
		t.Errorf("prompter read %d bytes, want at most %d", in.n, secretLineBuffer)
	}
}

// TestUserAddEmptyPassword: an empty standard input, or an empty line, is
// reported as empty (not as too short), and nothing is stored.
func TestUserAddEmptyPassword(t *testing.T) {
	for name, in := range map[string]string{"no input": "", "empty line": "\n"} {
		t.Run(name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "latch.db")
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"user", "add", "--db", db, "--email", "a@example.com", "--password-stdin"},
				env{stdin: strings.NewReader(in), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
			if code == 0 || !strings.Contains(errOut.String(), "empty") || strings.Contains(errOut.String(), "short") {
				t.Errorf("user add with %s: code %d, stderr %q; want a refusal saying the password is empty", name, code, errOut.String())
			}
		})
	}
}

// TestUserAddPromptsAtTerminal runs the real binary on a pseudo-terminal
// (util-linux script): it prompts for the password twice, does not echo it,
// and adds the user.
func TestUserAddPromptsAtTerminal(t *testing.T) {
	scriptPath, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script (util-linux) not installed: no pseudo-terminal to test with")
	}
	ctx := testCtx(t, time.Minute)
	db := filepath.Join(t.TempDir(), "latch.db")
	const pw = "terminal-password-1"
	cmd := exec.CommandContext(ctx, scriptPath, "-qec",
		latchBinary(t)+" user add --db "+db+" --email tty@example.com --password-stdin", "/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Answer each prompt once it is shown (echo is off by then).
	for _, prompt := range []string{"password: ", "again: "} {
		for !strings.Contains(out.String(), prompt) {
			select {
			case <-ctx.Done():
				t.Fatalf("no %q prompt on the terminal; output so far:\n%q", prompt, out.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		// The prompt is written just before echo is turned off: a pause
		// (not a threshold) so that the answer does not overtake it.
		time.Sleep(50 * time.Millisecond)
		if _, err := io.WriteString(stdin, pw+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	err = cmd.Wait()
	stdin.Close()
	if err != nil || !strings.Contains(out.String(), "added user") {
		t.Fatalf("user add at a terminal: %v\n%q", err, out.String())
	}
	if strings.Contains(out.String(), pw) {
		t.Errorf("the password was echoed on the terminal:\n%q", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
