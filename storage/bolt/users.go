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
	if err := storage.CheckUser(u); err != nil {
		return fmt.Errorf("bolt: create user: %w", err)
	}
	return s.update(ctx, "create user "+u.ID, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(u.ID)) != nil {
			return fmt.Errorf("user id taken: %w", storage.ErrAlreadyExists)
		}
		if err := indexEmail(tx, "", u); err != nil {
			return err
		}
		return putUser(tx, u)
	})
}

// indexEmail points u's email at u in the email index, in place of old
// (none if ""): storage.ErrAlreadyExists if another user has it.
func indexEmail(tx *bbolt.Tx, old string, u storage.User) error {
	if u.Email == old {
		return nil
	}
	emails := tx.Bucket(bucketEmails)
	if emails.Get([]byte(u.Email)) != nil {
		return fmt.Errorf("email taken: %w", storage.ErrAlreadyExists)
	}
	if old != "" {
		if err := emails.Delete([]byte(old)); err != nil {
			return err
		}
	}
	return emails.Put([]byte(u.Email), []byte(u.ID))
}

// GetUser implements storage.UserStore.
func (s *Store) GetUser(ctx context.Context, id string) (u storage.User, err error) {
	err = s.view(ctx, "get user "+id, func(tx *bbolt.Tx) error {
		u, err = getUser(tx, id)
		return err
	})
	return u, err
}

// GetUserByEmail implements storage.UserStore.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (u storage.User, err error) {
	err = s.view(ctx, "get user by email", func(tx *bbolt.Tx) error {
		id := tx.Bucket(bucketEmails).Get([]byte(email))
		if id == nil {
			return storage.ErrNotFound
		}
		u, err = getUser(tx, string(id))
		return err
	})
	return u, err
}

// UpdateUser implements storage.UserStore.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(*storage.User) error) (storage.User, error) {
	if fn == nil {
		return storage.User{}, invalid("update user "+id, "nil update function")
	}
	var out storage.User
	err := s.update(ctx, "update user "+id, func(tx *bbolt.Tx) error {
		old, err := getUser(tx, id)
		if err != nil {
			return err
		}
		u, err := storage.ApplyUserUpdate(old, fn)
		if err != nil {
			return err
		}
		if err := indexEmail(tx, old.Email, u); err != nil {
			return err
		}
		out = u
		return putUser(tx, u)
	})
	if err != nil {
		return storage.User{}, err
	}
	out.Roles = slices.Clone(out.Roles)
	return out, nil
}

// CountUsers implements storage.UserStore.
func (s *Store) CountUsers(ctx context.Context) (n int, err error) {
	err = s.view(ctx, "count users", func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketUsers).Stats().KeyN
		return nil
	})
	return n, err
}
