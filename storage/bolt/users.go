package bolt

import (
	"context"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

func getUser(tx *bbolt.Tx, id string) (storage.User, error) {
	data := tx.Bucket(bucketUsers).Get([]byte(id))
	if data == nil {
		return storage.User{}, storage.ErrNotFound
	}
	return record.DecodeUser(data)
}

func putUser(tx *bbolt.Tx, u storage.User) error {
	data, err := record.EncodeUser(u)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketUsers).Put([]byte(u.ID), data)
}

// CreateUser implements storage.UserStore.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	if err := ctxErr(ctx, "create user"); err != nil {
		return err
	}
	if !storage.ValidID(u.ID) || !storage.ValidID(u.Email) {
		return fmt.Errorf("bolt: create user: id and email are required (at most %d bytes each, no NUL): %w", storage.MaxIDLen, storage.ErrInvalidArgument)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(u.ID)) != nil {
			return fmt.Errorf("user id taken: %w", storage.ErrAlreadyExists)
		}
		emails := tx.Bucket(bucketEmails)
		if emails.Get([]byte(u.Email)) != nil {
			return fmt.Errorf("email taken: %w", storage.ErrAlreadyExists)
		}
		if err := emails.Put([]byte(u.Email), []byte(u.ID)); err != nil {
			return err
		}
		return putUser(tx, u)
	})
	if err != nil {
		return fmt.Errorf("bolt: create user %s: %w", u.ID, err)
	}
	return nil
}

// GetUser implements storage.UserStore.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	if err := ctxErr(ctx, "get user"); err != nil {
		return storage.User{}, err
	}
	var u storage.User
	err := s.db.View(func(tx *bbolt.Tx) (err error) {
		u, err = getUser(tx, id)
		return err
	})
	if err != nil {
		return storage.User{}, fmt.Errorf("bolt: get user %s: %w", id, err)
	}
	return u, nil
}

// GetUserByEmail implements storage.UserStore.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (storage.User, error) {
	if err := ctxErr(ctx, "get user by email"); err != nil {
		return storage.User{}, err
	}
	var u storage.User
	err := s.db.View(func(tx *bbolt.Tx) (err error) {
		id := tx.Bucket(bucketEmails).Get([]byte(email))
		if id == nil {
			return storage.ErrNotFound
		}
		u, err = getUser(tx, string(id))
		return err
	})
	if err != nil {
		return storage.User{}, fmt.Errorf("bolt: get user by email: %w", err)
	}
	return u, nil
}

// UpdateUser implements storage.UserStore.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(*storage.User) error) (storage.User, error) {
	if err := ctxErr(ctx, "update user"); err != nil {
		return storage.User{}, err
	}
	if fn == nil {
		return storage.User{}, fmt.Errorf("bolt: update user %s: nil update function: %w", id, storage.ErrInvalidArgument)
	}
	var out storage.User
	err := s.db.Update(func(tx *bbolt.Tx) error {
		old, err := getUser(tx, id)
		if err != nil {
			return err
		}
		u := old
		u.Roles = slices.Clone(old.Roles)
		if err := fn(&u); err != nil {
			return err
		}
		if u.ID != old.ID {
			return fmt.Errorf("user id cannot change: %w", storage.ErrInvalidArgument)
		}
		if !storage.ValidID(u.Email) {
			return fmt.Errorf("email is required (at most %d bytes, no NUL): %w", storage.MaxIDLen, storage.ErrInvalidArgument)
		}
		if u.Email != old.Email {
			emails := tx.Bucket(bucketEmails)
			if emails.Get([]byte(u.Email)) != nil {
				return fmt.Errorf("email taken: %w", storage.ErrAlreadyExists)
			}
			if err := emails.Delete([]byte(old.Email)); err != nil {
				return err
			}
			if err := emails.Put([]byte(u.Email), []byte(u.ID)); err != nil {
				return err
			}
		}
		out = u
		return putUser(tx, u)
	})
	if err != nil {
		return storage.User{}, fmt.Errorf("bolt: update user %s: %w", id, err)
	}
	out.Roles = slices.Clone(out.Roles)
	return out, nil
}

// CountUsers implements storage.UserStore.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	if err := ctxErr(ctx, "count users"); err != nil {
		return 0, err
	}
	var n int
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketUsers).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: count users: %w", err)
	}
	return n, nil
}
