package bolt

import bbolt "go.etcd.io/bbolt"

// DBStats exposes the bbolt statistics of s to this package's external
// tests and benchmarks (pages written per operation).
func DBStats(s *Store) bbolt.Stats { return s.db.Stats() }

// LastTxID returns the id of the last committed write transaction of s.
func LastTxID(s *Store) int {
	var id int
	_ = s.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil })
	return id
}

// KeyCount returns the number of keys in every bucket of s together: the
// rows the store holds.
func KeyCount(s *Store) (int, error) {
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
			n += b.Stats().KeyN
			return nil
		})
	})
	return n, err
}
