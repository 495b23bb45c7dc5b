package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt/groupcommit"
	"github.com/latchauth/latch/storage/internal/record"
)

// schemaVersion is the layout this package reads and writes. Open refuses a
// file of any other version.
const schemaVersion = "5"

var (
	bucketMeta      = []byte("meta")
	bucketUsers     = []byte("users")
	bucketEmails    = []byte("emails")
	bucketSessions  = []byte("sessions")
	bucketDenied    = []byte("denied")
	bucketExpiry    = []byte("expiry")
	bucketKeys      = []byte("keys")
	bucketSessState = []byte("sessstate")
	// bucketUserSessions is the user → sessions index.
	bucketUserSessions = []byte("usersessions")
	// bucketRefreshKeys holds the refresh-token MAC secrets.
	bucketRefreshKeys = []byte("refreshkeys")

	allBuckets = [][]byte{bucketMeta, bucketUsers, bucketEmails, bucketSessions,
		bucketDenied, bucketExpiry, bucketKeys, bucketRefreshKeys, bucketSessState, bucketUserSessions}

	keySchema = []byte("schema")
)

const (
	kindSession byte = 's'
	kindJTI     byte = 'j'
)

// ErrLocked reports that another process holds the database file open.
var ErrLocked = errors.New("bolt: database is in use by another process")

// Store is a storage.Store on one bbolt file. It is safe for concurrent use.
type Store struct {
	db     *bbolt.DB
	writes *groupcommit.Committer // the small concurrent writes (sessions, revocations)
	// retention is how long a revoked session is kept after its
	// revocation (WithRevokedSessionRetention); 0 keeps it to its expiry.
	retention time.Duration
}

var _ storage.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	retention   time.Duration
}

// WithLockTimeout bounds how long Open waits for another process to release
// the file lock before failing with ErrLocked. Default 2 s.
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithRevokedSessionRetention makes the store delete a revoked session,
// with its indexes, at the first sweep (DeleteExpired) after RevokedAt + d
// (or after its expiry, if that comes first), whichever call revoked it;
// see "Revoked sessions" in package storage. d must be at least the
// longest access-token lifetime plus leeway ever used with the file
// (server.Config.RevokedSessionRetention). Default 0: a revoked session is
// kept until its own expiry. The setting applies to sessions as they are
// revoked and swept: a longer d given later delays the deletion of
// sessions revoked before (the sweeper files them again), a shorter one
// does not hasten it.
func WithRevokedSessionRetention(d time.Duration) Option {
	return func(o *options) { o.retention = d }
}

// Open opens (creating if needed, mode 0600) the database at path, creates
// the buckets and checks the schema version.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: 2 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" {
		return nil, errors.New("bolt: empty database path")
	}
	if o.retention < 0 {
		return nil, fmt.Errorf("bolt: revoked-session retention %v is negative: %w", o.retention, storage.ErrInvalidArgument)
	}
	// The freelist: bbolt's default rewrites it whole in every commit,
	// which on a file with many free pages costs every fsynced write; with
	// NoFreelistSync from the start bbolt instead rebuilds it at every Open
	// by walking (and mapping) the whole file. So Open loads the synced
	// freelist, commits skip it while the store is open, and Close writes
	// it back; only after a crash does the next Open walk the file. The
	// data are never at risk: the freelist is derived from them. The array
	// freelist hands out the lowest free page ids, which keeps a commit's
	// pages near each other on a large file (TestCommitsReuseLowestFreePages).
	db, err := openRecovering(path, &bbolt.Options{Timeout: o.lockTimeout, FreelistType: bbolt.FreelistArrayType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %v for its lock)", ErrLocked, path, o.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if err := checkSize(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if err := db.Update(initSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	db.NoFreelistSync = true // read by commits under the writer lock; none runs yet
	s := &Store{db: db, retention: o.retention}
	s.writes = groupcommit.New(db)
	return s, nil
}

// WriteStats counts the store's writes since Open, for metrics: the group
// committer's counts (storage/bolt/groupcommit) and bbolt's for every
// write transaction (the committer's, and the sweeper's, key and
// administration writes besides).
type WriteStats struct {
	groupcommit.Stats
	// PagesWritten is how many pages bbolt wrote; WriteTime how long it
	// spent writing them and fsyncing (the data and then the meta page).
	PagesWritten int64
	WriteTime    time.Duration
}

// WriteStats returns the counts so far.
func (s *Store) WriteStats() WriteStats {
	tx := s.db.Stats().TxStats
	return WriteStats{Stats: s.writes.Stats(), PagesWritten: tx.GetWrite(), WriteTime: tx.GetWriteTime()}
}

// openRecovering is bbolt.Open, with bbolt's panics on a damaged file (it
// asserts while loading the freelist) turned into an error.
func openRecovering(path string, opts *bbolt.Options) (db *bbolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("the file is damaged (%v); restore it from a backup", p)
		}
	}()
	return bbolt.Open(path, 0o600, opts)
}

// checkSize refuses a file shorter than the pages its meta page claims: a
// truncated copy, which bbolt would open and then crash on (an assertion in
// a page read, beyond recovery).
func checkSize(db *bbolt.DB) error {
	st, err := os.Stat(db.Path())
	if err != nil {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		if st.Size() < tx.Size() {
			return fmt.Errorf("the file is %d bytes but its pages reach %d: truncated or damaged; restore it from a backup", st.Size(), tx.Size())
		}
		return nil
	})
}

func initSchema(tx *bbolt.Tx) error {
	if meta := tx.Bucket(bucketMeta); meta == nil {
		// A new file has no buckets at all; a bbolt file of another
		// program must not be adopted (and silently mixed with ours).
		if name, _ := tx.Cursor().First(); name != nil {
			return errors.New("the file is a bbolt database of another program (no Latch schema); refusing to use it")
		}
	} else if v := meta.Get(keySchema); v != nil && string(v) != schemaVersion {
		return fmt.Errorf("database schema version %q is not %q: the file was written by another version of Latch, whose layout this one does not read; start this version on a new file", v, schemaVersion)
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keySchema) == nil {
		return meta.Put(keySchema, []byte(schemaVersion))
	}
	return nil
}

// Close closes the database file.
func (s *Store) Close() error {
	// Persist the freelist (see Open) in a last, empty commit; the field
	// is only read by commits, which hold the writer lock taken here.
	ferr := s.db.Update(func(tx *bbolt.Tx) error {
		tx.DB().NoFreelistSync = false
		return nil
	})
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	if ferr != nil && !errors.Is(ferr, bolterrors.ErrDatabaseNotOpen) {
		// The data are committed; the next Open rebuilds the freelist.
		return fmt.Errorf("bolt: close: write the freelist: %w", ferr)
	}
	return nil
}

// Check runs bbolt's consistency check over the whole file.
func (s *Store) Check() error {
	return s.db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// --- index keys ---

func expiryKey(t time.Time, kind byte, id string) []byte {
	k := make([]byte, 0, 9+len(id))
	k = append(k, record.EncodeTime(t)...)
	k = append(k, kind)
	return append(k, id...)
}

// view runs fn in a read transaction, update in a write transaction of
// its own, and group in one shared by the group committer (fn may then run
// more than once). Each fails at once on a done ctx and prefixes errors
// with "bolt: " and op.
func (s *Store) view(ctx context.Context, op string, fn func(*bbolt.Tx) error) error {
	return run(ctx, op, s.db.View, fn)
}

func (s *Store) update(ctx context.Context, op string, fn func(*bbolt.Tx) error) error {
	return run(ctx, op, s.db.Update, fn)
}

func (s *Store) group(ctx context.Context, op string, fn func(*bbolt.Tx) error) error {
	return run(ctx, op, s.writes.Do, fn)
}

func run(ctx context.Context, op string, txn func(func(*bbolt.Tx) error) error, fn func(*bbolt.Tx) error) error {
	err := ctx.Err()
	if err == nil {
		err = txn(fn)
	}
	if err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	return nil
}

// invalid is the error of a refused argument: what op requires.
func invalid(op, required string) error {
	return fmt.Errorf("bolt: %s: %s: %w", op, required, storage.ErrInvalidArgument)
}
