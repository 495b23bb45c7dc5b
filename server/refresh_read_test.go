package server_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
)

// sessionLookups counts the session reads the server makes on the real
// store besides rotations.
type sessionLookups struct {
	storage.Store
	n atomic.Int64
}

func (d *sessionLookups) GetSession(ctx context.Context, id string) (storage.Session, error) {
	d.n.Add(1)
	return d.Store.GetSession(ctx, id)
}

// TestRefreshReuseNoSecondLookup: on reuse the store has revoked the session
// and returned it; the server announces and logs that session without
// reading it again.
func TestRefreshReuseNoSecondLookup(t *testing.T) {
	dl := &sessionLookups{}
	e := newEnv(t, baseConfig(), func(s storage.Store) storage.Store { dl.Store = s; return dl })
	alice := e.addUser("alice@example.com", "alice-password")
	first := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	dl.n.Store(0)

	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second) // past the retry window: reuse
	_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	if n := dl.n.Load(); n != 0 {
		t.Errorf("reuse made %d session reads besides the rotation, want 0", n)
	}
	var line string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `"event":"refresh_reuse_detected"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"session_id":"`+first.GetSessionId()+`"`) || !strings.Contains(line, `"user_id":"`+alice.ID+`"`) {
		t.Errorf("reuse log %q does not name session %s of user %s", line, first.GetSessionId(), alice.ID)
	}
	sess, err := e.store.GetSession(ctxT(t), first.GetSessionId())
	if err != nil || !sess.Revoked() {
		t.Errorf("session after reuse = %+v, %v; want revoked", sess, err)
	}
}
