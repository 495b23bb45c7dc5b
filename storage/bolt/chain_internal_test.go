package bolt

import (
	"context"
	"errors"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
	"github.com/latchauth/latch/storage/storagetest"
)

// refreshEntries returns the refresh index: digest → owning session id.
func refreshEntries(t *testing.T, s *Store) map[storage.TokenHash]string {
	t.Helper()
	out := map[storage.TokenHash]string{}
	for k, v := range dump(t, s)[string(bucketRefresh)] {
		e, err := decodeRefreshEntry([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		out[storage.TokenHash([]byte(k))] = string(e.sessionID)
	}
	return out
}

// Deleting a session deletes every refresh digest it issued, found by the
// links from its current digest alone: through plain rotations, a grace
// retry (which drops the successor it replaces from the session record)
// and more rotations; another session's digests stay.
func TestSweptSessionTakesEveryDigest(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	newSession := func(id string) storage.TokenHash {
		h := storagetest.Digest(t)
		createSession(t, s, id, h, base, 2*time.Hour)
		return h
	}
	rotate := func(presented storage.TokenHash, at time.Duration) storage.TokenHash {
		t.Helper()
		next := storagetest.Digest(t)
		if _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: presented, Next: next, Now: base.Add(at),
			IdleTTL: time.Hour, ReuseGrace: 10 * time.Second}); err != nil {
			t.Fatalf("rotate at %v: %v", at, err)
		}
		return next
	}
	cur := newSession("a")
	other := newSession("b")
	issued := []storage.TokenHash{cur}
	for i := range 5 {
		cur = rotate(cur, time.Duration(i+1)*time.Minute)
		issued = append(issued, cur)
		other = rotate(other, time.Duration(i+1)*time.Minute)
	}
	// Grace retry: the previous digest again, within the grace period.
	retried := rotate(issued[len(issued)-2], 5*time.Minute+time.Second)
	issued = append(issued, retried)
	cur = rotate(retried, 6*time.Minute)
	issued = append(issued, cur)
	if got := refreshEntries(t, s); len(got) != len(issued)+6 {
		t.Fatalf("refresh index holds %d digests before the sweep; want %d", len(got), len(issued)+6)
	}
	// Session b stays live past a's expiry by rotating late.
	rotate(other, 61*time.Minute)
	if r, err := s.DeleteExpired(ctx, base.Add(3*time.Hour), 100); err != nil || r.Deleted < 1 {
		t.Fatalf("DeleteExpired = %+v, %v", r, err)
	}
	got := refreshEntries(t, s)
	for _, h := range issued {
		if _, ok := got[h]; ok {
			t.Errorf("a digest of the swept session is still indexed")
		}
		if _, _, err := s.FindSessionByRefreshHash(ctx, h); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("FindSessionByRefreshHash(swept digest) = %v; want ErrNotFound", err)
		}
	}
	for _, owner := range got {
		if owner != "b" {
			t.Errorf("refresh index holds a digest of %q after the sweep", owner)
		}
	}
}

// A refresh entry decodes only in its two forms.
func TestDecodeRefreshEntry(t *testing.T) {
	var prev storage.TokenHash
	prev[0], prev[31] = 1, 0
	for _, tc := range []struct {
		in      []byte
		id      string
		prev    storage.TokenHash
		corrupt bool
	}{
		{in: []byte("sess"), id: "sess"},
		{in: encodeRefreshEntry("sess", prev), id: "sess", prev: prev},
		{in: encodeRefreshEntry("sess", storage.TokenHash{}), id: "sess"},
		{in: append([]byte("sess\x00"), prev[:31]...), corrupt: true},
		{in: append(append([]byte("sess\x00"), prev[:]...), 0), corrupt: true},
		{in: append([]byte("\x00"), prev[:]...), corrupt: true},
	} {
		e, err := decodeRefreshEntry(tc.in)
		if tc.corrupt {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Errorf("decode(%q) = %v; want ErrCorrupt", tc.in, err)
			}
			continue
		}
		if err != nil || string(e.sessionID) != tc.id || e.prev != tc.prev {
			t.Errorf("decode(%q) = %q %x, %v; want %q %x", tc.in, e.sessionID, e.prev, err, tc.id, tc.prev)
		}
	}
}

// A session that rotated more often than one call's digest budget is
// deleted over several DeleteExpired calls, each deleting at most
// sweepDigestBudget digests and reporting a full chunk while work is left;
// meanwhile every digest still indexed reads as the expired session, which
// no rotation accepts. Schema 2 digests (unlinked, listed in sessdigests)
// are bounded the same way.
func TestSweepDeletesLongChainsInBoundedSteps(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	issued := longSession(t, s, base, 2*sweepDigestBudget+40)
	// Schema 2 digests of the same session, as the old layout wrote them.
	const legacy = sweepDigestBudget + 10
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		for range legacy {
			h := storagetest.Digest(t)
			issued = append(issued, h)
			if err := tx.Bucket(bucketRefresh).Put(h[:], []byte("long")); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSessDigests).Put(append([]byte("long\x00"), h[:]...), nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	total := len(issued)
	now := base.Add(48 * time.Hour)
	for call := 1; ; call++ {
		before := len(refreshEntries(t, s))
		r, err := s.DeleteExpired(ctx, now, 16)
		if err != nil {
			t.Fatal(err)
		}
		deleted := before - len(refreshEntries(t, s))
		if deleted > sweepDigestBudget {
			t.Fatalf("call %d deleted %d digests; budget %d", call, deleted, sweepDigestBudget)
		}
		if _, err := s.GetSession(ctx, "long"); errors.Is(err, storage.ErrNotFound) {
			if r != (storage.SweepResult{Deleted: 1}) {
				t.Fatalf("the call that finished the session reported %+v; want 1 deleted", r)
			}
			if call != (total+sweepDigestBudget-1)/sweepDigestBudget {
				t.Fatalf("finished in %d calls; want %d", call, (total+sweepDigestBudget-1)/sweepDigestBudget)
			}
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if r != (storage.SweepResult{More: true}) {
			t.Fatalf("call %d left work but reported %+v; want nothing deleted yet, More", call, r)
		}
		for _, h := range issued {
			sess, _, err := s.FindSessionByRefreshHash(ctx, h)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil || sess.ID != "long" {
				t.Fatalf("digest mid-sweep: %v, %v", sess.ID, err)
			}
			_, err = s.RotateRefreshToken(ctx, storage.Rotation{Presented: h, Next: storagetest.Digest(t), Now: now, IdleTTL: time.Hour})
			if !errors.Is(err, storage.ErrSessionExpired) {
				t.Fatalf("rotation of a digest of a half-swept session: %v; want ErrSessionExpired", err)
			}
			break
		}
		if call > 10 {
			t.Fatal("the sweep never finished")
		}
	}
	if got := refreshEntries(t, s); len(got) != 0 {
		t.Fatalf("%d digests left after the session was swept", len(got))
	}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketSessDigests).Stats().KeyN; n != 0 {
			t.Errorf("sessdigests holds %d entries after the sweep", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestHalfSweptSessionExpiredForAnyClock: while a long session is deleted
// over several sweeps, its record's current digest is one the session had
// superseded; a rotation of it must fail even at a time before the
// session's expiry (a clock stepped back), where it would otherwise be the
// session's current token.
func TestHalfSweptSessionExpiredForAnyClock(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	longSession(t, s, base, sweepDigestBudget+10)
	if r, err := s.DeleteExpired(ctx, base.Add(48*time.Hour), 16); err != nil || !r.More {
		t.Fatalf("DeleteExpired = %+v, %v; want a partial delete", r, err)
	}
	sess, err := s.GetSession(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.RotateRefreshToken(ctx, storage.Rotation{Presented: sess.CurrentHash, Next: storagetest.Digest(t),
		Now: base.Add(30 * time.Minute), IdleTTL: time.Hour})
	if !errors.Is(err, storage.ErrSessionExpired) {
		t.Fatalf("rotation of the half-swept session's digest before its expiry: %v; want ErrSessionExpired", err)
	}
}

// longSession creates session "long" at base (24 h absolute, 1 h idle) and
// rotates it rotations times, a second apart; it returns every digest the
// session issued, the first and the current one included.
func longSession(t *testing.T, s *Store, base time.Time, rotations int) []storage.TokenHash {
	t.Helper()
	cur := storagetest.Digest(t)
	createSession(t, s, "long", cur, base, 24*time.Hour)
	issued := []storage.TokenHash{cur}
	for i := range rotations {
		next := storagetest.Digest(t)
		if _, err := s.RotateRefreshToken(context.Background(), storage.Rotation{Presented: cur, Next: next,
			Now: base.Add(time.Duration(i+1) * time.Second), IdleTTL: time.Hour}); err != nil {
			t.Fatalf("rotation %d: %v", i+1, err)
		}
		cur = next
		issued = append(issued, cur)
	}
	return issued
}
