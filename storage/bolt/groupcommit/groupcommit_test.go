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
	c := New(db, WithMaxSize(3))
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

func gatherCounts(c *Committer) (waits, filled uint64) {
	st := c.Stats()
	return st.Waits, st.WaitsFilled
}

// gathering reports whether the committer is waiting for company.
func gathering(c *Committer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.want > 0
}

// waitGathering waits until the committer waits for company; it fails the
// test if early, the write that should be waiting, returns first.
func waitGathering(t *testing.T, c *Committer, early chan error) {
	t.Helper()
	for !gathering(c) {
		if len(early) > 0 {
			t.Fatalf("early write returned (%v) without the committer waiting for company", <-early)
		}
		runtime.Gosched()
	}
}

// burst commits a group of n writes (after a held lone first write), and
// leaves early queued behind it: held commits, so the group's size and the
// queue behind it are exact. It returns when the group's commit has ended
// and the committer is deciding about early.
func burst(t *testing.T, c *Committer, n int, early []func(*bbolt.Tx) error) []chan error {
	t.Helper()
	release := make(chan struct{})
	go func() { _ = c.Do(func(*bbolt.Tx) error { <-release; return nil }) }()
	waitLeading(c)
	hold := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var id int
			if err := c.Do(func(tx *bbolt.Tx) error { <-hold; return put(fmt.Sprint("burst", i), &id)(tx) }); err != nil {
				t.Error(err)
			}
		})
	}
	waitPending(c, n)
	close(release) // the lone write commits; the group's commit starts and waits on hold
	for {
		c.mu.Lock()
		started := len(c.pending) == 0 && c.lastSize == 1
		c.mu.Unlock()
		if started {
			break
		}
		runtime.Gosched()
	}
	errs := make([]chan error, len(early))
	for i, fn := range early {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- c.Do(fn) }()
	}
	waitPending(c, len(early))
	close(hold)
	wg.Wait()
	return errs
}

// TestBurstWaitsForItsCompany: after a group of 8, a single early write does
// not get a commit (and an fsync) of its own: the committer waits, and the
// write shares one transaction with the 7 that follow it. The wait ends
// because they came (gatherFor is 5 s here, far more than starting 7
// goroutines takes, so a wait that ended on time instead shows as
// WaitsFilled 0).
func TestBurstWaitsForItsCompany(t *testing.T) {
	db := openDB(t)
	c := New(db)
	c.gatherFor = 5 * time.Second
	ids := make([]int, 8)
	errs := burst(t, c, 8, []func(*bbolt.Tx) error{put("early", &ids[0])})
	waitGathering(t, c, errs[0])
	var wg sync.WaitGroup
	for i := 1; i < 8; i++ {
		wg.Go(func() {
			if err := c.Do(put(fmt.Sprint("late", i), &ids[i])); err != nil {
				t.Error(err)
			}
		})
	}
	if err := <-errs[0]; err != nil {
		t.Fatalf("early write: %v", err)
	}
	wg.Wait()
	for i := range ids {
		if ids[i] != ids[0] {
			t.Fatalf("writes after the burst ran in transactions %v; want one", ids)
		}
	}
	if !has(t, db, "early") || !has(t, db, "late7") {
		t.Fatal("a write of the gathered group is missing")
	}
	// The lone first write, the burst of 8, then the early write with its 7.
	if st := settled(c); st != (Stats{Commits: 3, Writes: 1 + 8 + 8, Waits: 1, WaitsFilled: 1}) {
		t.Fatalf("stats %+v; want 3 commits of 17 writes, 1 wait ended by its company", st)
	}
}

// TestGatherEndsOnTime: when the company does not come, the early write
// commits alone once the bound has passed.
func TestGatherEndsOnTime(t *testing.T) {
	db := openDB(t)
	c := New(db)
	c.gatherFor = 20 * time.Millisecond
	var id int
	errs := burst(t, c, 8, []func(*bbolt.Tx) error{put("early", &id)})
	if err := <-errs[0]; err != nil {
		t.Fatalf("early write: %v", err)
	}
	if !has(t, db, "early") {
		t.Fatal("early write not committed when Do returned")
	}
	st := settled(c)
	c.mu.Lock()
	defer c.mu.Unlock()
	if st != (Stats{Commits: 3, Writes: 1 + 8 + 1, Waits: 1}) || c.want != 0 || len(c.enough) != 0 {
		t.Fatalf("stats %+v, want %d, signals %d; want 3 commits, 1 wait that ran out, nothing left behind",
			st, c.want, len(c.enough))
	}
}

// TestNoWaitWithoutABurst: a write commits at once when the last group was
// small (a lone writer, a trickle) or when half the last group is already
// waiting (the steady alternation of two groups under load).
func TestNoWaitWithoutABurst(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		c := New(openDB(t))
		c.gatherFor = 5 * time.Second
		for i := range 20 {
			var id int
			if err := c.Do(put(fmt.Sprint("k", i), &id)); err != nil {
				t.Fatal(err)
			}
		}
		if g, _ := gatherCounts(c); g != 0 {
			t.Fatalf("sequential writes waited %d times", g)
		}
	})
	t.Run("half the group queued", func(t *testing.T) {
		c := New(openDB(t))
		c.gatherFor = 5 * time.Second
		ids := make([]int, 4)
		var fns []func(*bbolt.Tx) error
		for i := range ids {
			fns = append(fns, put(fmt.Sprint("next", i), &ids[i]))
		}
		for _, ch := range burst(t, c, 8, fns) {
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
		}
		if g, _ := gatherCounts(c); g != 0 {
			t.Fatalf("4 writes queued behind a group of 8 waited for more (%d waits)", g)
		}
	})
}

// TestGatherUnderConcurrentBursts: writers in waves, so that waits begin and
// end (by company and by time) while others arrive; every write commits,
// and no signal is left behind (run with -race).
func TestGatherUnderConcurrentBursts(t *testing.T) {
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
	if st := settled(c); st.Writes != total || st.Commits == 0 || st.Commits > total || st.WaitsFilled > st.Waits {
		t.Fatalf("stats %+v after %d writes", st, total)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.want != 0 || len(c.enough) != 0 || c.leading || len(c.pending) != 0 {
		t.Fatalf("committer left want %d, signals %d, leading %v, pending %d", c.want, len(c.enough), c.leading, len(c.pending))
	}
}
