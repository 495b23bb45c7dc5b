// Package password hashes and checks passwords: argon2id in PHC string form
// ($argon2id$v=19$m=19456,t=2,p=1$salt$hash, OWASP's minimum) for everything
// it writes, and bcrypt hashes accepted on import so that they can be rehashed
// on the next successful login.
//
// Hashing is deliberately expensive, so a Hasher bounds how many hashes run at
// once: a login flood queues here instead of starving the rest of the process.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// MaxLength is the longest password accepted, in bytes. Longer inputs are
// refused before any hashing so that they cannot be used to burn CPU.
const MaxLength = 1024

// MinLength is the shortest password accepted when setting one.
const MinLength = 8

// bcryptMaxLength is where bcrypt silently truncates its input.
const bcryptMaxLength = 72

// Errors returned by this package.
var (
	// ErrTooLong reports a password over MaxLength bytes.
	ErrTooLong = errors.New("password: longer than 1024 bytes")
	// ErrTooShort reports a password under MinLength bytes.
	ErrTooShort = errors.New("password: shorter than 8 bytes")
	// ErrUnknownFormat reports a stored hash this package cannot read.
	ErrUnknownFormat = errors.New("password: unknown hash format")
)

// Params are argon2id parameters.
type Params struct {
	// Memory in KiB.
	Memory uint32
	// Time is the number of passes.
	Time uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// SaltLength and KeyLength in bytes.
	SaltLength uint32
	KeyLength  uint32
}

// DefaultParams returns OWASP's minimum recommended argon2id parameters:
// m=19456 KiB, t=2, p=1, a 16-byte salt and a 32-byte key.
func DefaultParams() Params {
	return Params{Memory: 19456, Time: 2, Threads: 1, SaltLength: 16, KeyLength: 32}
}

// Validate reports parameters too weak or too large to use.
func (p Params) Validate() error {
	var errs []error
	if p.Memory < 8*uint32(max(p.Threads, 1)) {
		errs = append(errs, fmt.Errorf("argon2 memory %d KiB below 8*threads", p.Memory))
	}
	if p.Memory > 4<<20 {
		errs = append(errs, fmt.Errorf("argon2 memory %d KiB above 4 GiB", p.Memory))
	}
	if p.Time < 1 {
		errs = append(errs, errors.New("argon2 time must be at least 1"))
	}
	if p.Threads < 1 {
		errs = append(errs, errors.New("argon2 threads must be at least 1"))
	}
	if p.SaltLength < 16 || p.SaltLength > 64 {
		errs = append(errs, fmt.Errorf("argon2 salt length %d outside 16..64", p.SaltLength))
	}
	if p.KeyLength < 16 || p.KeyLength > 64 {
		errs = append(errs, fmt.Errorf("argon2 key length %d outside 16..64", p.KeyLength))
	}
	return errors.Join(errs...)
}

// Hasher hashes and verifies passwords with a bound on concurrent work. It is
// safe for concurrent use.
type Hasher struct {
	params Params
	sem    chan struct{}
	wait   time.Duration
	dummy  string
}

// Option configures a Hasher.
type Option func(*Hasher)

// ErrBusy reports that no hashing slot freed up within the queue timeout:
// the server is saturated with password work (a login flood) and sheds it
// instead of letting every request wait.
var ErrBusy = errors.New("password: all hashing slots busy")

// WithQueueTimeout bounds how long a hash or verification waits for a slot
// before failing with ErrBusy. Default 2 s; 0 waits as long as the context.
func WithQueueTimeout(d time.Duration) Option { return func(h *Hasher) { h.wait = d } }

// NewHasher returns a Hasher writing hashes with params and running at most
// concurrency hashes at once (at least 1).
func NewHasher(params Params, concurrency int, opts ...Option) (*Hasher, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	h := &Hasher{params: params, sem: make(chan struct{}, max(concurrency, 1)), wait: 2 * time.Second}
	for _, o := range opts {
		o(h)
	}
	// The dummy hash answers for unknown emails, so that they cost the same
	// time as a wrong password: the two must be indistinguishable.
	h.dummy = h.hash([]byte("latch-dummy-password-for-unknown-users"))
	return h, nil
}

// Params returns the parameters new hashes are written with.
func (h *Hasher) Params() Params { return h.params }

// CheckLength reports a password that may not be set: under MinLength or over
// MaxLength bytes.
func CheckLength(pw string) error {
	switch {
	case len(pw) > MaxLength:
		return ErrTooLong
	case len(pw) < MinLength:
		return ErrTooShort
	}
	return nil
}

// Hash returns the PHC string of pw. It waits for a hashing slot and gives up
// when ctx ends.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if len(pw) > MaxLength {
		return "", ErrTooLong
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hash([]byte(pw)), nil
}

// hash returns the PHC string of pw with a fresh salt from crypto/rand
// (whose Read never fails).
func (h *Hasher) hash(pw []byte) string {
	p := h.params
	salt := make([]byte, p.SaltLength)
	_, _ = rand.Read(salt)
	key := argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, p.KeyLength)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Verify reports whether pw matches encoded, and whether encoded should be
// replaced by a fresh hash (it is bcrypt, or argon2id with other
// parameters). A wrong password is (false, false, nil); err is only for an
// unreadable hash or an ended ctx. Passwords over MaxLength never match, and
// passwords over 72 bytes never match a bcrypt hash (bcrypt would silently
// compare only their first 72 bytes).
func (h *Hasher) Verify(ctx context.Context, pw, encoded string) (ok, rehash bool, err error) {
	if len(pw) > MaxLength {
		return false, false, nil // never matches; not worth a slot
	}
	slot, err := h.Reserve(ctx)
	if err != nil {
		return false, false, err
	}
	defer slot.Release()
	return slot.Verify(pw, encoded)
}

// Slot is a hashing slot reserved with Reserve: verifications through it
// start at once. A caller that must do other work before it hashes (such
// as charging a rate limit kept in a remote store) reserves first, so that
// the work is bounded by how fast passwords can be checked.
type Slot struct {
	h        *Hasher
	released bool
}

// Reserve waits for a hashing slot as Verify does (ErrBusy after the queue
// timeout). The caller must Release it.
func (h *Hasher) Reserve(ctx context.Context) (*Slot, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	return &Slot{h: h}, nil
}

// Release frees the slot; releasing it again does nothing. It is not safe
// for concurrent use.
func (s *Slot) Release() {
	if !s.released {
		s.released = true
		s.h.release()
	}
}

// VerifyDummy is Hasher.VerifyDummy in the reserved slot.
func (s *Slot) VerifyDummy(pw string) error {
	_, _, err := s.Verify(pw, s.h.dummy)
	return err
}

// Verify is Hasher.Verify in the reserved slot, which must not have been
// released.
func (s *Slot) Verify(pw, encoded string) (ok, rehash bool, err error) {
	if s.released {
		return false, false, errors.New("password: verify in a released slot")
	}
	h := s.h
	if len(pw) > MaxLength {
		return false, false, nil
	}
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		p, salt, key, err := decodeArgon2id(encoded)
		if err != nil {
			return false, false, err
		}
		got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
		if subtle.ConstantTimeCompare(got, key) != 1 {
			return false, false, nil
		}
		return true, p != h.params, nil
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		if len(pw) > bcryptMaxLength {
			return false, false, nil
		}
		err := bcrypt.CompareHashAndPassword([]byte(encoded), []byte(pw))
		switch {
		case err == nil:
			return true, true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, false, nil
		default:
			return false, false, fmt.Errorf("%w: bcrypt: %v", ErrUnknownFormat, err)
		}
	default:
		return false, false, ErrUnknownFormat
	}
}

// VerifyDummy spends the same work as Verify on a wrong password, for callers
// that have no user to check against. It always reports a mismatch.
func (h *Hasher) VerifyDummy(ctx context.Context, pw string) error {
	_, _, err := h.Verify(ctx, pw, h.dummy)
	return err
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	default:
	}
	var timeout <-chan time.Time
	if h.wait > 0 {
		t := time.NewTimer(h.wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-timeout:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("password: waiting for a hashing slot: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

// decodeArgon2id parses $argon2id$v=19$m=M,t=T,p=P$salt$key.
func decodeArgon2id(s string) (Params, []byte, []byte, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Params{}, nil, nil, ErrUnknownFormat
	}
	var p Params
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Params{}, nil, nil, ErrUnknownFormat
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return Params{}, nil, nil, ErrUnknownFormat
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return Params{}, nil, nil, ErrUnknownFormat
			}
			p.Threads = uint8(n)
		default:
			return Params{}, nil, nil, ErrUnknownFormat
		}
	}
	salt, errSalt := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	key, errKey := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if errSalt != nil || errKey != nil {
		return Params{}, nil, nil, ErrUnknownFormat
	}
	p.SaltLength, p.KeyLength = uint32(len(salt)), uint32(len(key))
	if err := p.Validate(); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: %v", ErrUnknownFormat, err)
	}
	return p, salt, key, nil
}
