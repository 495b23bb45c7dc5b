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
	ServerCores float64 `json:"server_cpu_cores,omitempty"` // average cores the server used (all the row's replicas together)
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

// sample is the raw measurement of one stretch of load: what load and
// interleave add up before they turn it into a Result.
type sample struct {
	ops, errs int64
	seconds   float64
	lats      []time.Duration
	firstErr  string
}

// add appends o's calls to s.
func (s *sample) add(o sample) {
	s.ops += o.ops
	s.errs += o.errs
	s.seconds += o.seconds
	s.lats = append(s.lats, o.lats...)
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
}

// result summarises s as a table row: the rate over all its seconds, and
// the latency percentiles over all its calls.
func (s sample) result(name string) Result {
	r := Result{Name: name, Ops: s.ops, Errors: s.errs, Seconds: s.seconds, FirstError: s.firstErr}
	if s.seconds > 0 {
		r.PerSecond = float64(s.ops) / s.seconds
	}
	if len(s.lats) > 0 {
		all := slices.Clone(s.lats)
		slices.Sort(all)
		r.P50Micros = float64(all[len(all)/2]) / 1e3
		r.P99Micros = float64(all[len(all)*99/100]) / 1e3
	}
	return r
}

// drainGrace bounds how long a drained stretch waits for its calls in
// flight (runLoad with drain).
const drainGrace = 30 * time.Second

// runLoad runs fn from conc goroutines for dur and measures every call.
// Worker w's calls are numbered from next[w] on (nil: from 0), and next
// is left at the number its next call would have, so that a row measured
// in several stretches goes on where it stopped.
//
// Without drain, the calls still running at dur are cancelled, and their
// errors are not counted (cut off by the end, not failures). With drain,
// no call is cancelled: at dur the workers stop starting calls and the
// stretch ends when the last one returns (within drainGrace). A stretch
// that is followed by another of the same row must drain: a Refresh cut
// off after its commit but before its reply leaves the chain holding a
// rotated token, which the next stretch would present as a reuse.
func runLoad(ctx context.Context, dur time.Duration, conc int, next []int, drain bool, fn func(ctx context.Context, worker int, i int) error) sample {
	callTimeout := dur
	if drain {
		callTimeout += drainGrace
	}
	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	deadline := time.Now().Add(dur)
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		first := 0
		if w < len(next) {
			first = next[w]
		}
		wg.Go(func() {
			i := first
			defer func() {
				if w < len(next) {
					next[w] = i
				}
			}()
			for ; callCtx.Err() == nil && time.Now().Before(deadline); i++ {
				t0 := time.Now()
				err := fn(callCtx, w, i)
				d := time.Since(t0)
				if err != nil && !drain && (callCtx.Err() != nil || time.Until(deadline) < 100*time.Millisecond) {
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
	s := sample{ops: ops.Load(), errs: errs.Load(), seconds: time.Since(start).Seconds(), lats: slices.Concat(lats...)}
	if e, ok := firstErr.Load().(string); ok {
		s.firstErr = e
	}
	return s
}
