package main

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
// add`'s or `latch admin`'s standard input, is refused after at most one
// buffer (the longest password and a CR LF), not read without bound.
func TestPasswordLineIsBounded(t *testing.T) {
	in := &endlessReader{}
	if _, err := readPassword(in); err == nil || !strings.Contains(err.Error(), "8 to 1024 bytes") {
		t.Errorf("readPassword: err %v, want the length refusal", err)
	}
	if in.n > secretLineBuffer {
		t.Errorf("readPassword read %d bytes, want at most %d", in.n, secretLineBuffer)
	}
	in = &endlessReader{}
	p := newPrompter(env{stdin: in, stderr: &bytes.Buffer{}})
	if _, err := p.secret("new password", true); err == nil || !strings.Contains(err.Error(), "8 to 1024 bytes") {
		t.Errorf("prompter: err %v, want the length refusal", err)
	}
	if in.n > secretLineBuffer {
		t.Errorf("prompter read %d bytes, want at most %d", in.n, secretLineBuffer)
	}
}
