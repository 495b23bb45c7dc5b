package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/latchauth/latch/storage"
)

// BootstrapResult says what BootstrapAdmin did.
type BootstrapResult int

// BootstrapAdmin outcomes.
const (
	// BootstrapCreated: no enabled admin existed; the admin was created.
	BootstrapCreated BootstrapResult = iota + 1
	// BootstrapAdminExists: an enabled admin exists; nothing was changed.
	BootstrapAdminExists
	// BootstrapEmailTaken: no enabled admin exists, but the email belongs to
	// a user that is not one; that account is left untouched (it is never
	// taken over).
	BootstrapEmailTaken
)

// BootstrapAdmin creates the first administrator (roles [admin]) with the
// email and password, only when no enabled user with role admin exists, so
// that running it at every start is harmless. The password must satisfy the
// password policy (8 to 1024 bytes); it is stored only as a hash and never
// logged. The outcome is logged with event "admin_bootstrap".
func (s *Server) BootstrapAdmin(ctx context.Context, email, pw string) (BootstrapResult, error) {
	email, err := ParseNewEmail(email)
	if err != nil {
		return 0, fmt.Errorf("server: bootstrap admin: %w", err)
	}
	if err := checkNewPassword(pw); err != nil {
		return 0, fmt.Errorf("server: bootstrap admin: %w", err)
	}
	found, err := s.enabledAdminExists(ctx)
	if err != nil {
		return 0, fmt.Errorf("server: bootstrap admin: %w", err)
	}
	if found {
		s.log.LogAttrs(ctx, slog.LevelInfo, "an administrator exists; bootstrap skipped",
			slog.String("event", "admin_bootstrap"), slog.String("outcome", "admin_exists"))
		return BootstrapAdminExists, nil
	}
	u, err := AddUser(ctx, s.store, s.hasher, s.rand, s.now(), email, pw, []string{RoleAdmin}, false)
	if errors.Is(err, storage.ErrAlreadyExists) {
		// Another replica sharing the store may have just bootstrapped the
		// same admin.
		if found, ferr := s.enabledAdminExists(ctx); ferr == nil && found {
			s.log.LogAttrs(ctx, slog.LevelInfo, "an administrator exists; bootstrap skipped",
				slog.String("event", "admin_bootstrap"), slog.String("outcome", "admin_exists"))
			return BootstrapAdminExists, nil
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "no enabled administrator exists, but the bootstrap email belongs to another account; "+
			"it was left untouched: use `latch user add --role admin` with the server stopped, or another email",
			slog.String("event", "admin_bootstrap"), slog.String("outcome", "email_taken"))
		return BootstrapEmailTaken, nil
	}
	if err != nil {
		return 0, fmt.Errorf("server: bootstrap admin: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "first administrator created",
		slog.String("event", "admin_bootstrap"), slog.String("outcome", "created"), slog.String("user_id", u.ID))
	return BootstrapCreated, nil
}

// enabledAdminExists reports whether any enabled user holds RoleAdmin.
func (s *Server) enabledAdminExists(ctx context.Context) (bool, error) {
	after := ""
	for {
		users, err := s.store.ListUsers(ctx, after, maxPageSize)
		if err != nil {
			return false, fmt.Errorf("list users: %w", err)
		}
		for _, u := range users {
			if !u.Disabled && slices.Contains(u.Roles, RoleAdmin) {
				return true, nil
			}
		}
		if len(users) < maxPageSize {
			return false, nil
		}
		after = users[len(users)-1].ID
	}
}
