package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/latchauth/latch/cmd/latch/internal/bench"
)

func benchCmd(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("latch bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dur := fs.Duration("duration", 10*time.Second, "how long each row runs")
	conc := fs.Int("concurrency", 32, "concurrent callers per row")
	sessions := fs.Int("sessions", 10000, "live sessions (and distinct access tokens) stored before the run")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	only := fs.String("only", "", "comma-separated substrings: run only the rows whose name contains one")
	fs.Usage = usageFunc(fs, "Usage: latch bench [flags]\n\nStarts Latch (this binary) on a temporary database and loopback listeners, runs each\nscenario and the raw baselines it is bounded by, and prints a table with ratios.\nNumbers are for this machine, now: compare ratios, not absolute rates.")
	if err := parseFlags(fs, args, e.getenv); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the latch binary: %w", err)
	}
	cfg := bench.Config{Binary: self, Duration: *dur, Concurrency: *conc, Sessions: max(*sessions, *conc), Progress: e.stderr}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	report, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	report.Print(e.stdout)
	var failed []string
	for _, r := range report.Rows {
		if r.Errors > 0 {
			failed = append(failed, r.Name)
		}
	}
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := report.WriteJSON(f); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rows with errors: %s", strings.Join(failed, "; "))
	}
	return nil
}
