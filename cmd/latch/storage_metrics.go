package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchauth/latch/storage/bolt"
)

// writeStatser is a store that counts its writes (the bbolt one).
type writeStatser interface {
	WriteStats() bolt.WriteStats
}

// storageMetrics exports a bbolt store's write counts: how its group
// commit groups the writes, and what bbolt's commits cost the disk. Read
// at scrape time, once per scrape.
type storageMetrics struct {
	stats func() bolt.WriteStats

	commits, writes, pages, writeTime *prometheus.Desc
}

func newStorageMetrics(stats func() bolt.WriteStats) *storageMetrics {
	return &storageMetrics{
		stats: stats,
		commits: prometheus.NewDesc("latch_storage_commits_total",
			"Group commits of the bbolt store's writes (sessions, rotations, revocations): one fsynced transaction each.", nil, nil),
		writes: prometheus.NewDesc("latch_storage_commit_writes_total",
			"Writes those group commits carried; divided by latch_storage_commits_total, the mean group size.", nil, nil),
		pages: prometheus.NewDesc("latch_storage_pages_written_total",
			"Pages bbolt wrote, in every write transaction.", nil, nil),
		writeTime: prometheus.NewDesc("latch_storage_write_seconds_total",
			"Time bbolt spent writing pages and fsyncing them, in every write transaction.", nil, nil),
	}
}

// Describe implements prometheus.Collector with the descriptors of what
// Collect sends.
func (m *storageMetrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

// Collect implements prometheus.Collector.
func (m *storageMetrics) Collect(ch chan<- prometheus.Metric) {
	st := m.stats()
	ch <- prometheus.MustNewConstMetric(m.commits, prometheus.CounterValue, float64(st.Commits))
	ch <- prometheus.MustNewConstMetric(m.writes, prometheus.CounterValue, float64(st.Writes))
	ch <- prometheus.MustNewConstMetric(m.pages, prometheus.CounterValue, float64(st.PagesWritten))
	ch <- prometheus.MustNewConstMetric(m.writeTime, prometheus.CounterValue, st.WriteTime.Seconds())
}
