package server_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
)

// accessRecords returns the per-call access records ("finished call") in logs.
func accessRecords(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "finished call" {
			out = append(out, rec)
		}
	}
	return out
}

// accessLogTraffic makes successful Login, Refresh and Introspect calls,
// introspects concurrently from many goroutines, and returns how many RPCs
// it made (every one of them ends OK).
func accessLogTraffic(t *testing.T, e *opsEnv) int {
	t.Helper()
	e.addUser("alice@example.com", "alice-password", "user")
	ictx := e.introspector() // one Login
	tp := e.login("alice@example.com", "alice-password")
	r, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	const introspects = 40
	var wg sync.WaitGroup
	for range introspects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.client.Introspect(ictx, &latchv1.IntrospectRequest{Token: r.GetTokens().GetAccessToken()}); err != nil {
				t.Errorf("Introspect: %v", err)
			}
		}()
	}
	wg.Wait()
	return 3 + introspects
}

// TestAccessLogOffByDefault: at the default level (info) successful calls
// write no per-call access record, and refresh_succeeded is debug-only,
// while the login_succeeded audit event is kept.
func TestAccessLogOffByDefault(t *testing.T) {
	e := newOpsEnv(t, opsConfig{logLevel: slog.LevelInfo})
	accessLogTraffic(t, e)
	logs := e.logs.String()
	if recs := accessRecords(t, logs); len(recs) != 0 {
		t.Errorf("%d access records at the default level, want 0; first: %v", len(recs), recs[0])
	}
	if n := len(records(t, logs, "login_succeeded")); n != 2 {
		t.Errorf("login_succeeded records = %d, want 2 (audit events stay at info)", n)
	}
	if n := len(records(t, logs, "refresh_succeeded")); n != 0 {
		t.Errorf("refresh_succeeded records at info = %d, want 0 (debug)", n)
	}
}

// TestAccessLogSampled: WithAccessLog(1) writes one record per call;
// WithAccessLog(4) writes one for every fourth call, counted across
// concurrent calls.
func TestAccessLogSampled(t *testing.T) {
	for _, every := range []int{1, 4} {
		e := newOpsEnv(t, opsConfig{logLevel: slog.LevelInfo, grpcOpts: []server.GRPCOption{server.WithAccessLog(every)}})
		calls := accessLogTraffic(t, e)
		recs := accessRecords(t, e.logs.String())
		if want := calls / every; len(recs) != want {
			t.Errorf("WithAccessLog(%d): %d access records for %d calls, want %d", every, len(recs), calls, want)
		}
		for _, rec := range recs {
			if rec["grpc.code"] != "OK" || rec["level"] != "INFO" {
				t.Errorf("WithAccessLog(%d): record %v, want code OK at INFO", every, rec)
			}
		}
	}
}
