package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// testOldGenerationReuse: a session keeps no digest of its older tokens,
// yet presenting any of them (named by its generation) is reuse and
// revokes the session; a token of the session's generation or a later
// one that is not its current token (one no committed rotation delivered)
// is unknown and changes nothing.
func testOldGenerationReuse(t *testing.T, s storage.Store) {
	c := ctx(t)
	sess := newSession(t, s, "s1", base)
	issued := []storage.TokenHash{sess.CurrentHash}
	now := base
	for i := range 10 {
		now = now.Add(time.Minute)
		next := Digest(t)
		mustRotate(t, s, storage.Rotation{SessionID: "s1", Generation: uint64(i), Presented: issued[i], Next: next, Now: now, IdleTTL: idle})
		issued = append(issued, next)
	}
	for _, gen := range []uint64{10, 11, 1 << 40} {
		r := storage.Rotation{SessionID: "s1", Generation: gen, Presented: Digest(t), Next: Digest(t), Now: now, IdleTTL: idle}
		wantRotateErr(t, s, fmt.Sprintf("undelivered token of generation %d", gen), r, storage.ErrNotFound)
	}
	if got, err := s.GetSession(c, "s1"); err != nil || got.Revoked() || got.CurrentHash != issued[10] || got.Generation != 10 {
		t.Fatalf("session after undelivered tokens = %+v, %v; want it unchanged", got, err)
	}
	// Generation 3, long exchanged: nothing of it is stored any more.
	r := storage.Rotation{SessionID: "s1", Generation: 3, Presented: issued[3], Next: Digest(t), Now: now.Add(time.Minute), IdleTTL: idle, ReuseGrace: time.Hour}
	got, err := s.RotateRefreshToken(c, r)
	wantErr(t, "token of generation 3 after 10 rotations", err, storage.ErrRefreshTokenReused)
	if got.ID != "s1" || !got.Revoked() {
		t.Fatalf("reuse returned %+v; want the revoked session", got)
	}
	wantRevoked(t, s, "s1", storage.ReasonReuse)
	r = storage.Rotation{SessionID: "s1", Generation: 10, Presented: issued[10], Next: Digest(t), Now: now.Add(2 * time.Minute), IdleTTL: idle}
	wantRotateErr(t, s, "current token after reuse", r, storage.ErrSessionRevoked)
}

// testConcurrentGraceRotation is invariant 1 with a retry window: N
// concurrent exchanges of one token may each succeed (the later ones as
// retries of the first), but only the successor stored last stays live;
// every other successor is a reused token.
func testConcurrentGraceRotation(t *testing.T, s storage.Store) {
	const n = 16
	c := ctx(t)
	sess := newSession(t, s, "race", base)
	type result struct {
		next storage.TokenHash
		got  storage.Session
		err  error
	}
	results := make([]result, n)
	for i := range results {
		results[i].next = Digest(t)
	}
	race(n, func(i int) {
		r := storage.Rotation{SessionID: "race", Presented: sess.CurrentHash, Next: results[i].next,
			Now: base.Add(time.Second), IdleTTL: idle, ReuseGrace: time.Minute}
		results[i].got, results[i].err = s.RotateRefreshToken(c, r)
	})
	stored, err := s.GetSession(c, "race")
	if err != nil || stored.Revoked() {
		t.Fatalf("session after concurrent retries = %+v, %v; want live", stored, err)
	}
	live := 0
	var losers []result
	for i, res := range results {
		switch {
		case res.err != nil:
			t.Fatalf("exchange %d within the retry window: %v", i, res.err)
		case res.next == stored.CurrentHash:
			live++
		default:
			losers = append(losers, res)
		}
	}
	if live != 1 {
		t.Fatalf("%d of %d successors are current; want exactly 1", live, n)
	}
	// A replaced successor, presented with the generation it was minted
	// with (the presented token's plus one), is reuse.
	l := losers[0]
	r := storage.Rotation{SessionID: "race", Generation: 1, Presented: l.next, Next: Digest(t),
		Now: base.Add(2 * time.Second), IdleTTL: idle, ReuseGrace: time.Minute}
	wantRotateErr(t, s, "replaced successor", r, storage.ErrRefreshTokenReused)
	wantRevoked(t, s, "race", storage.ReasonReuse)
}
