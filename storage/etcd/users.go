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
	ctx, cancel, err := s.begin(ctx, "create user")
	if err != nil {
		return err
	}
	defer cancel()
	if !storage.ValidID(u.ID) || !storage.ValidID(u.Email) {
		return fmt.Errorf("etcd: create user: id and email are required: %w", storage.ErrInvalidArgument)
	}
	data, err := record.EncodeUser(u)
	if err != nil {
		return fmt.Errorf("etcd: create user %s: %w", u.ID, err)
	}
	uk, ek := s.userKey(u.ID), s.emailKey(u.Email)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(uk), "=", 0), clientv3.Compare(clientv3.CreateRevision(ek), "=", 0)).
		Then(clientv3.OpPut(uk, string(data)), clientv3.OpPut(ek, u.ID)).
		Else(clientv3.OpGet(uk, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return wrapErr(ctx, "create user "+u.ID, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return fmt.Errorf("etcd: create user %s: user id taken: %w", u.ID, storage.ErrAlreadyExists)
		}
		return fmt.Errorf("etcd: create user %s: email taken: %w", u.ID, storage.ErrAlreadyExists)
	}
	return nil
}

// GetUser implements storage.UserStore.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	ctx, cancel, err := s.begin(ctx, "get user")
	if err != nil {
		return storage.User{}, err
	}
	defer cancel()
	u, _, err := s.getUser(ctx, id)
	if err != nil {
		return storage.User{}, fmt.Errorf("etcd: get user %s: %w", id, err)
	}
	return u, nil
}

// GetUserByEmail implements storage.UserStore. The index and the user are
// two reads; an index entry whose user is gone (possible only between the
// two reads, as both change in one Txn) reads as not found.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (storage.User, error) {
	ctx, cancel, err := s.begin(ctx, "get user by email")
	if err != nil {
		return storage.User{}, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.emailKey(email))
	if err != nil {
		return storage.User{}, wrapErr(ctx, "get user by email", err)
	}
	if len(resp.Kvs) == 0 {
		return storage.User{}, fmt.Errorf("etcd: get user by email: %w", storage.ErrNotFound)
	}
	u, _, err := s.getUser(ctx, string(resp.Kvs[0].Value))
	if err != nil {
		return storage.User{}, fmt.Errorf("etcd: get user by email: %w", err)
	}
	if u.Email != email {
		return storage.User{}, fmt.Errorf("etcd: get user by email: %w", storage.ErrNotFound)
	}
	return u, nil
}

// UpdateUser implements storage.UserStore as read, fn, and a Txn that
// compares the user's revision (and, for a new email, that it is free). On a
// concurrent change it reads again and calls fn again.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(*storage.User) error) (storage.User, error) {
	ctx, cancel, err := s.begin(ctx, "update user")
	if err != nil {
		return storage.User{}, err
	}
	defer cancel()
	if fn == nil {
		return storage.User{}, fmt.Errorf("etcd: update user %s: nil update function: %w", id, storage.ErrInvalidArgument)
	}
	for range maxRetries {
		old, rev, err := s.getUser(ctx, id)
		if err != nil {
			return storage.User{}, fmt.Errorf("etcd: update user %s: %w", id, err)
		}
		u := old
		u.Roles = slices.Clone(old.Roles)
		if err := fn(&u); err != nil {
			return storage.User{}, fmt.Errorf("etcd: update user %s: %w", id, err)
		}
		switch {
		case u.ID != old.ID:
			return storage.User{}, fmt.Errorf("etcd: update user %s: user id cannot change: %w", id, storage.ErrInvalidArgument)
		case !storage.ValidID(u.Email):
			return storage.User{}, fmt.Errorf("etcd: update user %s: email is required: %w", id, storage.ErrInvalidArgument)
		}
		data, err := record.EncodeUser(u)
		if err != nil {
			return storage.User{}, fmt.Errorf("etcd: update user %s: %w", id, err)
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
			return storage.User{}, wrapErr(ctx, "update user "+id, err)
		}
		if resp.Succeeded {
			u.Roles = slices.Clone(u.Roles)
			return u, nil
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 && kvs[0].ModRevision == rev {
			return storage.User{}, fmt.Errorf("etcd: update user %s: email taken: %w", id, storage.ErrAlreadyExists)
		}
		// The user changed meanwhile: start again from a fresh read.
	}
	return storage.User{}, fmt.Errorf("etcd: update user %s: %w", id, errContention)
}

// CountUsers implements storage.UserStore.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	ctx, cancel, err := s.begin(ctx, "count users")
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.p+"users/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, wrapErr(ctx, "count users", err)
	}
	return int(resp.Count), nil
}

// ListUsers implements storage.UserAdmin: keys sort as the ids do.
func (s *Store) ListUsers(ctx context.Context, afterID string, limit int) ([]storage.User, error) {
	ctx, cancel, err := s.begin(ctx, "list users")
	if err != nil {
		return nil, err
	}
	defer cancel()
	if limit <= 0 {
		return nil, fmt.Errorf("etcd: list users: limit must be positive: %w", storage.ErrInvalidArgument)
	}
	from := s.p + "users/"
	if afterID != "" {
		from = s.userKey(afterID) + "\x00"
	}
	resp, err := s.cli.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.p+"users/")),
		clientv3.WithLimit(int64(limit)), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, wrapErr(ctx, "list users", err)
	}
	out := make([]storage.User, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		u, err := record.DecodeUser(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("etcd: list users: %w", err)
		}
		out = append(out, u)
	}
	return out, nil
}

// DeleteUser implements storage.UserAdmin. The user's deletion (a Txn that
// compares the user's revision and deletes the user, its email index and
// its fence) is committed with the revocation of its live sessions: in one
// Txn when they fit, otherwise with the last Txn-full after the user has
// been fenced (see revokeUserSessions). Until that last Txn the user still
// exists, so a call that fails part-way can simply be repeated.
func (s *Store) DeleteUser(ctx context.Context, id string, now time.Time) ([]storage.Session, error) {
	ctx, cancel, err := s.begin(ctx, "delete user")
	if err != nil {
		return nil, err
	}
	defer cancel()
	if !storage.ValidID(id) || now.IsZero() {
		return nil, fmt.Errorf("etcd: delete user: id and time are required: %w", storage.ErrInvalidArgument)
	}
	revoked, err := s.revokeUserSessions(ctx, id, storage.ReasonUserChanged, now, func(ctx context.Context) ([]clientv3.Cmp, []clientv3.Op, error) {
		u, rev, err := s.getUser(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		return []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.userKey(id)), "=", rev)},
			[]clientv3.Op{clientv3.OpDelete(s.userKey(id)), clientv3.OpDelete(s.emailKey(u.Email)), clientv3.OpDelete(s.userFenceKey(id))}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: delete user %s: %w", id, err)
	}
	return revoked, nil
}
