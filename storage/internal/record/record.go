// Package record is the storage format of sessions, users, signing keys and
// refresh-token MAC secrets
// shared by the bbolt and etcd backends. Every record starts with a version
// byte: 1 is JSON (users, keys, and sessions written before version 2), 2
// is the compact binary session record (see EncodeSession). Decoders read
// every version a release ever wrote, so stored rows never need rewriting.
// The bytes are pinned by golden tests (storagetest.GoldenSessionRecord,
// GoldenSessionRecordV2); changing a field name, tag or layout is a format
// change that needs a new version.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latchauth/latch/storage"
)

// Version prefixes every JSON record (users, keys, and sessions of
// EncodeSessionV1).
const Version byte = 1

// SessionVersion prefixes the binary session records of EncodeSession.
const SessionVersion byte = 2

// ErrCorrupt reports a record this version cannot decode.
var ErrCorrupt = errors.New("corrupt or unknown record")

// Encode returns v as a versioned record.
func Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return append([]byte{Version}, b...), nil
}

// Decode parses a versioned record into v.
func Decode(data []byte, v any) error {
	if len(data) < 2 || data[0] != Version {
		return ErrCorrupt
	}
	if err := json.Unmarshal(data[1:], v); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

type session struct {
	ID                string    `json:"id"`
	UserID            string    `json:"user_id"`
	Audience          string    `json:"aud"`
	CurrentHash       []byte    `json:"current"`
	PreviousHash      []byte    `json:"previous,omitempty"`
	PreviousRotatedAt time.Time `json:"previous_rotated_at"`
	Generation        uint64    `json:"generation"`
	CreatedAt         time.Time `json:"created_at"`
	LastRotatedAt     time.Time `json:"last_rotated_at"`
	IdleExpiresAt     time.Time `json:"idle_expires_at"`
	AbsoluteExpiresAt time.Time `json:"absolute_expires_at"`
	RevokedAt         time.Time `json:"revoked_at"`
	RevokeReason      string    `json:"revoke_reason,omitempty"`
}

// EncodeSessionV1 returns the version-1 (JSON) stored form of s, which
// every release reads. storage/etcd still writes it, so that processes of
// an older release sharing the cluster keep reading the sessions a newer
// one writes.
func EncodeSessionV1(s storage.Session) ([]byte, error) {
	r := session{ID: s.ID, UserID: s.UserID, Audience: s.Audience, CurrentHash: s.CurrentHash[:],
		PreviousRotatedAt: s.PreviousRotatedAt, Generation: s.Generation, CreatedAt: s.CreatedAt,
		LastRotatedAt: s.LastRotatedAt, IdleExpiresAt: s.IdleExpiresAt, AbsoluteExpiresAt: s.AbsoluteExpiresAt,
		RevokedAt: s.RevokedAt, RevokeReason: s.RevokeReason}
	if !s.PreviousHash.IsZero() {
		r.PreviousHash = s.PreviousHash[:]
	}
	return Encode(r)
}

// DecodeSession parses a stored session of either version.
func DecodeSession(data []byte) (storage.Session, error) {
	if len(data) > 0 && data[0] == SessionVersion {
		return decodeSessionV2(data)
	}
	var r session
	if err := Decode(data, &r); err != nil {
		return storage.Session{}, err
	}
	s := storage.Session{ID: r.ID, UserID: r.UserID, Audience: r.Audience, PreviousRotatedAt: r.PreviousRotatedAt,
		Generation: r.Generation, CreatedAt: r.CreatedAt, LastRotatedAt: r.LastRotatedAt,
		IdleExpiresAt: r.IdleExpiresAt, AbsoluteExpiresAt: r.AbsoluteExpiresAt, RevokedAt: r.RevokedAt,
		RevokeReason: r.RevokeReason}
	if len(r.CurrentHash) != len(s.CurrentHash) || (r.PreviousHash != nil && len(r.PreviousHash) != len(s.PreviousHash)) {
		return storage.Session{}, fmt.Errorf("%w: bad refresh digest length", ErrCorrupt)
	}
	copy(s.CurrentHash[:], r.CurrentHash)
	copy(s.PreviousHash[:], r.PreviousHash)
	return s, nil
}

type user struct {
	ID           string    `json:"id"`
	Email        string    `json:"email"`
	PasswordHash string    `json:"password_hash"`
	Roles        []string  `json:"roles,omitempty"`
	Disabled     bool      `json:"disabled,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// EncodeUser returns the stored form of u.
func EncodeUser(u storage.User) ([]byte, error) {
	return Encode(user{ID: u.ID, Email: u.Email, PasswordHash: u.PasswordHash, Roles: u.Roles,
		Disabled: u.Disabled, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt})
}

// DecodeUser parses a stored user. The result shares no memory with data.
func DecodeUser(data []byte) (storage.User, error) {
	var r user
	if err := Decode(data, &r); err != nil {
		return storage.User{}, err
	}
	return storage.User{ID: r.ID, Email: r.Email, PasswordHash: r.PasswordHash, Roles: r.Roles,
		Disabled: r.Disabled, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, nil
}

type key struct {
	ID          string           `json:"id"`
	PrivateKey  []byte           `json:"private_key"`
	PublicKey   []byte           `json:"public_key"`
	State       storage.KeyState `json:"state"`
	CreatedAt   time.Time        `json:"created_at"`
	ActivatedAt time.Time        `json:"activated_at"`
	RetiredAt   time.Time        `json:"retired_at"`
}

// EncodeKey returns the stored form of k.
func EncodeKey(k storage.SigningKey) ([]byte, error) {
	return Encode(key{ID: k.ID, PrivateKey: k.PrivateKey, PublicKey: k.PublicKey, State: k.State,
		CreatedAt: k.CreatedAt, ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt})
}

// DecodeKey parses a stored signing key. The result shares no memory with
// data.
func DecodeKey(data []byte) (storage.SigningKey, error) {
	var r key
	if err := Decode(data, &r); err != nil {
		return storage.SigningKey{}, err
	}
	return storage.SigningKey{ID: r.ID, PrivateKey: r.PrivateKey, PublicKey: r.PublicKey,
		State: r.State, CreatedAt: r.CreatedAt, ActivatedAt: r.ActivatedAt, RetiredAt: r.RetiredAt}, nil
}

type refreshKey struct {
	ID          string           `json:"id"`
	Secret      []byte           `json:"secret"`
	State       storage.KeyState `json:"state"`
	CreatedAt   time.Time        `json:"created_at"`
	ActivatedAt time.Time        `json:"activated_at"`
	RetiredAt   time.Time        `json:"retired_at"`
}

// EncodeRefreshKey returns the stored form of k.
func EncodeRefreshKey(k storage.RefreshKey) ([]byte, error) {
	return Encode(refreshKey{ID: k.ID, Secret: k.Secret, State: k.State,
		CreatedAt: k.CreatedAt, ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt})
}

// DecodeRefreshKey parses a stored refresh key. The result shares no
// memory with data.
func DecodeRefreshKey(data []byte) (storage.RefreshKey, error) {
	var r refreshKey
	if err := Decode(data, &r); err != nil {
		return storage.RefreshKey{}, err
	}
	return storage.RefreshKey{ID: r.ID, Secret: r.Secret, State: r.State,
		CreatedAt: r.CreatedAt, ActivatedAt: r.ActivatedAt, RetiredAt: r.RetiredAt}, nil
}
