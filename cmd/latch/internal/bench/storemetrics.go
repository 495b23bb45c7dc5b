package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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
	return parseStoreCounts(resp.Body)
}

// parseStoreCounts finds the two counters in Prometheus text format.
func parseStoreCounts(r io.Reader) (storeCount, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return storeCount{}, fmt.Errorf("server metrics: %w", err)
	}
	var c storeCount
	for name, dst := range map[string]*float64{"latch_storage_commits_total": &c.commits, "latch_storage_commit_writes_total": &c.writes} {
		ms := families[name].GetMetric()
		if len(ms) != 1 {
			return storeCount{}, fmt.Errorf("server metrics lack %s", name)
		}
		*dst = ms[0].GetCounter().GetValue() + ms[0].GetUntyped().GetValue() // one of them is set
	}
	return c, nil
}
