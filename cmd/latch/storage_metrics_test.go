package main

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/bolt/groupcommit"
)

// TestStorageMetricsDescribeWhatTheyCollect registers the storage metrics
// with a pedantic registry, which refuses a collector that sends a metric
// it did not describe, and checks each value read at the scrape.
func TestStorageMetricsDescribeWhatTheyCollect(t *testing.T) {
	stats := bolt.WriteStats{Stats: groupcommit.Stats{Commits: 2, Writes: 5}, PagesWritten: 7, WriteTime: 1500 * time.Millisecond}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(newStorageMetrics(func() bolt.WriteStats { return stats })); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
	}
	want := map[string]float64{"latch_storage_commits_total": 2, "latch_storage_commit_writes_total": 5,
		"latch_storage_pages_written_total": 7, "latch_storage_write_seconds_total": 1.5}
	if len(got) != len(want) {
		t.Errorf("gathered %v, want %v", got, want)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}
