package storage

import "strings"

// MaxIDLen is the longest id (user, session, jti, signing key) or email a
// Store accepts.
const MaxIDLen = 512

// ValidID reports whether id may be stored: 1 to MaxIDLen bytes and no NUL
// (backends use NUL to separate the parts of composite keys). Every
// backend checks ids and emails with it, so they refuse the same input with
// ErrInvalidArgument.
func ValidID(id string) bool {
	return id != "" && len(id) <= MaxIDLen && strings.IndexByte(id, 0) < 0
}
