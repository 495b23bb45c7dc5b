package bolt

import bbolt "go.etcd.io/bbolt"

// DBStats exposes the bbolt statistics of s to this package's external
// tests and benchmarks (pages written per operation).
func DBStats(s *Store) bbolt.Stats { return s.db.Stats() }
