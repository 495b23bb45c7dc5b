package bolt

import (
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage/internal/record"
)

// migration upgrades a file from one schema version to the next, inside the
// Open transaction that created any missing bucket.
type migration struct {
	from, to string
	apply    func(*bbolt.Tx) error
}

// migrations are applied in order, each in the same transaction: a file is
// either fully upgraded or left untouched. Bumping schemaVersion makes an
// older Latch refuse the upgraded file instead of writing sessions that the
// newer indexes would miss.
var migrations = []migration{
	{from: "1", to: "2", apply: buildUserSessionIndex},
	{from: "2", to: "3", apply: markLowerBounds},
}

// migrate brings a file at schema version v up to schemaVersion, or refuses
// a version it does not know.
func migrate(tx *bbolt.Tx, v string) error {
	start := v
	for _, m := range migrations {
		if v != m.from {
			continue
		}
		if err := m.apply(tx); err != nil {
			return fmt.Errorf("migrate schema %s to %s: %w", m.from, m.to, err)
		}
		v = m.to
	}
	if v != schemaVersion {
		return fmt.Errorf("database schema version %q is not %q: it was written by another version of Latch", start, schemaVersion)
	}
	if v == start {
		return nil
	}
	return tx.Bucket(bucketMeta).Put(keySchema, []byte(v))
}

// buildUserSessionIndex (schema 1 → 2) fills the user → sessions index from
// the sessions bucket, and the 24-byte session summaries for any session
// written before they existed.
func buildUserSessionIndex(tx *bbolt.Tx) error {
	index, state := tx.Bucket(bucketUserSessions), tx.Bucket(bucketSessState)
	type pending struct{ key, id, state []byte }
	var puts []pending
	err := tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
		sess, err := record.DecodeSession(v)
		if err != nil {
			return fmt.Errorf("session %q: %w", k, err)
		}
		p := pending{key: userSessionKey(sess.UserID, sess.ID), id: []byte(sess.ID)}
		if state.Get(k) == nil {
			p.state = record.EncodeState(sess)
		}
		puts = append(puts, p)
		return nil
	})
	if err != nil {
		return err
	}
	// Write after the walk, so that nothing changes under the cursor.
	for _, p := range puts {
		if err := index.Put(p.key, nil); err != nil {
			return err
		}
		if p.state != nil {
			if err := state.Put(p.id, p.state); err != nil {
				return err
			}
		}
	}
	return nil
}

// markLowerBounds (schema 2 → 3) changes no rows: schema 3 reads the
// session summaries' idle expiry and the expiry index's session entries as
// lower bounds (rotations no longer rewrite them; see doc.go), which the
// exact values schema 2 kept already are, and reads JSON (version 1)
// session records as before; schema 2's sessdigests entries are read (and
// deleted) when their sessions are, next to schema 3's linked refresh
// entries (see refreshEntry). The version bump makes an older Latch, which
// would take a stale idle expiry for the real one, refuse the file.
func markLowerBounds(*bbolt.Tx) error { return nil }
