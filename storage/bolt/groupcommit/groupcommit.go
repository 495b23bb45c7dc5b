// Package groupcommit runs concurrent bbolt writes in shared transactions,
// one commit (and one fsync) for all of them: the group commit of
// databases.
//
// It replaces bbolt's DB.Batch, whose timer makes every write wait
// MaxBatchDelay for company even when the disk is idle, and leaves the disk
// idle while the timer runs. Here a write that finds no commit in flight
// commits at once; writes that arrive while a commit is in flight queue up
// and go together in the next one, which starts as soon as the previous one
// is durable. Under load a group grows by itself to what arrives during one
// commit, up to 1000 functions per transaction.
//
// As with DB.Batch, a function may run more than once (when another
// function of its group fails, the group is rolled back and run again
// without it), so functions must be idempotent and must report their outcome
// through variables they reset on every run. A function that fails runs
// again in a transaction of its own, and its caller gets that error.
package groupcommit

import (
	"errors"
	"fmt"
	"sync"

	bbolt "go.etcd.io/bbolt"
)

// defaultMaxSize bounds the functions per transaction (bbolt's own
// DefaultMaxBatchSize).
const defaultMaxSize = 1000

// Committer groups writes to one bbolt database. It is safe for concurrent
// use; its zero value is not usable (use New).
type Committer struct {
	db      *bbolt.DB
	maxSize int // functions per transaction: defaultMaxSize (tests lower it)

	mu      sync.Mutex
	pending []*call
	leading bool // a goroutine is committing pending calls
	stats   Stats
}

// Stats counts what a Committer has done since New. Writes / Commits is
// the mean group size.
type Stats struct {
	Commits uint64 // groups taken to commit in one transaction
	Writes  uint64 // functions in those groups (one that fails is counted, then runs alone)
}

// Stats returns the counts so far.
func (c *Committer) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

type call struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// New returns a Committer for db.
func New(db *bbolt.DB) *Committer {
	return &Committer{db: db, maxSize: defaultMaxSize}
}

// errRunAlone tells a caller that its function failed inside a group and
// must run in a transaction of its own.
var errRunAlone = errors.New("groupcommit: run alone")

// Do runs fn in a shared write transaction and returns once that
// transaction is committed (durable, fsynced by bbolt) or has failed. fn
// may run more than once and must be idempotent.
func (c *Committer) Do(fn func(*bbolt.Tx) error) error {
	cl := &call{fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	c.pending = append(c.pending, cl)
	if !c.leading {
		c.leading = true
		go c.drain()
	}
	c.mu.Unlock()
	err := <-cl.done
	if errors.Is(err, errRunAlone) {
		err = c.db.Update(func(tx *bbolt.Tx) error { return safely(fn, tx) })
	}
	return err
}

// drain commits groups until nothing is pending.
func (c *Committer) drain() {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.leading = false
			c.mu.Unlock()
			return
		}
		n := min(len(c.pending), c.maxSize)
		group := c.pending[:n:n]
		c.pending = append([]*call(nil), c.pending[n:]...)
		c.mu.Unlock()
		c.commit(group)
		c.mu.Lock()
		c.stats.Commits++
		c.stats.Writes += uint64(n)
		c.mu.Unlock()
	}
}

// commit runs group in one transaction. A function that fails is taken out
// (told to run alone) and the others run again in a fresh transaction.
func (c *Committer) commit(group []*call) {
	for len(group) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bbolt.Tx) error {
			for i, cl := range group {
				if err := safely(cl.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			group[failed].done <- errRunAlone
			group = append(group[:failed:failed], group[failed+1:]...)
			continue
		}
		for _, cl := range group {
			cl.done <- err
		}
		return
	}
}

// safely calls fn and turns a panic into an error, so that one bad function
// cannot take its group, or the committing goroutine, down.
func safely(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("groupcommit: write function panicked: %v", p)
		}
	}()
	return fn(tx)
}
