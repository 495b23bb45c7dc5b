package bench

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/latchauth/latch/internal/password"
)

// findRow returns the first row whose name matches.
func (b *runner) findRow(match func(name string) bool) (Result, bool) {
	for _, r := range b.report.Rows {
		if match(r.Name) {
			return r, true
		}
	}
	return Result{}, false
}

// find returns the first row whose name starts with prefix.
func (b *runner) find(prefix string) (Result, bool) {
	return b.findRow(func(name string) bool { return strings.HasPrefix(name, prefix) })
}

// isIntrospectDistinct matches the cached Introspect row over distinct
// tokens, "Introspect (10000 distinct tokens)", and not the verify-cache-off
// row over the same tokens, which shares its prefix and suffix.
func isIntrospectDistinct(name string) bool {
	rest, ok := strings.CutPrefix(name, "Introspect (")
	return ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' && strings.HasSuffix(rest, " distinct tokens)")
}

// addRatio adds the ratio num/den, described by of, when both were
// measured.
func (b *runner) addRatio(name string, num, den float64, of string) {
	if num > 0 && den > 0 {
		b.report.Ratios = append(b.report.Ratios, Ratio{Name: name, Value: num / den, Of: of})
	}
}

// ratios compares every scenario with its limit, all measured in this run.
func (b *runner) ratios() {
	rate := func(prefix string) float64 {
		r, _ := b.find(prefix)
		return r.PerSecond
	}
	echo, verify := rate("raw gRPC unary echo"), rate("raw ecdsa.Verify")
	distinct, _ := b.findRow(isIntrospectDistinct)
	intro, refresh := distinct.PerSecond, rate("Refresh (rotation")
	b.addRatio("Introspect (distinct) / gRPC echo", intro, echo, "the hot mix carries the target")
	b.addRatio("Introspect (hot mix) / gRPC echo", rate("Introspect (hot"), echo, "target ≥ 0.5")
	b.addRatio("Introspect (verify cache off) / raw ecdsa.Verify (all cores)", rate("Introspect (verify cache off"), verify, "target ≥ 0.8 uncached")
	b.verifyLimitRatio()
	b.addRatio("Introspect (distinct) / Hydra introspect", intro, rate(hydraIntrospectRow), "target ≥ 10")
	b.addRatio("Refresh / raw bbolt batched commit", refresh, rate("raw bbolt"), "target ≥ 0.7")
	b.addRatio("Refresh / raw durable group commit (the store's committer)", refresh, rate("raw durable group commit"), "a trivial put per commit; a rotation rewrites pages scattered over the file, so Refresh commits cost more")
	b.addRatio("Refresh / Hydra token issue", refresh, rate(hydraIssueRow), "target ≥ 20")
	for _, r := range b.report.Rows {
		if strings.HasPrefix(r.Name, "Refresh (rotation") || (r.Kind == "scale" && strings.HasPrefix(r.Name, "Refresh,")) {
			b.addRatio(fmt.Sprintf("%s: writes per group commit", r.Name), r.StoreWrites, r.StoreCommits,
				"from the server's latch_storage_* metrics; each commit is two fsyncs")
		}
	}
	hc := float64(hashConcurrency())
	b.addRatio(fmt.Sprintf("Login / argon2id limit (raw rate × %d hash slot(s) / %d cores)", int(hc), runtime.NumCPU()),
		rate("Login"), rate("raw argon2id")*hc/float64(runtime.NumCPU()), "target ≥ 0.85")
	b.addRatio("interceptor unary / gRPC echo", rate("interceptor-protected unary"), echo, "cached verification")
	b.addRatio("raw golang-jwt / raw ecdsa.Verify", rate("raw golang-jwt"), verify, "library overhead")
	b.scaleRatios()
	for _, q := range []struct{ name, loaded, quiet, target string }{
		{"Refresh p99 during a sweep / sweeper off", "Refresh, during a sweep", "Refresh, sweeper off", "target ≤ 2"},
		{"Introspect p99 during a sweep / sweeper off", "Introspect, during a sweep", "Introspect, sweeper off", "target ≤ 2"},
		{"Introspect p99 during login flood / unloaded p99", "Introspect during login flood", "Introspect, unloaded", "target ≤ 3"},
	} {
		loaded, _ := b.find(q.loaded)
		quiet, _ := b.find(q.quiet)
		b.addRatio(q.name, loaded.P99Micros, quiet.P99Micros, q.target)
	}
	b.memoryRatio()
}

// scaleRatios adds, per RPC, the slowest scale row's rate over the fastest
// one's (target ≥ 0.8: all within 20% of each other), and the same ratio
// of the disk's scattered-rewrite baseline (the largest database's over
// the smallest one's): how much of Refresh's fall is the disk's own.
func (b *runner) scaleRatios() {
	for _, rpc := range []string{"Refresh", "Introspect"} {
		lo, hi := b.extremes(func(r Result) bool { return r.Kind == "scale" && strings.HasPrefix(r.Name, rpc+",") },
			func(r Result) float64 { return r.PerSecond })
		if lo.Name != hi.Name {
			b.addRatio(fmt.Sprintf("%s scale: slowest (%d sessions) / fastest (%d sessions)", rpc, lo.StoredSessions, hi.StoredSessions),
				lo.PerSecond, hi.PerSecond, "target ≥ 0.8")
		}
	}
	small, large := b.extremes(func(r Result) bool { return strings.HasPrefix(r.Name, "raw durable rewrite of") },
		func(r Result) float64 { return float64(r.StoredSessions) })
	if small.Name != large.Name {
		b.addRatio(fmt.Sprintf("disk: scattered-page commits, db of %d sessions / db of %d sessions", large.StoredSessions, small.StoredSessions),
			large.PerSecond, small.PerSecond, "the disk's own fall with file size: the limit under the Refresh scale ratio")
	}
}

// extremes returns the rows matching match with the lowest and the highest
// by (the first of equals); zero Results when none match.
func (b *runner) extremes(match func(Result) bool, by func(Result) float64) (lo, hi Result) {
	for _, r := range b.report.Rows {
		if !match(r) {
			continue
		}
		if lo.Name == "" || by(r) < by(lo) {
			lo = r
		}
		if hi.Name == "" || by(r) > by(hi) {
			hi = r
		}
	}
	return lo, hi
}

// floodConstMiB is the login-flood memory bound's allowance for what does
// not scale with the hash slots: the queued logins (each holds at most a
// 1 KiB request, for at most 2 s) and the transport's buffers for the
// bench's connections.
const floodConstMiB = 16.0

// FloodBoundMiB is the stated peak-RSS bound under a login flood: the RSS
// when the flood starts + hash slots × 3 × argon2id memory + floodConstMiB.
// A slot accounts for three argon2id blocks: the one being computed, the
// previous one (garbage until the collector runs; GOGC=100 lets the heap
// reach twice what is live) and freed spans not yet returned to the OS.
func FloodBoundMiB(startMiB float64, slots int, argonKiB uint32) float64 {
	return startMiB + float64(slots)*3*float64(argonKiB)/1024 + floodConstMiB
}

// memoryRatio compares the peak RSS of each login row with its bound.
func (b *runner) memoryRatio() {
	m := password.DefaultParams().Memory
	for _, prefix := range []string{"Login", "Introspect during login flood"} {
		r, ok := b.find(prefix)
		if !ok || r.ServerPeakMiB == 0 {
			continue
		}
		bound := FloodBoundMiB(r.ServerStartMiB, hashConcurrency(), m)
		b.report.FloodBoundMiB = max(b.report.FloodBoundMiB, bound)
		b.addRatio(fmt.Sprintf("%s: peak RSS / bound %.0f MiB = start %.1f + %d slot(s) × 3 × %d KiB + %.0f", prefix, bound,
			r.ServerStartMiB, hashConcurrency(), m, floodConstMiB), r.ServerPeakMiB, bound, "target ≤ 1")
	}
}

// verifyLimitRatio compares uncached Introspect with the verify limit in
// CPU time, so that it does not depend on how many cores either row got
// from a shared machine. Each uncached call verifies two tokens with ECDSA
// (the caller's credential and the target): the ratio is 2 × the CPU one
// raw verify took (the bench process's CPU over the raw row's verifies)
// over the server's CPU per call; the rest of that is gRPC, the storage
// read, decoding, GC and the kernel.
func (b *runner) verifyLimitRatio() {
	r, _ := b.find("Introspect (verify cache off")
	raw, _ := b.find("raw ecdsa.Verify")
	if r.PerSecond <= 0 || r.ServerCores <= 0 || raw.PerSecond <= 0 || raw.ClientCores <= 0 {
		return
	}
	verifyCPU := raw.ClientCores / raw.PerSecond // CPU seconds per verify
	callCPU := r.ServerCores / r.PerSecond       // server CPU seconds per call
	b.addRatio("Introspect (cache off): 2 verifies' CPU / server CPU per call", 2*verifyCPU, callCPU,
		fmt.Sprintf("target ≥ 0.8: 2 × %.1f µs / %.1f µs; the verify limit on the server's cores", verifyCPU*1e6, callCPU*1e6))
}
