package bench

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one measured row of the table.
type Result struct {
	Name        string  `json:"name"`
	Kind        string  `json:"kind"` // "baseline" or "scenario"
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50Micros   float64 `json:"p50_us"`
	P99Micros   float64 `json:"p99_us"`
	ServerCores float64 `json:"server_cpu_cores,omitempty"` // average cores the server used
	// ClientCores is the average cores this process (the load generator,
	// and for baselines the measured code itself) used over the row.
	ClientCores   float64 `json:"client_cpu_cores,omitempty"`
	ServerPeakMiB float64 `json:"server_peak_rss_mib,omitempty"`
	// ServerStartMiB is the server's RSS when the row started.
	ServerStartMiB float64 `json:"server_start_rss_mib,omitempty"`
	FirstError     string  `json:"first_error,omitempty"`
	// StoredSessions and DBSizeMiB describe the database of a scale row.
	StoredSessions int     `json:"stored_sessions,omitempty"`
	DBSizeMiB      float64 `json:"db_size_mib,omitempty"`
	// StoreCommits and StoreWrites are the server's group commits during
	// the row and the writes they carried (its latch_storage_* metrics);
	// rows that run side by side (the sweep rows) count the same commits.
	StoreCommits float64 `json:"store_commits,omitempty"`
	StoreWrites  float64 `json:"store_writes,omitempty"`
}

// errStop ends a worker early without counting an error (out of input).
var errStop = errors.New("stop")

// load runs fn from conc goroutines for dur and measures every call.
func load(ctx context.Context, name string, dur time.Duration, conc int, fn func(ctx context.Context, worker int, i int) error) Result {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				t0 := time.Now()
				err := fn(ctx, w, i)
				d := time.Since(t0)
				if err != nil && (ctx.Err() != nil || time.Until(deadline) < 100*time.Millisecond) {
					return // cut off by the end of the run, not a failure
				}
				if errors.Is(err, errStop) {
					return
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ops.Add(1)
				lats[w] = append(lats[w], d)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	all := slices.Concat(lats...)
	slices.Sort(all)
	r := Result{Name: name, Ops: ops.Load(), Errors: errs.Load(), Seconds: elapsed, PerSecond: float64(ops.Load()) / elapsed}
	if len(all) > 0 {
		r.P50Micros = float64(all[len(all)/2]) / 1e3
		r.P99Micros = float64(all[len(all)*99/100]) / 1e3
	}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	return r
}
