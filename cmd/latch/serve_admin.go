package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
)

// bootstrapPasswordEnv holds the first admin's password for
// bootstrap_admin.email. There is deliberately no flag or plain key for the
// password itself: flag values show in `ps` and shell history, and a
// configuration file is copied and committed.
const bootstrapPasswordEnv = "LATCH_BOOTSTRAP_ADMIN_PASSWORD"

// bootstrapFlags are serve's settings for creating the first
// administrator.
type bootstrapFlags struct {
	email, passwordFile string
	password            string // resolved by check, never logged
	name                namer  // how messages name a setting
}

// check resolves the password and reports every problem at once, before
// anything is opened.
func (b *bootstrapFlags) check(getenv func(string) string, log *slog.Logger) error {
	n := b.name
	envPW := getenv(bootstrapPasswordEnv)
	if b.email == "" {
		if b.passwordFile != "" {
			return fmt.Errorf("%s is given without %s", n("bootstrap-admin-password-file"), n("bootstrap-admin"))
		}
		if envPW != "" {
			log.Warn(bootstrapPasswordEnv+" is set but "+n("bootstrap-admin")+" is not; it is ignored (unset it)", "event", "admin_bootstrap_ignored")
		}
		return nil
	}
	var errs []error
	if _, err := server.ParseNewEmail(b.email); err != nil {
		errs = append(errs, fmt.Errorf("%s %q is not a plain email address: %w", n("bootstrap-admin"), b.email, err))
	}
	pw, from, err := readSecret("bootstrap password", b.passwordFile, n("bootstrap-admin-password-file"), bootstrapPasswordEnv, getenv, log)
	switch {
	case err != nil:
		errs = append(errs, err)
	case pw == "":
		errs = append(errs, fmt.Errorf("%s needs a password: set %s or %s (never a plain value)", n("bootstrap-admin"), bootstrapPasswordEnv, n("bootstrap-admin-password-file")))
	}
	b.password = pw
	if b.password != "" {
		if err := password.CheckLength(b.password); err != nil {
			errs = append(errs, fmt.Errorf("the bootstrap admin password from %s must be 8 to 1024 bytes: %w", from, err))
		}
	}
	return errors.Join(errs...)
}

// apply creates the first admin if bootstrap_admin.email is set and no
// enabled admin exists. The server logs the outcome (event admin_bootstrap).
func (b *bootstrapFlags) apply(ctx context.Context, srv *server.Server) error {
	if b.email == "" {
		return nil
	}
	if _, err := srv.BootstrapAdmin(ctx, b.email, b.password); err != nil {
		return fmt.Errorf("%s: %w", b.name("bootstrap-admin"), err)
	}
	return nil
}
