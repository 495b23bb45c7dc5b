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
// commit.
//
// One exception, for bursts (the idea of PostgreSQL's commit_delay and
// commit_siblings): when the last group was large, ended moments ago, and
// fewer than half as many writes are waiting now, the writers of that group
// are on their way back, and a commit of the few early ones would cost a
// whole fsync for little. The committer then waits for company: until as
// many writes as the last group are pending, or half the last commit's
// duration has passed (at most 10 ms), whichever comes first. A lone
// writer, or a steady trickle, never waits: its groups are small.
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
	"time"

	bbolt "go.etcd.io/bbolt"
)

// DefaultMaxSize is the default bound on functions per transaction
// (bbolt's own DefaultMaxBatchSize).
const DefaultMaxSize = 1000

// Committer groups writes to one bbolt database. It is safe for concurrent
// use; its zero value is not usable (use New).
type Committer struct {
	db      *bbolt.DB
	maxSize int
	delay   time.Duration

	mu      sync.Mutex
	pending []*call
	leading bool // a goroutine is committing pending calls

	// The last commit, for gathering (all under mu): its group size, when
	// it ended and how long it took.
	lastSize int
	lastEnd  time.Time
	lastDur  time.Duration
	// want > 0 while the committer gathers: Do signals enough once that
	// many calls are pending.
	want   int
	enough chan struct{}
	stats  Stats
	// gatherFor, when set (by tests), replaces the time bound of a wait.
	gatherFor time.Duration
	// commitFailed runs after a transaction whose functions succeeded
	// failed to commit (WithCommitFailed).
	commitFailed func()
}

// Stats counts what a Committer has done since New. Writes / Commits is
// the mean group size; Waits and WaitsFilled tell how often the committer
// waited for a burst's writers and how often they came before the bound.
type Stats struct {
	Commits     uint64 // groups taken to commit in one transaction
	Writes      uint64 // functions in those groups (one that fails is counted, then runs alone)
	Waits       uint64 // waits for company before a commit
	WaitsFilled uint64 // waits that ended because the company came
}

// Stats returns the counts so far.
func (c *Committer) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// maxGather bounds a wait for company, whatever the last commit took (a
// commit slowed by a stalled disk must not hold the next writes long).
const maxGather = 10 * time.Millisecond

type call struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// Option configures New.
type Option func(*Committer)

// WithMaxSize bounds how many functions share one transaction (default
// DefaultMaxSize; values below 1 mean 1).
func WithMaxSize(n int) Option { return func(c *Committer) { c.maxSize = max(n, 1) } }

// WithDelay makes the committer wait d before each commit for more writes
// to join. The default, 0, is right for disks whose fsync is the cost
// (writes arriving during a commit already share the next one); a small
// delay can help where fsync is nearly free and per-commit work dominates.
// Every write waits up to d longer.
func WithDelay(d time.Duration) Option { return func(c *Committer) { c.delay = max(d, 0) } }

// WithCommitFailed has f called after every transaction whose functions
// all succeeded but which did not commit (bbolt could not begin or commit
// it), before its callers get the error. A commit that fails may have made
// its pages visible without running its OnCommit handlers (a failed fsync),
// so a caller whose handlers keep a cache in step uses f to drop it.
// Default: nothing.
func WithCommitFailed(f func()) Option { return func(c *Committer) { c.commitFailed = f } }

// New returns a Committer for db.
func New(db *bbolt.DB, opts ...Option) *Committer {
	c := &Committer{db: db, maxSize: DefaultMaxSize, enough: make(chan struct{}, 1)}
	for _, o := range opts {
		o(c)
	}
	return c
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
	if c.want > 0 && len(c.pending) >= c.want {
		c.want = 0
		c.enough <- struct{}{} // buffered; want > 0 means nobody sent yet
	}
	if !c.leading {
		c.leading = true
		go c.drain()
	}
	c.mu.Unlock()
	err := <-cl.done
	if errors.Is(err, errRunAlone) {
		var fnErr error
		err = c.db.Update(func(tx *bbolt.Tx) error {
			fnErr = safely(fn, tx)
			return fnErr
		})
		if err != nil && fnErr == nil {
			c.failed()
		}
	}
	return err
}

// drain commits groups until nothing is pending.
func (c *Committer) drain() {
	for {
		if c.delay > 0 {
			time.Sleep(c.delay)
		}
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.leading = false
			c.mu.Unlock()
			return
		}
		c.gather()
		n := min(len(c.pending), c.maxSize)
		group := c.pending[:n:n]
		c.pending = append([]*call(nil), c.pending[n:]...)
		c.mu.Unlock()
		start := time.Now()
		c.commit(group)
		end := time.Now()
		c.mu.Lock()
		c.lastSize, c.lastEnd, c.lastDur = n, end, end.Sub(start)
		c.stats.Commits++
		c.stats.Writes += uint64(n)
		c.mu.Unlock()
	}
}

// gather waits for company before a commit, as the package comment says:
// when the last group ended less than its own duration ago and fewer than
// half as many writes are pending now (so it had at least 4), it waits
// until as many as the last group are pending (Do signals), or half the
// last commit's duration (at most maxGather). It is called and returns with
// c.mu held, and releases it while waiting.
func (c *Committer) gather() {
	if len(c.pending) >= c.lastSize/2 || time.Since(c.lastEnd) >= c.lastDur {
		return
	}
	c.want = min(c.lastSize, c.maxSize)
	c.stats.Waits++
	bound := min(c.lastDur/2, maxGather)
	if c.gatherFor > 0 {
		bound = c.gatherFor
	}
	c.mu.Unlock()
	timer := time.NewTimer(bound)
	filled := false
	select {
	case <-c.enough:
		filled = true
	case <-timer.C:
	}
	timer.Stop()
	c.mu.Lock()
	if c.want == 0 && !filled {
		<-c.enough // Do signalled just as the time ran out: take it back
		filled = true
	}
	c.want = 0
	if filled {
		c.stats.WaitsFilled++
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
		if err != nil {
			c.failed()
		}
		for _, cl := range group {
			cl.done <- err
		}
		return
	}
}

// failed runs the WithCommitFailed function, if any.
func (c *Committer) failed() {
	if c.commitFailed != nil {
		c.commitFailed()
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
