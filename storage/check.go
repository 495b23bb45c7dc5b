package storage

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// The checks below are the arguments every backend refuses, so that all
// refuse the same input; failures wrap ErrInvalidArgument.

// CheckUser reports a user no backend stores: it needs a ValidID id and
// email.
func CheckUser(u User) error {
	if !ValidID(u.ID) || !ValidID(u.Email) {
		return fmt.Errorf("id and email are required (at most %d bytes each, no NUL): %w", MaxIDLen, ErrInvalidArgument)
	}
	return nil
}

// CheckSession reports a session no backend stores: it needs a ValidID id
// and owner, and the digest of its current refresh token.
func CheckSession(s Session) error {
	if !ValidID(s.ID) || !ValidID(s.UserID) || s.CurrentHash.IsZero() {
		return fmt.Errorf("id, user and refresh digest are required: %w", ErrInvalidArgument)
	}
	return nil
}

// CheckRevocation reports a revocation of id (a session's or a user's)
// without a ValidID id, a reason or a time.
func CheckRevocation(id, reason string, now time.Time) error {
	if !ValidID(id) || reason == "" || now.IsZero() {
		return fmt.Errorf("id, reason and time are required: %w", ErrInvalidArgument)
	}
	return nil
}

// ApplyUserUpdate calls fn on a copy of old (its roles cloned) and returns
// the result, refused if fn changed the id or left no valid email: the
// rules of UserStore.UpdateUser.
func ApplyUserUpdate(old User, fn func(*User) error) (User, error) {
	u := old
	u.Roles = slices.Clone(old.Roles)
	if err := fn(&u); err != nil {
		return User{}, err
	}
	if u.ID != old.ID {
		return User{}, fmt.Errorf("user id cannot change: %w", ErrInvalidArgument)
	}
	if !ValidID(u.Email) {
		return User{}, fmt.Errorf("email is required (at most %d bytes, no NUL): %w", MaxIDLen, ErrInvalidArgument)
	}
	return u, nil
}

// SortNewestFirst orders sessions by creation time, newest first, and by
// id among equal times so that the order is total: the order of
// SessionAdmin.ListUserSessions.
func SortNewestFirst(ss []Session) {
	slices.SortFunc(ss, func(a, b Session) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
}
