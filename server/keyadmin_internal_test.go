package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func testPolicy() keyPolicy {
	return keyPolicy{rotation: time.Hour, lead: 20 * time.Minute, reload: 5 * time.Second, window: 15*time.Minute + 35*time.Second}
}

func fakeKey(id string, st storage.KeyState, created time.Time) storage.SigningKey {
	return storage.SigningKey{ID: id, PrivateKey: []byte("p"), PublicKey: []byte("P"), State: st, CreatedAt: created}
}

// fakeKeys hands out keys named new1, new2, ...
func fakeKeys() func() (storage.SigningKey, error) {
	n := 0
	return func() (storage.SigningKey, error) {
		n++
		return fakeKey(fmt.Sprintf("new%d", n), "", time.Time{}), nil
	}
}

func states(keys []storage.SigningKey) string {
	var parts []string
	for _, k := range keys {
		parts = append(parts, k.ID+"="+string(k.State))
	}
	return strings.Join(parts, " ")
}

// TestPlan pins the life-cycle decisions at their boundaries.
func TestPlan(t *testing.T) {
	p := testPolicy()
	active := fakeKey("a", storage.KeyActive, t0)
	active.ActivatedAt = t0
	next := fakeKey("n", storage.KeyNext, t0)
	retired := fakeKey("r", storage.KeyRetired, t0.Add(-time.Hour))
	retired.RetiredAt = t0
	ready := t0.Add(p.reload + p.lead)

	cases := []struct {
		name    string
		keys    []storage.SigningKey
		now     time.Time
		act     keyAction
		want    string // key states after, in JWKS order
		events  string
		wantErr bool
		notYet  time.Time // for actRotate: the ReadyAt reported
	}{
		{name: "empty store", now: t0, want: "new1=active new2=next", events: "key_created key_activated key_created"},
		{name: "only a next key", keys: []storage.SigningKey{next}, now: t0, want: "n=active new1=next", events: "key_activated key_created"},
		{name: "active without next", keys: []storage.SigningKey{active}, now: t0, want: "a=active new1=next", events: "key_created"},
		{name: "nothing due", keys: []storage.SigningKey{active, next}, now: t0.Add(time.Hour - time.Nanosecond), want: "a=active n=next"},
		{name: "rotation due", keys: []storage.SigningKey{active, next}, now: t0.Add(time.Hour), want: "n=active new1=next a=retired",
			events: "key_retired key_activated key_created"},
		{name: "rotation due, next not published long enough", keys: []storage.SigningKey{active, fakeKey("n", storage.KeyNext, t0.Add(50*time.Minute))},
			now: t0.Add(time.Hour), want: "a=active n=next"},
		{name: "retired inside its window", keys: []storage.SigningKey{active, next, retired}, now: t0.Add(p.window), want: "a=active n=next r=retired"},
		{name: "retired after its window", keys: []storage.SigningKey{active, next, retired}, now: t0.Add(p.window + time.Nanosecond), want: "a=active n=next",
			events: "key_removed"},
		{name: "on demand, ready", keys: []storage.SigningKey{active, next}, now: ready, act: actRotate, want: "n=active new1=next a=retired",
			events: "key_retired key_activated key_created"},
		{name: "on demand, not ready", keys: []storage.SigningKey{active, next}, now: ready.Add(-time.Nanosecond), act: actRotate, want: "a=active n=next", notYet: ready},
		{name: "on demand, no next key", keys: []storage.SigningKey{active}, now: t0, act: actRotate, want: "a=active new1=next", events: "key_created", notYet: ready},
		{name: "immediate", keys: []storage.SigningKey{active, next, retired}, now: t0, act: actImmediate, want: "new1=active new2=next a=retired r=retired",
			events: "key_retired key_removed key_created key_activated key_created"},
		{name: "two active keys", keys: []storage.SigningKey{active, func() storage.SigningKey { k := active; k.ID = "b"; return k }()}, now: t0, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.plan(tc.keys, tc.now, tc.act, fakeKeys())
			if tc.wantErr {
				if err == nil {
					t.Fatal("plan accepted two active keys")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sorted := slices.Clone(res.keys)
			slices.SortFunc(sorted, compareKeys)
			if got := states(sorted); got != tc.want {
				t.Errorf("keys = %s, want %s", got, tc.want)
			}
			var evs []string
			for _, e := range res.events {
				evs = append(evs, e.name)
			}
			if got := strings.Join(evs, " "); got != tc.events {
				t.Errorf("events = %q, want %q", got, tc.events)
			}
			var nr *KeyNotReadyError
			if tc.notYet.IsZero() != (res.refused == nil) || (res.refused != nil && (!errors.As(res.refused, &nr) || !nr.ReadyAt.Equal(tc.notYet))) {
				t.Errorf("refused = %v, want ReadyAt %v", res.refused, tc.notYet)
			}
			for _, k := range res.keys {
				switch {
				case k.State == storage.KeyActive && k.ID != "a" && !k.ActivatedAt.Equal(tc.now):
					t.Errorf("activated key %s ActivatedAt %v, want %v", k.ID, k.ActivatedAt, tc.now)
				case k.State == storage.KeyRetired && k.ID == "a" && !k.RetiredAt.Equal(tc.now):
					t.Errorf("retired key RetiredAt %v, want %v", k.RetiredAt, tc.now)
				}
			}
			if err := storage.ValidateSigningKeys(res.keys); err != nil {
				t.Errorf("plan produced an invalid set: %v", err)
			}
		})
	}
}

// TestKeyNotReadyStatus: the mapper answers FAILED_PRECONDITION with the
// ready time and a retry hint, and logs nothing as an internal error.
func TestKeyNotReadyStatus(t *testing.T) {
	var logs strings.Builder
	s := &Server{log: slog.New(slog.NewJSONHandler(&logs, nil)), now: func() time.Time { return t0 }}
	err := fmt.Errorf("rotate: %w", &KeyNotReadyError{KeyID: "kid", ReadyAt: t0.Add(10 * time.Minute)})
	if !errors.Is(err, ErrKeyNotReady) {
		t.Fatal("KeyNotReadyError is not ErrKeyNotReady")
	}
	st := status.Convert(s.toStatus(context.Background(), "/latch.v1.AdminService/RotateSigningKey", err))
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "2026-11-24T12:10:00Z") {
		t.Fatalf("status = %v %q, want FailedPrecondition with the ready time", st.Code(), st.Message())
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() < 10*time.Minute {
		t.Errorf("retry info = %v, want at least 10m", retry)
	}
	if strings.Contains(logs.String(), "internal_error") {
		t.Errorf("a not-ready rotation was logged as an internal error: %s", logs.String())
	}
}

// TestTooManyRetiredKeysStatus: a capped rotation is FAILED_PRECONDITION
// with the time the next one is possible.
func TestTooManyRetiredKeysStatus(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler), now: func() time.Time { return t0 }}
	err := fmt.Errorf("rotate: %w", &TooManyRetiredKeysError{RetryAt: t0.Add(time.Minute)})
	st := status.Convert(s.toStatus(context.Background(), "/latch.v1.AdminService/RotateSigningKey", err))
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "2026-11-24T12:01:00Z") {
		t.Fatalf("status = %v %q, want FailedPrecondition with the retry time", st.Code(), st.Message())
	}
}
