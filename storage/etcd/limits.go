package etcd

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

var _ storage.SharedLimits = (*Store)(nil)

// A shared bucket is stored as one time: the moment it is full again (the
// generic cell rate algorithm's form of a token bucket). At now it owes
// debt = max(0, fullAt-now), so it holds Burst - debt/Refill tokens; taking
// n tokens adds n*Refill to the debt and is allowed while the debt stays
// within Burst*Refill. A full bucket has no row: its lease ends after
// fullAt, and a missing row reads as full.

// limitKey is where the bucket named key lives: a digest of the name, so
// that what a client sends (an email that may belong to nobody) is never
// stored and every row has the same small size.
func (s *Store) limitKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.p + "limits/" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// capacity is how much debt b may carry: Burst*Refill, saturating.
func capacity(b storage.Bucket) time.Duration { return mulDuration(b.Burst, b.Refill) }

// mulDuration returns n*d, saturating at the largest Duration.
func mulDuration(n int, d time.Duration) time.Duration {
	if n > 0 && d > time.Duration(math.MaxInt64)/time.Duration(n) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(n) * d
}

// sharedBucket is one bucket of a TakeTokens call, read.
type sharedBucket struct {
	storage.Bucket
	n    int   // tokens to take
	rev  int64 // ModRevision of the row read, 0 if none
	debt time.Duration
}

// bucketGets are the reads of bs's rows.
func (s *Store) bucketGets(bs []sharedBucket) []clientv3.Op {
	gets := make([]clientv3.Op, len(bs))
	for i, b := range bs {
		gets[i] = clientv3.OpGet(s.limitKey(b.Key))
	}
	return gets
}

// readBuckets reads the rows of bs in one Txn (one revision).
func (s *Store) readBuckets(ctx context.Context, now time.Time, bs []sharedBucket) error {
	resp, err := s.cli.Txn(ctx).Then(s.bucketGets(bs)...).Commit()
	if err != nil {
		return wrapErr(ctx, "read buckets", err)
	}
	return setDebts(resp.Responses, now, bs)
}

// setDebts sets each bucket's revision and debt at now from the responses
// of bucketGets.
func setDebts(resps []*etcdserverpb.ResponseOp, now time.Time, bs []sharedBucket) error {
	for i := range bs {
		bs[i].rev, bs[i].debt = 0, 0
		kvs := resps[i].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue
		}
		fullAt, err := record.DecodeTime(kvs[0].Value)
		if err != nil {
			return fmt.Errorf("bucket row: %w", err)
		}
		bs[i].rev, bs[i].debt = kvs[0].ModRevision, max(fullAt.Sub(now), 0)
	}
	return nil
}

// TakeTokens implements storage.SharedLimits. It reads every bucket in one
// Txn and commits the new debts in another that compares each row's
// ModRevision with what it read; when another process charged one of them
// in between, that Txn reads them again instead (its else branch), and the
// decision is made again from what it read. A refusal is decided from a
// read and writes nothing. Within this process, charges that would take a
// token from one bucket wait for each other, so that a burst of attempts
// on one account contends with the other processes' attempts only, not
// with its own.
func (s *Store) TakeTokens(ctx context.Context, now time.Time, buckets ...storage.Bucket) (refused []string, retryAfter time.Duration, err error) {
	var bs []sharedBucket
	index := map[string]int{}
	for _, b := range buckets {
		if !b.Valid() {
			return nil, 0, invalid("take tokens", "every bucket needs a key, a positive burst and a positive refill")
		}
		if i, ok := index[b.Key]; ok {
			bs[i].n++
			bs[i].Bucket = b // the latest charge's shape
			continue
		}
		index[b.Key] = len(bs)
		bs = append(bs, sharedBucket{Bucket: b, n: 1})
	}
	if len(bs) == 0 {
		return nil, 0, nil
	}
	refuse := func() bool {
		refused, retryAfter = nil, 0
		for _, b := range bs {
			if over := b.debt + mulDuration(b.n, b.Refill) - capacity(b.Bucket); over > 0 {
				refused = append(refused, b.Key)
				retryAfter = max(retryAfter, over)
			}
		}
		return len(refused) > 0
	}
	err = s.run(ctx, "take tokens", func(ctx context.Context) error {
		// A refusal needs no lock: attempts on a spent budget (a flood's)
		// never queue ahead of the ones that will take a token.
		if err := s.readBuckets(ctx, now, bs); err != nil || refuse() {
			return err
		}
		return s.writeBuckets(ctx, "take tokens", now, bs, refuse, func() ([]clientv3.Op, error) {
			puts := make([]clientv3.Op, len(bs))
			for i, b := range bs {
				fullAt := now.Add(b.debt + mulDuration(b.n, b.Refill))
				lease, err := s.lease(ctx, fullAt, now)
				if err != nil {
					return nil, err
				}
				puts[i] = clientv3.OpPut(s.limitKey(b.Key), encodeTime(fullAt), clientv3.WithLease(lease))
			}
			return puts, nil
		})
	})
	return refused, retryAfter, err
}

// writeBuckets takes the locks of bs, reads their rows, and commits the
// operations write makes from them in a Txn that compares every row's
// ModRevision with what was read. When another process changed a row in
// between, the Txn reads them again instead (its else branch) and write
// decides again from that. done, asked before each attempt, ends it
// without a write.
func (s *Store) writeBuckets(ctx context.Context, op string, now time.Time, bs []sharedBucket, done func() bool, write func() ([]clientv3.Op, error)) error {
	unlock, err := s.lockBuckets(ctx, bs)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.readBuckets(ctx, now, bs); err != nil {
		return err
	}
	for range maxRetries {
		if done() {
			return nil
		}
		txn, err := s.commit(ctx, op, func() (clientv3.Txn, error) {
			ops, err := write()
			if err != nil {
				return nil, err
			}
			cmps := make([]clientv3.Cmp, len(bs))
			for i, b := range bs {
				cmps[i] = clientv3.Compare(clientv3.ModRevision(s.limitKey(b.Key)), "=", b.rev)
			}
			return s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(s.bucketGets(bs)...), nil
		})
		if err != nil || txn.Succeeded {
			return err
		}
		if err := setDebts(txn.Responses, now, bs); err != nil {
			return err
		}
	}
	return errContention
}

// ReturnToken implements storage.SharedLimits. A bucket that the token
// fills is deleted (a missing row reads as full).
func (s *Store) ReturnToken(ctx context.Context, now time.Time, b storage.Bucket) error {
	if !b.Valid() {
		return invalid("return token", "the bucket needs a key, a positive burst and a positive refill")
	}
	return s.run(ctx, "return token", func(ctx context.Context) error {
		bs := []sharedBucket{{Bucket: b}}
		full := func() bool { return bs[0].rev == 0 } // a missing row reads as full
		return s.writeBuckets(ctx, "return token", now, bs, full, func() ([]clientv3.Op, error) {
			key, debt := s.limitKey(b.Key), min(bs[0].debt, capacity(b))-b.Refill
			if debt <= 0 {
				return []clientv3.Op{clientv3.OpDelete(key)}, nil
			}
			fullAt := now.Add(debt)
			lease, err := s.lease(ctx, fullAt, now)
			if err != nil {
				return nil, err
			}
			return []clientv3.Op{clientv3.OpPut(key, encodeTime(fullAt), clientv3.WithLease(lease))}, nil
		})
	})
}

// stripes is a fixed set of locks that bucket names hash onto.
type stripes [64]chan struct{}

func newStripes() *stripes {
	var st stripes
	for i := range st {
		st[i] = make(chan struct{}, 1)
	}
	return &st
}

// lockWait bounds how long a charge waits for its buckets' locks before it
// goes ahead without them. The locks only keep a burst on one account from
// contending with itself; correctness comes from the Txn's compare. A
// charge stuck on a frozen etcd member holds its locks for up to the op
// timeout, and the other charges on its stripes must not wait that long.
const lockWait = 100 * time.Millisecond

// lockBuckets takes the locks of bs's stripes, in ascending order so that
// two calls never wait for each other's, failing when ctx is done. After
// lockWait it releases what it took and goes ahead unlocked. It returns
// the function that releases what it holds.
func (s *Store) lockBuckets(ctx context.Context, bs []sharedBucket) (func(), error) {
	var idx []int
	for _, b := range bs {
		h := fnv.New32a()
		h.Write([]byte(b.Key))
		if i := int(h.Sum32() % uint32(len(s.bucketLocks))); !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	unlock := func(held []int) {
		for _, i := range held {
			<-s.bucketLocks[i]
		}
	}
	timeout := time.NewTimer(lockWait)
	defer timeout.Stop()
	for n, i := range idx {
		select {
		case s.bucketLocks[i] <- struct{}{}:
		case <-timeout.C:
			unlock(idx[:n])
			return func() {}, nil
		case <-ctx.Done():
			unlock(idx[:n])
			return nil, clientErr(ctx, ctx.Err())
		}
	}
	return func() { unlock(idx) }, nil
}
