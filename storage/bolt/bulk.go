package bolt

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
)

// ImportSessions stores sessions as CreateSession would, but all of them in
// one write transaction (one commit, one fsync) and without checking their
// owners (a restore may bring sessions before their users): for bulk loads
// such as `latch bench`'s scale rows, restores and migrations, not for the
// serving path, where it would hold the write lock for the whole slice.
// Either every session is stored or none is; a taken id fails the whole
// import with storage.ErrAlreadyExists.
func (s *Store) ImportSessions(ctx context.Context, sessions []storage.Session) error {
	for _, sess := range sessions {
		if err := storage.CheckSession(sess); err != nil {
			return fmt.Errorf("bolt: import sessions: %w", err)
		}
	}
	return s.update(ctx, "import sessions", func(tx *bbolt.Tx) error {
		for _, sess := range sessions {
			if err := s.insertSession(tx, sess); err != nil {
				return fmt.Errorf("session %s: %w", sess.ID, err)
			}
		}
		return nil
	})
}
