package bench

import (
	"fmt"
	"runtime"
	"strings"
)

// Peer rates on this machine class, from issue 8 (32 concurrent HTTP
// clients): published reference points, not measured by this tool.
const (
	hydraIntrospect = 2300.0
	dexIntrospect   = 10000.0
	dexIssue        = 10800.0
	hydraIssueHigh  = 1400.0
)

func (b *runner) find(prefix string) (Result, bool) {
	for _, r := range b.report.Rows {
		if strings.HasPrefix(r.Name, prefix) {
			return r, true
		}
	}
	return Result{}, false
}

// ratios compares every scenario with its limit, all measured in this run.
func (b *runner) ratios() {
	add := func(name string, num, den float64, of string) {
		if num > 0 && den > 0 {
			b.report.Ratios = append(b.report.Ratios, Ratio{Name: name, Value: num / den, Of: of})
		}
	}
	rate := func(prefix string) float64 {
		r, _ := b.find(prefix)
		return r.PerSecond
	}
	echo, verify := rate("raw gRPC unary echo"), rate("raw ecdsa.Verify")
	jwtRate, argon, batch := rate("raw golang-jwt"), rate("raw argon2id"), rate("raw bbolt")
	intro, hot := rate("Introspect ("), rate("Introspect (hot")
	add("Introspect (distinct) / gRPC echo", intro, echo, "target ≥ 0.6 with the hot mix")
	add("Introspect (hot mix) / gRPC echo", hot, echo, "target ≥ 0.6")
	add("Introspect (verify cache off) / raw ecdsa.Verify (all cores)", rate("Introspect (verify cache off"), verify, "target ≥ 0.8 uncached")
	add("Introspect (distinct) / Hydra introspect 2,300/s", intro, hydraIntrospect, "target ≥ 10")
	add("Introspect (distinct) / Dex introspect 10,000/s", intro, dexIntrospect, "target ≥ 2")
	refresh := rate("Refresh")
	add("Refresh / raw bbolt batched commit", refresh, batch, "target ≥ 0.7")
	add("Refresh / raw durable group commit (the store's committer)", refresh, rate("raw durable group commit"), "commit limit; below it Refresh is CPU-bound")
	add("Refresh / Dex non-durable issue 10,800/s", refresh, dexIssue, "target ≥ 1")
	add("Refresh / Hydra issue 1,400/s", refresh, hydraIssueHigh, "target ≥ 7")
	hc := float64(hashConcurrency())
	add(fmt.Sprintf("Login / argon2id limit (raw rate × %d hash slot(s) / %d cores)", int(hc), runtime.NumCPU()),
		rate("Login"), argon*hc/float64(runtime.NumCPU()), "target ≥ 0.9")
	add("interceptor unary / gRPC echo", rate("interceptor-protected unary"), echo, "cached verification")
	add("raw golang-jwt / raw ecdsa.Verify", jwtRate, verify, "library overhead")
	if quiet, ok := b.find("Introspect, unloaded"); ok {
		if loud, ok := b.find("Introspect during login flood"); ok {
			add("Introspect p99 during login flood / unloaded p99", loud.P99Micros, quiet.P99Micros, "target ≤ 3")
		}
	}
}
