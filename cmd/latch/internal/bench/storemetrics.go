package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// storeCount is the server's group-commit counts at one moment.
type storeCount struct{ commits, writes float64 }

// storeCounts reads latch_storage_commits_total and
// latch_storage_commit_writes_total from the server's /metrics.
func storeCounts(ctx context.Context, httpAddr string) (storeCount, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return storeCount{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return storeCount{}, fmt.Errorf("read server metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return storeCount{}, fmt.Errorf("read server metrics: %s", resp.Status)
	}
	return parseStoreCounts(bufio.NewScanner(resp.Body))
}

// parseStoreCounts finds the two counters in Prometheus text format.
func parseStoreCounts(sc *bufio.Scanner) (storeCount, error) {
	var c storeCount
	found := 0
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		var dst *float64
		switch {
		case !ok:
			continue
		case name == "latch_storage_commits_total":
			dst = &c.commits
		case name == "latch_storage_commit_writes_total":
			dst = &c.writes
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return storeCount{}, fmt.Errorf("server metric %s: %w", name, err)
		}
		*dst = v
		found++
	}
	if err := sc.Err(); err != nil {
		return storeCount{}, err
	}
	if found != 2 {
		return storeCount{}, fmt.Errorf("server metrics lack latch_storage_commits_total or latch_storage_commit_writes_total")
	}
	return c, nil
}
