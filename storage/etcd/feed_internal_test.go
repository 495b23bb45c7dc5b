package etcd

import (
	"context"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
)

// TestFollowResyncsAfterCompaction: a feed resuming from a revision etcd
// has compacted away relays every revocation that still matters (and not
// expired ones), then goes on with new ones.
func TestFollowResyncsAfterCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	s, err := Open(ctx, Config{Endpoints: []string{srv.Endpoint}, Prefix: "/resync/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start, err := s.cli.Get(ctx, "/resync/")
	if err != nil {
		t.Fatal(err)
	}
	old := start.Header.Revision
	for jti, exp := range map[string]time.Time{"gap-1": now.Add(time.Hour), "gap-2": now.Add(time.Hour), "expired": now.Add(-time.Minute)} {
		if _, err := s.DenyAccessToken(ctx, jti, exp); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := s.cli.Get(ctx, "/resync/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	got := make(chan storage.Revocation, 16)
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.follow(fctx, old, func(r storage.Revocation) { got <- r }) }()
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case r := <-got:
			if r.JTI == "expired" {
				t.Fatalf("resync relayed an expired revocation")
			}
			seen[r.JTI] = true
		case <-ctx.Done():
			t.Fatalf("after compaction the feed relayed only %v", seen)
		}
	}
	if _, err := s.DenyAccessToken(ctx, "after", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case r := <-got:
			if r.JTI == "after" {
				stop()
				<-done
				return
			}
		case <-ctx.Done():
			t.Fatal("the feed did not go on after the resync")
		}
	}
}
