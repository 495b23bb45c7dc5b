package bench

import (
	"testing"
	"time"
)

// TestLagOf: the lag percentiles are order statistics of the samples, in
// milliseconds, whatever order the samples came in.
func TestLagOf(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // 1 ms … 100 ms, last first
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := lagOf("x", ds)
	want := Lag{Name: "x", Count: 100, P50Ms: 51, P99Ms: 100, MaxMs: 100}
	if got != want {
		t.Errorf("lagOf = %+v, want %+v", got, want)
	}
	if got := lagOf("none", nil); got != (Lag{Name: "none"}) {
		t.Errorf("lagOf(nil) = %+v, want only the name", got)
	}
}
