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
