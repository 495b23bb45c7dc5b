package server

import (
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
)

// TestSlowWatcherIsDropped: a subscriber that does not read never blocks
// publishing; once its buffer is full it is cut off with a reason, and the
// others keep receiving.
func TestSlowWatcherIsDropped(t *testing.T) {
	b := newBroadcaster()
	slow, cancelSlow := b.subscribe()
	defer cancelSlow()
	fast, cancelFast := b.subscribe()
	defer cancelFast()
	for i := range watcherBuffer + 1 {
		b.publish(&latchv1.RevocationEvent{Jti: "j"})
		if i < watcherBuffer {
			<-fast.events
		}
	}
	select {
	case <-slow.gone:
		if slow.reason == "" {
			t.Fatal("dropped subscriber has no reason")
		}
	default:
		t.Fatal("slow subscriber was not dropped")
	}
	select {
	case <-fast.gone:
		t.Fatal("reading subscriber was dropped")
	default:
	}
	b.close()
	<-fast.gone
	if s, _ := b.subscribe(); s.reason == "" {
		t.Fatal("subscribe after close must end at once with a reason")
	}
}
