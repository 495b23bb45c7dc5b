package etcd

import (
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// getUser reads a user and the revision to compare before writing it back.
func (s *Store) getUser(ctx context.Context, id string) (storage.User, int64, error) {
	resp, err := s.cli.Get(ctx, s.userKey(id))
	if err != nil {
		return storage.User{}, 0, wrapErr(ctx, "get user", err)
	}
	if len(resp.Kvs) == 0 {
		return storage.User{}, 0, storage.ErrNotFound
	}
	u, err := record.DecodeUser(resp.Kvs[0].Value)
	return u, resp.Kvs[0].ModRevision, err
}

// CreateUser implements storage.UserStore: the user and its email index in
// one Txn that requires both keys to be absent.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	if err := storage.CheckUser(u); err != nil {
		return fmt.Errorf("etcd: create user: %w", err)
	}
	data, err := record.EncodeUser(u)
	if err != nil {
		return fmt.Errorf("etcd: create user %s: %w", u.ID, err)
	}
	return s.run(ctx, "create user "+u.ID, func(ctx context.Context) error {
		uk, ek := s.userKey(u.ID), s.emailKey(u.Email)
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(uk), "=", 0), clientv3.Compare(clientv3.CreateRevision(ek), "=", 0)).
			Then(clientv3.OpPut(uk, string(data)), clientv3.OpPut(ek, u.ID)).
			Else(clientv3.OpGet(uk, clientv3.WithCountOnly())).Commit()
		switch {
		case err != nil:
			return clientErr(ctx, err)
		case resp.Succeeded:
			return nil
		case resp.Responses[0].GetResponseRange().Count > 0:
			return fmt.Errorf("user id taken: %w", storage.ErrAlreadyExists)
		}
		return fmt.Errorf("email taken: %w", storage.ErrAlreadyExists)
	})
}

// GetUser implements storage.UserStore.
func (s *Store) GetUser(ctx context.Context, id string) (u storage.User, err error) {
	err = s.run(ctx, "get user "+id, func(ctx context.Context) error {
		u, _, err = s.getUser(ctx, id)
		return err
	})
	return u, err
}

// GetUserByEmail implements storage.UserStore. The index and the user are
// two reads; an index entry whose user is gone (possible only between the
// two reads, as both change in one Txn) reads as not found.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (u storage.User, err error) {
	err = s.run(ctx, "get user by email", func(ctx context.Context) error {
		resp, err := s.cli.Get(ctx, s.emailKey(email))
		if err != nil {
			return clientErr(ctx, err)
		}
		if len(resp.Kvs) == 0 {
			return storage.ErrNotFound
		}
		if u, _, err = s.getUser(ctx, string(resp.Kvs[0].Value)); err == nil && u.Email != email {
			err = storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return storage.User{}, err
	}
	return u, nil
}

// UpdateUser implements storage.UserStore as read, fn, and a Txn that
// compares the user's revision (and, for a new email, that it is free). On a
// concurrent change it reads again and calls fn again.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(*storage.User) error) (out storage.User, err error) {
	if fn == nil {
		return storage.User{}, invalid("update user "+id, "nil update function")
	}
	err = s.run(ctx, "update user "+id, func(ctx context.Context) error {
		for range maxRetries {
			old, rev, err := s.getUser(ctx, id)
			if err != nil {
				return err
			}
			u, err := storage.ApplyUserUpdate(old, fn)
			if err != nil {
				return err
			}
			data, err := record.EncodeUser(u)
			if err != nil {
				return err
			}
			cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.userKey(id)), "=", rev)}
			ops := []clientv3.Op{clientv3.OpPut(s.userKey(id), string(data))}
			if u.Email != old.Email {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.emailKey(u.Email)), "=", 0))
				ops = append(ops, clientv3.OpDelete(s.emailKey(old.Email)), clientv3.OpPut(s.emailKey(u.Email), u.ID))
			}
			resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).
				Else(clientv3.OpGet(s.userKey(id), clientv3.WithKeysOnly())).Commit()
			if err != nil {
				return clientErr(ctx, err)
			}
			if resp.Succeeded {
				out = u
				out.Roles = slices.Clone(u.Roles)
				return nil
			}
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 && kvs[0].ModRevision == rev {
				return fmt.Errorf("email taken: %w", storage.ErrAlreadyExists)
			}
			// The user changed meanwhile: start again from a fresh read.
		}
		return errContention
	})
	return out, err
}

// CountUsers implements storage.UserStore.
func (s *Store) CountUsers(ctx context.Context) (n int, err error) {
	err = s.run(ctx, "count users", func(ctx context.Context) error {
		resp, err := s.cli.Get(ctx, s.p+"users/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return clientErr(ctx, err)
		}
		n = int(resp.Count)
		return nil
	})
	return n, err
}

// ListUsers implements storage.UserAdmin: keys sort as the ids do.
func (s *Store) ListUsers(ctx context.Context, afterID string, limit int) (out []storage.User, err error) {
	if limit <= 0 {
		return nil, invalid("list users", "limit must be positive")
	}
	err = s.run(ctx, "list users", func(ctx context.Context) error {
		from := s.p + "users/"
		if afterID != "" {
			from = s.userKey(afterID) + "\x00"
		}
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.p+"users/")),
			clientv3.WithLimit(int64(limit)), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return clientErr(ctx, err)
		}
		out = make([]storage.User, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			u, err := record.DecodeUser(kv.Value)
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteUser implements storage.UserAdmin. The user's deletion (a Txn that
// compares the user's revision and deletes the user, its email index and
// its fence) is committed with the revocation of its live sessions: in one
// Txn when they fit, otherwise with the last Txn-full after the user has
// been fenced (see revokeUserSessions). Until that last Txn the user still
// exists, so a call that fails part-way can simply be repeated.
func (s *Store) DeleteUser(ctx context.Context, id string, now time.Time) (revoked []storage.Session, err error) {
	if !storage.ValidID(id) || now.IsZero() {
		return nil, invalid("delete user", "id and time are required")
	}
	err = s.run(ctx, "delete user "+id, func(ctx context.Context) error {
		revoked, err = s.revokeUserSessions(ctx, id, storage.ReasonUserChanged, now, func(ctx context.Context) ([]clientv3.Cmp, []clientv3.Op, error) {
			u, rev, err := s.getUser(ctx, id)
			if err != nil {
				return nil, nil, err
			}
			return []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.userKey(id)), "=", rev)},
				[]clientv3.Op{clientv3.OpDelete(s.userKey(id)), clientv3.OpDelete(s.emailKey(u.Email)), clientv3.OpDelete(s.userFenceKey(id))}, nil
		})
		return err
	})
	return revoked, err
}
