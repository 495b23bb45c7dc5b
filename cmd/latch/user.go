package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
)

const userUsage = `Usage: latch user add --email E [--role R ...] --password-stdin [--db PATH | --storage etcd --etcd-endpoints URLS]

Adds a user to the database. The password (8 to 1024 bytes) is never taken
from a flag: at a terminal it is asked for twice without echo, otherwise it
is read as one line from standard input. With bbolt the server must not be
running on the same database file (bbolt allows one process at a time); with
etcd it may be.

Example:
  printf '%s\n' "$PASSWORD" | latch user add --db latch.db --email svc@example.com --role introspect --password-stdin`

func user(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] != "add" {
		io.WriteString(e.stderr, userUsage+"\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errUsage
	}
	fs := flag.NewFlagSet("latch user add", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var (
		email   string
		roles   stringList
		pwStdin bool
	)
	var sf storageFlags // --storage, --db, --etcd-* (serve_storage.go)
	sf.register(fs)
	fs.StringVar(&email, "email", "", "the user's email (required)")
	fs.Var(&roles, "role", "a role copied into the user's access tokens (repeatable)")
	fs.BoolVar(&pwStdin, "password-stdin", false, "read the password as one line from standard input (required)")
	fs.Usage = usageWithEnv(fs, userUsage, envName)
	if err := parseFlags(fs, args[1:], e.getenv, envName); err != nil {
		return err
	}
	errs := sf.checkFlags(fs, e.getenv, e.stderr)
	if email == "" {
		errs = append(errs, errors.New("--email is required"))
	} else if _, err := server.ParseNewEmail(email); err != nil {
		errs = append(errs, fmt.Errorf("--email %q: %w", email, err))
	}
	if !pwStdin {
		errs = append(errs, errors.New("--password-stdin is required (passwords are never taken from flags)"))
	}
	// The same role policy as AdminService: sorted, no duplicates, at most 32.
	userRoles, err := server.ParseRoles(roles.vals)
	if err != nil {
		errs = append(errs, fmt.Errorf("--role: %w", err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// At a terminal: a prompt, no echo, asked twice. Otherwise one line of
	// standard input.
	pw, err := newPrompter(e).secret("password", true)
	if err != nil {
		return err
	}
	store, err := sf.open(ctx, slog.New(slog.DiscardHandler), 0) // adds a user: revokes and sweeps nothing
	if err != nil {
		return err
	}
	defer store.Close()
	hasher, err := password.NewHasher(password.DefaultParams(), runtime.GOMAXPROCS(0))
	if err != nil {
		return err
	}
	u, err := addUser(ctx, store, hasher, email, pw, userRoles)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "added user %s (%s) with roles [%s]\n", u.ID, u.Email, strings.Join(u.Roles, " "))
	return nil
}

// secretLineBuffer is the buffer of a reader for readSecretLine: the
// longest password and a CR LF, and one byte to tell a longer line.
const secretLineBuffer = password.MaxLength + 3

// readSecretLine reads one line from br without its line ending, never more
// than br's buffer: a longer line comes back cut, and then fails the
// password length check, instead of being read without bound. At the end of
// input it returns what it read and io.EOF.
func readSecretLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		err = nil
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), err
}

// addUser stores a new user with pw hashed (server.AddUser) and says so
// when the email is taken.
func addUser(ctx context.Context, store storage.UserStore, hasher *password.Hasher, email, pw string, roles []string) (storage.User, error) {
	email = server.NormalizeEmail(email)
	u, err := server.AddUser(ctx, store, hasher, rand.Reader, time.Now(), email, pw, roles, false)
	if errors.Is(err, storage.ErrAlreadyExists) {
		return storage.User{}, fmt.Errorf("a user with email %s already exists", email)
	}
	return u, err
}
