package groupcommit

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

var bucket = []byte("b")

func openDB(t testing.TB) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		t.Fatal(err)
	}
	return db
}

// waitPending blocks until n calls are queued behind the commit in flight.
func waitPending(c *Committer, n int) {
	for {
		c.mu.Lock()
		got := len(c.pending)
		c.mu.Unlock()
		if got >= n {
			return
		}
		runtime.Gosched()
	}
}

// put returns a write of key that records the id of the transaction it
// ran in (the last run counts: a function may run more than once).
func put(key string, txID *int) func(*bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		*txID = tx.ID()
		return tx.Bucket(bucket).Put([]byte(key), []byte("v"))
	}
}

func has(t *testing.T, db *bbolt.DB, key string) bool {
	t.Helper()
	var ok bool
	if err := db.View(func(tx *bbolt.Tx) error { ok = tx.Bucket(bucket).Get([]byte(key)) != nil; return nil }); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestWritesQueuedDuringACommitShareTheNext: the first write commits at
// once, alone; the writes that arrive while it is in flight all share the
// second transaction, and every one is committed when Do returns.
func TestWritesQueuedDuringACommitShareTheNext(t *testing.T) {
	db := openDB(t)
	c := New(db)
	const n = 20
	release := make(chan struct{})
	firstTx := 0
	first := make(chan error, 1)
	go func() {
		first <- c.Do(func(tx *bbolt.Tx) error {
			firstTx = tx.ID()
			<-release // hold the first commit until the others are queued
			return tx.Bucket(bucket).Put([]byte("first"), []byte("v"))
		})
	}()
	waitLeading(c)
	ids := make([]int, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = c.Do(put(fmt.Sprint("k", i), &ids[i])) })
	}
	waitPending(c, n)
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("write %d: %v", i, errs[i])
		}
		if !has(t, db, fmt.Sprint("k", i)) {
			t.Fatalf("write %d not committed when Do returned", i)
		}
		if ids[i] != ids[0] || ids[i] == firstTx {
			t.Fatalf("write %d ran in tx %d; want all queued writes in one tx other than the first's (%d)", i, ids[i], firstTx)
		}
	}
	if !has(t, db, "first") {
		t.Fatal("first write not committed")
	}
	if st := settled(c); st != (Stats{Commits: 2, Writes: 1 + n}) {
		t.Fatalf("stats %+v; want 2 commits of %d writes, no waits", st, 1+n)
	}
}

func waitLeading(c *Committer) {
	for {
		c.mu.Lock()
		busy := c.leading && len(c.pending) == 0
		c.mu.Unlock()
		if busy {
			return
		}
		runtime.Gosched()
	}
}

// TestMaxSizeBoundsAGroup: queued writes beyond the bound go to later
// transactions.
func TestMaxSizeBoundsAGroup(t *testing.T) {
	db := openDB(t)
	c := New(db)
	c.maxSize = 3
	release := make(chan struct{})
	go func() {
		_ = c.Do(func(*bbolt.Tx) error { <-release; return nil })
	}()
	waitLeading(c)
	const n = 7
	ids := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := c.Do(put(fmt.Sprint("k", i), &ids[i])); err != nil {
				t.Error(err)
			}
		})
	}
	waitPending(c, n)
	close(release)
	wg.Wait()
	per := map[int]int{}
	for _, id := range ids {
		per[id]++
	}
	if len(per) != 3 {
		t.Fatalf("%d writes in %d transactions %v; want 3 transactions (3+3+1)", n, len(per), per)
	}
	for id, k := range per {
		if k > 3 {
			t.Fatalf("tx %d held %d writes, want at most 3", id, k)
		}
	}
}

// TestFailingWriteIsIsolated: a write that fails (or panics) inside a group
// gets its own error, leaves nothing behind, and the other writes of its
// group still commit.
func TestFailingWriteIsIsolated(t *testing.T) {
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			db := openDB(t)
			c := New(db)
			release := make(chan struct{})
			go func() { _ = c.Do(func(*bbolt.Tx) error { <-release; return nil }) }()
			waitLeading(c)
			boom := errors.New("boom")
			var wg sync.WaitGroup
			var badErr error
			wg.Go(func() {
				badErr = c.Do(func(tx *bbolt.Tx) error {
					if err := tx.Bucket(bucket).Put([]byte("bad"), []byte("v")); err != nil {
						return err
					}
					if mode == "panic" {
						panic("write failed")
					}
					return boom
				})
			})
			const n = 5
			ids := make([]int, n)
			for i := range n {
				wg.Go(func() {
					if err := c.Do(put(fmt.Sprint("k", i), &ids[i])); err != nil {
						t.Errorf("good write %d: %v", i, err)
					}
				})
			}
			waitPending(c, n+1)
			close(release)
			wg.Wait()
			if badErr == nil || (mode == "error" && !errors.Is(badErr, boom)) {
				t.Fatalf("failing write returned %v", badErr)
			}
			if has(t, db, "bad") {
				t.Fatal("the failing write's Put was committed")
			}
			for i := range n {
				if !has(t, db, fmt.Sprint("k", i)) {
					t.Fatalf("good write %d lost", i)
				}
			}
		})
	}
}

// TestSequentialWritesCommitEach: with no concurrency every Do is its own
// committed transaction (nothing waits for company).
func TestSequentialWritesCommitEach(t *testing.T) {
	db := openDB(t)
	c := New(db)
	prev := 0
	for i := range 5 {
		var id int
		if err := c.Do(put(fmt.Sprint("k", i), &id)); err != nil {
			t.Fatal(err)
		}
		if id <= prev || !has(t, db, fmt.Sprint("k", i)) {
			t.Fatalf("write %d: tx %d after %d, committed %v", i, id, prev, has(t, db, fmt.Sprint("k", i)))
		}
		prev = id
	}
}

// BenchmarkGroupCommitVsBatch compares the committer with bbolt's Batch at
// its 2 ms MaxBatchDelay for 32 concurrent writers of one small key each.
func BenchmarkGroupCommitVsBatch(b *testing.B) {
	for _, mode := range []string{"groupcommit", "bbolt-batch-2ms"} {
		b.Run(mode, func(b *testing.B) {
			db := openDB(b)
			db.MaxBatchDelay = 2 * time.Millisecond
			c := New(db)
			var mu sync.Mutex
			n := 0
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					n++
					k := []byte(fmt.Sprint(n))
					mu.Unlock()
					fn := func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(k, k) }
					var err error
					if mode == "groupcommit" {
						err = c.Do(fn)
					} else {
						err = db.Batch(fn)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// settled returns c's stats once its committing goroutine has finished (a
// commit's counts are added after its writers are told it is done).
func settled(c *Committer) Stats {
	for {
		c.mu.Lock()
		idle := !c.leading
		c.mu.Unlock()
		if idle {
			return c.Stats()
		}
		runtime.Gosched()
	}
}

// TestConcurrentWavesAllCommit: writers in waves of different sizes, so
// that groups form and drain while others arrive; every write commits once,
// and the committer is left idle (run with -race).
func TestConcurrentWavesAllCommit(t *testing.T) {
	db := openDB(t)
	c := New(db)
	var wg sync.WaitGroup
	for wave := range 30 {
		for w := range 1 + wave%9 {
			wg.Go(func() {
				var id int
				if err := c.Do(put(fmt.Sprint("w", wave, "-", w), &id)); err != nil {
					t.Error(err)
				}
			})
		}
		if wave%3 == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	for wave := range 30 {
		for w := range 1 + wave%9 {
			if !has(t, db, fmt.Sprint("w", wave, "-", w)) {
				t.Fatalf("write %d of wave %d lost", w, wave)
			}
		}
	}
	total := uint64(0)
	for wave := range 30 {
		total += uint64(1 + wave%9)
	}
	if st := settled(c); st.Writes != total || st.Commits == 0 || st.Commits > total {
		t.Fatalf("stats %+v after %d writes", st, total)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leading || len(c.pending) != 0 {
		t.Fatalf("committer left leading %v, pending %d", c.leading, len(c.pending))
	}
}
