package bench

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInterleaveTakesTurns: each row of a group runs in one stretch per
// round, every round starting one row later, and its result adds up all
// of its stretches' calls.
func TestInterleaveTakesTurns(t *testing.T) {
	b := &runner{cfg: Config{Duration: 150 * time.Millisecond, Rounds: 3}, report: &Report{}}
	var mu sync.Mutex
	var turns []string // the row of each stretch, in order
	calls := map[string]*atomic.Int64{}
	mk := func(name string) row {
		calls[name] = &atomic.Int64{}
		var last atomic.Int64
		last.Store(-1)
		return row{kind: "baseline", name: name, conc: 1, fn: func(_ context.Context, _, i int) error {
			// A stretch goes on with the call numbers where the row's
			// previous one stopped (the scenarios pick tokens by them).
			if prev := last.Swap(int64(i)); prev != int64(i)-1 {
				t.Errorf("%s: call %d after call %d: the numbering must go on across stretches", name, i, prev)
			}
			calls[name].Add(1)
			mu.Lock()
			if len(turns) == 0 || turns[len(turns)-1] != name {
				turns = append(turns, name)
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			return nil
		}}
	}
	got := b.interleave(context.Background(), mk("A"), mk("B"), mk("C"))
	if want := []string{"A", "B", "C", "B", "C", "A", "C", "A", "B"}; !slices.Equal(turns, want) {
		t.Errorf("stretches ran in the order %v, want %v", turns, want)
	}
	for i, name := range []string{"A", "B", "C"} {
		if got[i].Name != name || got[i].Ops != calls[name].Load() || got[i].Ops == 0 {
			t.Errorf("result %d = %q with %d calls, want %q with the %d calls it made", i, got[i].Name, got[i].Ops, name, calls[name].Load())
		}
	}
	if b.report.Rounds != 3 || len(b.report.Rows) != 3 {
		t.Errorf("report has rounds %d and %d rows, want 3 and 3", b.report.Rounds, len(b.report.Rows))
	}
}

// TestInterleaveDrains: a call in flight when a stretch ends is never
// cancelled (a cancelled Refresh may have committed without its reply,
// and the chain's next stretch would present a reused token), and a lone
// row keeps the old behaviour of cancelling at the end.
func TestInterleaveDrains(t *testing.T) {
	for _, tc := range []struct {
		rows         int
		wantCanceled bool
	}{{rows: 2, wantCanceled: false}, {rows: 1, wantCanceled: true}} {
		b := &runner{cfg: Config{Duration: 700 * time.Millisecond, Rounds: 2}, report: &Report{}}
		var canceled atomic.Bool
		slow := func(ctx context.Context, _, _ int) error {
			select {
			case <-ctx.Done():
				canceled.Store(true)
				return ctx.Err()
			case <-time.After(300 * time.Millisecond):
				return nil
			}
		}
		rows := []row{{kind: "baseline", name: "slow", conc: 4, fn: slow}}
		if tc.rows == 2 {
			rows = append(rows, row{kind: "baseline", name: "idle", conc: 1, fn: func(context.Context, int, int) error {
				time.Sleep(time.Millisecond)
				return nil
			}})
		}
		got := b.interleave(context.Background(), rows...)
		if canceled.Load() != tc.wantCanceled {
			t.Errorf("%d rows: a call was cancelled: %v, want %v", tc.rows, canceled.Load(), tc.wantCanceled)
		}
		if got[0].Errors != 0 || got[0].Ops == 0 {
			t.Errorf("%d rows: slow row had %d calls and %d errors, want calls and no errors", tc.rows, got[0].Ops, got[0].Errors)
		}
	}
}

// TestInterleaveSkipsUnwanted: rows that --only leaves out, or that could
// not be built, are neither run nor reported.
func TestInterleaveSkipsUnwanted(t *testing.T) {
	b := &runner{cfg: Config{Duration: 100 * time.Millisecond, Only: []string{"kept"}}, report: &Report{}}
	var ran atomic.Int64
	fn := func(context.Context, int, int) error { ran.Add(1); time.Sleep(time.Millisecond); return nil }
	got := b.interleave(context.Background(),
		row{kind: "baseline", name: "kept", conc: 1, fn: fn},
		row{kind: "baseline", name: "left out", conc: 1, fn: func(context.Context, int, int) error {
			t.Error("a row --only leaves out ran")
			return nil
		}},
		row{}, // a baseline whose setup failed
	)
	if got[0].Name != "kept" || got[1].Name != "" || got[2].Name != "" || len(b.report.Rows) != 1 {
		t.Errorf("results %q, %q, %q and %d report rows; want only the kept row", got[0].Name, got[1].Name, got[2].Name, len(b.report.Rows))
	}
}

// TestPeerRatiosAreSameRun: a ratio to a peer is computed only from the
// peer's rows measured in this run; without them (no --hydra) no ratio
// names a peer.
func TestPeerRatiosAreSameRun(t *testing.T) {
	rows := []Result{
		{Name: "Introspect (10000 distinct tokens)", Kind: "scenario", PerSecond: 20000},
		{Name: "Refresh (rotation chains)", Kind: "scenario", PerSecond: 7000},
	}
	for name := range ratioValues(rows...) {
		if strings.Contains(name, "Hydra") || strings.Contains(name, "Dex") {
			t.Errorf("ratio %q without a peer row in the run", name)
		}
	}
	const intro, issue = "Introspect (distinct) / Hydra introspect", "Refresh / Hydra token issue"
	got := ratioValues(append(rows,
		Result{Name: hydraIntrospectRow, Kind: "peer", PerSecond: 1000},
		Result{Name: hydraIssueRow, Kind: "peer", PerSecond: 200})...)
	if got[intro] != 20 || got[issue] != 35 {
		t.Errorf("same-run Hydra ratios %v and %v, want 20 and 35", got[intro], got[issue])
	}
}

// TestJWTAlg: the peer check that Hydra's tokens are ES256 JWTs reads the
// alg of the header, and finds none in what is not a JWS.
func TestJWTAlg(t *testing.T) {
	for tok, want := range map[string]string{
		"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.e30.c2ln": "ES256", // {"alg":"ES256","kid":"k"}
		"eyJhbGciOiJSUzI1NiJ9.e30.c2ln":               "RS256",
		"ory_at_opaque":                               "",
		"!!!.e30.c2ln":                                "",
		"bm90IGpzb24.e30.c2ln":                        "", // "not json"
	} {
		if got := jwtAlg(tok); got != want {
			t.Errorf("jwtAlg(%q) = %q, want %q", tok, got, want)
		}
	}
}

// TestInterleaveBackground: a row's background load (the login flood) runs
// during each of that row's stretches and never during another row's.
func TestInterleaveBackground(t *testing.T) {
	b := &runner{cfg: Config{Duration: 90 * time.Millisecond, Rounds: 3}, report: &Report{}}
	var active atomic.Bool
	var starts atomic.Int64
	var seenIn, seenOut atomic.Int64 // calls of each row that saw the background running
	call := func(seen *atomic.Int64) loadFn {
		return func(context.Context, int, int) error {
			if active.Load() {
				seen.Add(1)
			}
			time.Sleep(time.Millisecond)
			return nil
		}
	}
	loaded := row{kind: "scenario", name: "during", conc: 2, fn: call(&seenIn), background: func(context.Context) func() {
		starts.Add(1)
		active.Store(true)
		return func() { active.Store(false) }
	}}
	got := b.interleave(context.Background(), row{kind: "scenario", name: "alone", conc: 2, fn: call(&seenOut)}, loaded)
	if starts.Load() != 3 {
		t.Errorf("background started %d times, want once per stretch (3)", starts.Load())
	}
	if seenOut.Load() != 0 {
		t.Errorf("%d calls of the other row ran during the background load, want 0", seenOut.Load())
	}
	if seenIn.Load() != got[1].Ops || got[1].Ops == 0 {
		t.Errorf("%d of the loaded row's %d calls saw the background load, want all", seenIn.Load(), got[1].Ops)
	}
}
