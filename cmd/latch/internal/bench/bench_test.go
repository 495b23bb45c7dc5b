package bench

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
)

// TestPrepareAndCountSwept: prepare stores what the rows rely on (live
// sessions with valid tokens, filler, expired sessions in sweep order), and
// countSwept finds exactly how many the sweeper has deleted.
func TestPrepareAndCountSwept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := filepath.Join(t.TempDir(), "b.db")
	fx, err := prepare(ctx, db, population{live: 5, filler: 40, expired: 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.access) != 5 || len(fx.refresh) != 5 || len(fx.expired) != 30 || fx.caller == "" || fx.orders == "" {
		t.Fatalf("fixture: %d access, %d refresh, %d expired", len(fx.access), len(fx.refresh), len(fx.expired))
	}
	st, err := bolt.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.ListSigningKeys(ctx)
	if err != nil || len(keys) == 0 {
		t.Fatalf("signing keys: %v", err)
	}
	pub, err := tokens.ParsePublicKey(keys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := tokens.NewKeySet(pub)
	v, _ := tokens.NewVerifier(set, benchIssuer, []string{benchAudience})
	// The introspect caller's token is for Latch's own audience, the issuer.
	self, _ := tokens.NewVerifier(set, benchIssuer, []string{benchIssuer})
	for i, at := range append(fx.access, fx.caller) {
		verifier := v
		if i == len(fx.access) {
			verifier = self
		}
		c, err := verifier.Verify(ctx, at)
		if err != nil {
			t.Fatalf("prepared token does not verify: %v", err)
		}
		if _, err := st.GetSession(ctx, c.SessionID); err != nil {
			t.Fatalf("session of a prepared token: %v", err)
		}
	}
	n, err := st.CountLiveSessions(ctx, time.Now())
	if err != nil || n != 5+2+40 {
		t.Fatalf("live sessions = %d, %v; want 47", n, err)
	}
	r, err := st.DeleteExpired(ctx, time.Now(), 12)
	if err != nil || r.Deleted != 12 {
		t.Fatalf("DeleteExpired = %+v, %v", r, err)
	}
	st.Close()
	if got, err := countSwept(ctx, db, fx.expired); err != nil || got != 12 {
		t.Fatalf("countSwept = %d, %v; want 12", got, err)
	}
}

func TestFloodBound(t *testing.T) {
	if got := FloodBoundMiB(20, 1, 19456); got != 20+3*19+16 {
		t.Fatalf("FloodBoundMiB = %v", got)
	}
}

// TestRatiosUseTheirOwnRows checks that each ratio is computed from the row
// it names: with --only selecting the verify-cache-off Introspect row but
// not the cached distinct-token row (their names share the prefix
// "Introspect (" and the suffix "distinct tokens)"), or a scale row but not
// the Refresh scenario, no ratio is computed from the wrong row.
func TestRatiosUseTheirOwnRows(t *testing.T) {
	echo := Result{Name: "raw gRPC unary echo", Kind: "baseline", PerSecond: 1000}
	batch := Result{Name: "raw bbolt durable Batch commit", Kind: "baseline", PerSecond: 1000}
	uncached := Result{Name: "Introspect (verify cache off, 10000 distinct tokens)", Kind: "scenario", PerSecond: 100}
	scale := Result{Name: "Refresh, 10000 stored sessions (db 16 MiB)", Kind: "scale", PerSecond: 300}

	got := ratioValues(echo, batch, uncached, scale)
	for name := range got {
		if strings.HasPrefix(name, "Introspect (distinct)") || strings.HasPrefix(name, "Refresh / ") {
			t.Errorf("ratio %q computed without its row (from %v)", name, got)
		}
	}

	distinct := Result{Name: "Introspect (10000 distinct tokens)", Kind: "scenario", PerSecond: 700}
	refresh := Result{Name: "Refresh (rotation chains)", Kind: "scenario", PerSecond: 500}
	got = ratioValues(echo, batch, uncached, scale, distinct, refresh)
	if v := got["Introspect (distinct) / gRPC echo"]; v != 0.7 {
		t.Errorf("Introspect (distinct) / gRPC echo = %v, want 0.7 (from the cached row)", v)
	}
	if v := got["Refresh / raw bbolt batched commit"]; v != 0.5 {
		t.Errorf("Refresh / raw bbolt batched commit = %v, want 0.5 (from the scenario row)", v)
	}
}

// TestVerifyLimitRatioIsCPUTime: the uncached Introspect ratio divides CPU
// time by CPU time, so a raw row that got one core of two (a shared
// machine) gives the same answer as one that got both.
func TestVerifyLimitRatioIsCPUTime(t *testing.T) {
	value := func(rawRate, rawCores float64) float64 {
		b := &runner{report: &Report{Rows: []Result{
			{Name: "raw ecdsa.Verify P-256", Kind: "baseline", PerSecond: rawRate, ClientCores: rawCores},
			{Name: "Introspect (verify cache off, 10000 distinct tokens)", Kind: "scenario", PerSecond: 8000, ServerCores: 1.0},
		}}}
		b.ratios()
		for _, r := range b.report.Ratios {
			if strings.HasPrefix(r.Name, "Introspect (cache off): 2 verifies") {
				return r.Value
			}
		}
		t.Fatal("no verify-limit ratio")
		return 0
	}
	// 40,000 verifies/s on 2 cores = 50 µs each; 8,000 calls/s on 1 core =
	// 125 µs per call: 2 × 50 / 125 = 0.8.
	all, half := value(40000, 2), value(20000, 1)
	if math.Abs(all-0.8) > 1e-9 || math.Abs(half-0.8) > 1e-9 {
		t.Errorf("ratio %v with the raw row on 2 cores, %v on 1; want 0.8 for both", all, half)
	}
}

// TestScatterBaselineRatio: the disk ratio divides the largest database's
// scattered-commit rate by the smallest one's, whatever the row order, and
// is absent with a single size.
func TestScatterBaselineRatio(t *testing.T) {
	row := func(sessions int, rate float64) Result {
		return Result{Name: "raw durable rewrite of 48 scattered pages, " + strings.Repeat("x", sessions%7), Kind: "baseline",
			PerSecond: rate, StoredSessions: sessions}
	}
	value := func(rows ...Result) (float64, bool) {
		b := &runner{report: &Report{Rows: rows}}
		b.ratios()
		for _, r := range b.report.Ratios {
			if strings.HasPrefix(r.Name, "disk: scattered-page commits") {
				return r.Value, true
			}
		}
		return 0, false
	}
	if v, ok := value(row(1000000, 400), row(10000, 1600), row(100000, 1000)); !ok || math.Abs(v-0.25) > 1e-9 {
		t.Errorf("ratio = %v, %v; want 0.25 (1M over 10k)", v, ok)
	}
	if _, ok := value(row(10000, 1600)); ok {
		t.Error("a ratio from a single database size")
	}
}

// TestParseStoreCounts: the two counters are read from Prometheus text
// format among others; a server without them is an error, not zeros.
func TestParseStoreCounts(t *testing.T) {
	text := `# HELP latch_storage_commits_total Group commits.
# TYPE latch_storage_commits_total counter
latch_storage_commits_total 1234
latch_storage_commit_waits_total{outcome="filled"} 7
latch_storage_commit_writes_total 17276
latch_storage_pages_written_total 50000
`
	c, err := parseStoreCounts(strings.NewReader(text))
	if err != nil || c != (storeCount{commits: 1234, writes: 17276}) {
		t.Fatalf("parseStoreCounts = %+v, %v; want 1234 commits, 17276 writes", c, err)
	}
	for _, bad := range []string{"latch_storage_commits_total 3\n", "latch_storage_commits_total x\nlatch_storage_commit_writes_total 1\n"} {
		if c, err := parseStoreCounts(strings.NewReader(bad)); err == nil {
			t.Errorf("parseStoreCounts(%q) = %+v, want an error", bad, c)
		}
	}
}

// TestWritesPerCommitRatio: the Refresh rows' group sizes are reported
// from the counts their rows recorded; rows without counts add nothing.
func TestWritesPerCommitRatio(t *testing.T) {
	b := &runner{report: &Report{Rows: []Result{
		{Name: "Refresh (rotation chains)", Kind: "scenario", PerSecond: 100, StoreCommits: 50, StoreWrites: 700},
		{Name: "Refresh, 10000 stored sessions (db 8 MiB)", Kind: "scale", PerSecond: 100, StoreCommits: 10, StoreWrites: 120},
		{Name: "Introspect, 10000 stored sessions (db 8 MiB)", Kind: "scale", PerSecond: 100},
	}}}
	b.ratios()
	got := map[string]float64{}
	for _, r := range b.report.Ratios {
		got[r.Name] = r.Value
	}
	if got["Refresh (rotation chains): writes per group commit"] != 14 || got["Refresh, 10000 stored sessions (db 8 MiB): writes per group commit"] != 12 {
		t.Fatalf("ratios %v; want 14 and 12 writes per commit", got)
	}
	for name := range got {
		if strings.HasPrefix(name, "Introspect,") {
			t.Errorf("ratio %q from a row without store counts", name)
		}
	}
}

// ratioValues computes the ratios of a report holding rows, by name.
func ratioValues(rows ...Result) map[string]float64 {
	b := &runner{report: &Report{Rows: rows}}
	b.ratios()
	got := map[string]float64{}
	for _, r := range b.report.Ratios {
		got[r.Name] = r.Value
	}
	return got
}
