// Package record is the one stored form of what both storage backends
// (storage/bolt and storage/etcd) persist: sessions and their summaries,
// users, signing keys and refresh-token MAC secrets. A record is the byte
// Version, the length of the rest as a varint, and a protobuf message of
// package latch.storage.v1 (proto/latch/storage/v1/record.proto, generated
// into recordpb). The length makes a record cut short fail to decode
// instead of reading as another, shorter one.
//
// Decoders read only Version and only fields they know: anything else is
// ErrCorrupt, never a guess. Encoders are deterministic, so equal values
// give equal bytes (storage/etcd skips rewriting an unchanged key).
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record/recordpb"
)

// Version is the first byte of every record. A format that an earlier
// build would misread gets a new number, never one used before: 1 and 2
// were unreleased formats.
const Version byte = 3

// ErrCorrupt reports a record this build cannot decode: damaged, or of
// another version.
var ErrCorrupt = errors.New("corrupt or unknown record")

// encode returns m as a record, or err (converting m's fields failed).
func encode(m proto.Message, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	opts := proto.MarshalOptions{Deterministic: true}
	b := protowire.AppendVarint([]byte{Version}, uint64(opts.Size(m)))
	b, err = opts.MarshalAppend(b, m)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}

// decode parses a record into m.
func decode(data []byte, m proto.Message) error {
	if len(data) == 0 || data[0] != Version {
		return fmt.Errorf("%w: not a version %d record", ErrCorrupt, Version)
	}
	n, w := protowire.ConsumeVarint(data[1:])
	if w < 0 || n != uint64(len(data)-1-w) {
		return fmt.Errorf("%w: length does not match", ErrCorrupt)
	}
	if err := proto.Unmarshal(data[1+w:], m); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		return fmt.Errorf("%w: unknown fields", ErrCorrupt)
	}
	return nil
}

// times converts between time.Time and Timestamp, keeping the first
// error: a zero time is an unset field.
type times struct{ err error }

func (c *times) pb(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	ts := timestamppb.New(t)
	if err := ts.CheckValid(); err != nil && c.err == nil {
		c.err = fmt.Errorf("encode record: time %v outside years 1 to 9999: %w", t, storage.ErrInvalidArgument)
	}
	return ts
}

func (c *times) time(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil && c.err == nil {
		c.err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return ts.AsTime()
}

// EncodeSession returns the record of s. A time outside the years 1 to 9999
// is storage.ErrInvalidArgument.
func EncodeSession(s storage.Session) ([]byte, error) {
	var c times
	m := &recordpb.Session{Id: s.ID, UserId: s.UserID, Audience: s.Audience, CurrentHash: s.CurrentHash[:],
		PreviousRotatedAt: c.pb(s.PreviousRotatedAt), Generation: s.Generation, CreatedAt: c.pb(s.CreatedAt),
		LastRotatedAt: c.pb(s.LastRotatedAt), IdleExpiresAt: c.pb(s.IdleExpiresAt),
		AbsoluteExpiresAt: c.pb(s.AbsoluteExpiresAt), RevokedAt: c.pb(s.RevokedAt), RevokeReason: s.RevokeReason,
		UserAgent: s.UserAgent, DeviceName: s.DeviceName, LoginAddr: s.LoginAddr, LastAddr: s.LastAddr}
	if !s.PreviousHash.IsZero() {
		m.PreviousHash = s.PreviousHash[:]
	}
	return encode(m, c.err)
}

// DecodeSession parses a session record.
func DecodeSession(data []byte) (storage.Session, error) {
	var m recordpb.Session
	if err := decode(data, &m); err != nil {
		return storage.Session{}, err
	}
	var c times
	s := storage.Session{ID: m.Id, UserID: m.UserId, Audience: m.Audience,
		PreviousRotatedAt: c.time(m.PreviousRotatedAt), Generation: m.Generation, CreatedAt: c.time(m.CreatedAt),
		LastRotatedAt: c.time(m.LastRotatedAt), IdleExpiresAt: c.time(m.IdleExpiresAt),
		AbsoluteExpiresAt: c.time(m.AbsoluteExpiresAt), RevokedAt: c.time(m.RevokedAt), RevokeReason: m.RevokeReason,
		UserAgent: m.UserAgent, DeviceName: m.DeviceName, LoginAddr: m.LoginAddr, LastAddr: m.LastAddr}
	if len(m.CurrentHash) != len(s.CurrentHash) || (len(m.PreviousHash) != 0 && len(m.PreviousHash) != len(s.PreviousHash)) {
		return storage.Session{}, fmt.Errorf("%w: bad refresh digest length", ErrCorrupt)
	}
	copy(s.CurrentHash[:], m.CurrentHash)
	copy(s.PreviousHash[:], m.PreviousHash)
	return s, c.err
}

// EncodeUser returns the record of u. A time outside the years 1 to 9999
// is storage.ErrInvalidArgument.
func EncodeUser(u storage.User) ([]byte, error) {
	var c times
	m := &recordpb.User{Id: u.ID, Email: u.Email, PasswordHash: u.PasswordHash, Roles: u.Roles,
		Disabled: u.Disabled, CreatedAt: c.pb(u.CreatedAt), UpdatedAt: c.pb(u.UpdatedAt)}
	return encode(m, c.err)
}

// DecodeUser parses a user record. The result shares no memory with data.
func DecodeUser(data []byte) (storage.User, error) {
	var m recordpb.User
	if err := decode(data, &m); err != nil {
		return storage.User{}, err
	}
	var c times
	u := storage.User{ID: m.Id, Email: m.Email, PasswordHash: m.PasswordHash, Roles: m.Roles,
		Disabled: m.Disabled, CreatedAt: c.time(m.CreatedAt), UpdatedAt: c.time(m.UpdatedAt)}
	return u, c.err
}

// EncodeKey returns the record of k. A time outside the years 1 to 9999
// is storage.ErrInvalidArgument.
func EncodeKey(k storage.SigningKey) ([]byte, error) {
	var c times
	m := &recordpb.SigningKey{Id: k.ID, PrivateKey: k.PrivateKey, PublicKey: k.PublicKey, State: string(k.State),
		CreatedAt: c.pb(k.CreatedAt), ActivatedAt: c.pb(k.ActivatedAt), RetiredAt: c.pb(k.RetiredAt)}
	return encode(m, c.err)
}

// DecodeKey parses a signing-key record. The result shares no memory with
// data.
func DecodeKey(data []byte) (storage.SigningKey, error) {
	var m recordpb.SigningKey
	if err := decode(data, &m); err != nil {
		return storage.SigningKey{}, err
	}
	var c times
	k := storage.SigningKey{ID: m.Id, PrivateKey: m.PrivateKey, PublicKey: m.PublicKey, State: storage.KeyState(m.State),
		CreatedAt: c.time(m.CreatedAt), ActivatedAt: c.time(m.ActivatedAt), RetiredAt: c.time(m.RetiredAt)}
	return k, c.err
}

// EncodeRefreshKey returns the record of k. A time outside the years 1 to
// 9999 is storage.ErrInvalidArgument.
func EncodeRefreshKey(k storage.RefreshKey) ([]byte, error) {
	var c times
	m := &recordpb.RefreshKey{Id: k.ID, Secret: k.Secret, State: string(k.State),
		CreatedAt: c.pb(k.CreatedAt), ActivatedAt: c.pb(k.ActivatedAt), RetiredAt: c.pb(k.RetiredAt)}
	return encode(m, c.err)
}

// DecodeRefreshKey parses a refresh-key record. The result shares no
// memory with data.
func DecodeRefreshKey(data []byte) (storage.RefreshKey, error) {
	var m recordpb.RefreshKey
	if err := decode(data, &m); err != nil {
		return storage.RefreshKey{}, err
	}
	var c times
	k := storage.RefreshKey{ID: m.Id, Secret: m.Secret, State: storage.KeyState(m.State),
		CreatedAt: c.time(m.CreatedAt), ActivatedAt: c.time(m.ActivatedAt), RetiredAt: c.time(m.RetiredAt)}
	return k, c.err
}

// EncodeTime is the 8-byte form of a time that both backends store for
// expiries and sort by: big-endian unix nanoseconds, zero for a zero or
// pre-1970 time.
func EncodeTime(t time.Time) []byte {
	n := t.UnixNano()
	if n < 0 || t.IsZero() {
		n = 0
	}
	return binary.BigEndian.AppendUint64(nil, uint64(n))
}

// DecodeTime parses EncodeTime's form.
func DecodeTime(b []byte) (time.Time, error) {
	if len(b) != 8 {
		return time.Time{}, fmt.Errorf("%w: a time is 8 bytes", ErrCorrupt)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), nil
}
