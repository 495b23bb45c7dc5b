package bolt

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/storage"
)

// liveCacheMax bounds the answers a liveCache holds (~150 bytes each): a
// full set is dropped for an empty one.
const liveCacheMax = 1 << 15

// liveCache remembers the access tokens that a read found not revoked
// (their jti not denied, their session's summary present and not revoked),
// with their session's absolute expiry, so that checking them again costs a
// map lookup instead of a read transaction: the check every Introspect and
// every interceptor-following-revocations call makes.
//
// Such an answer can only go stale by a commit that denies a jti, marks a
// session summary revoked or deletes one. Each of those registers
// invalidate to run after its commit: the writes themselves (putSession of
// a revoked session, deleteSession, the deny in DenyAccessToken), not their
// callers, so that no new caller can forget. Re-filing a summary and
// deleting an expired denial do not register: neither can turn a cached
// "not revoked" wrong, and the sweeper re-files live sessions all the time.
// A revocation that finds its target already revoked writes nothing and
// does not invalidate (repeats are free). A commit whose fsync failed may
// have made its pages visible without running its handlers, so that a
// retry would find its target revoked while the cache still disagrees:
// every write transaction that fails to commit therefore invalidates
// (groupcommit.WithCommitFailed, Store.update). invalidate starts a new generation; an answer is used
// only within the generation that was current before the read that
// produced it began. So a check that starts after a revoking commit has
// returned (and with it the Revoke RPC) never uses an answer read before
// it: invariants 1 and 2 hold as they do for the read itself. Creations and
// rotations do not invalidate (they revoke nothing), so under Refresh and
// Login load the answers stay.
//
// Only "not revoked" is cached: "revoked" is final (a session is never
// un-revoked), and costs a read, which only failing tokens pay.
//
// One bbolt file has one writer process (bbolt's file lock), so every
// revoking commit goes through this Store and this cache sees them all.
type liveCache struct {
	gen atomic.Uint64
	cur atomic.Pointer[liveSet]
}

// liveSet is one generation's answers.
type liveSet struct {
	gen uint64
	n   atomic.Int32
	m   sync.Map // storage.AccessTokenRef → int64: the session's absolute expiry, unix nanoseconds
}

// generation returns the current generation; read it before the read
// transaction whose answers are stored under it.
func (c *liveCache) generation() uint64 { return c.gen.Load() }

// invalidate drops every cached answer. It runs after a commit that may
// revoke a cached token (bbolt runs OnCommit handlers once the commit is
// durable and visible to new read transactions).
func (c *liveCache) invalidate() { c.gen.Add(1) }

// revoked answers for ref from the cache: ok is false when it has no
// answer of the current generation.
func (c *liveCache) revoked(ref storage.AccessTokenRef, now time.Time) (revoked, ok bool) {
	set := c.cur.Load()
	if set == nil || set.gen != c.gen.Load() {
		return false, false
	}
	v, ok := set.m.Load(ref)
	if !ok {
		return false, false
	}
	return now.UnixNano() >= v.(int64), true
}

// put records that ref was found not revoked, with its session's absolute
// expiry, by a read that began in generation gen.
func (c *liveCache) put(gen uint64, ref storage.AccessTokenRef, absoluteExpiry time.Time) {
	set := c.cur.Load()
	for set == nil || set.gen < gen {
		fresh := &liveSet{gen: gen}
		if c.cur.CompareAndSwap(set, fresh) {
			set = fresh
			break
		}
		set = c.cur.Load()
	}
	if set.gen != gen {
		return // a newer generation began
	}
	// Reserve a place first, so that concurrent puts never pass the bound.
	// A full set is replaced by an empty one of the same generation
	// (dropping answers is always safe), so that a long generation keeps
	// caching the tokens in use rather than the first 32k it saw.
	if set.n.Add(1) > liveCacheMax {
		fresh := &liveSet{gen: gen}
		fresh.n.Store(1)
		if !c.cur.CompareAndSwap(set, fresh) {
			return // another put replaced it, or a new generation began
		}
		set = fresh
	}
	if _, loaded := set.m.LoadOrStore(ref, absoluteExpiry.UnixNano()); loaded {
		set.n.Add(-1)
	}
}
