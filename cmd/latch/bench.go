package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/latchauth/latch/cmd/latch/internal/bench"
)

func benchCmd(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("latch bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dur := fs.Duration("duration", 10*time.Second, "how long each row runs")
	conc := fs.Int("concurrency", 32, "concurrent callers per row")
	sessions := fs.Int("sessions", 10000, "live sessions (and distinct access tokens) stored before the run (1000 by default with the etcd rows, where they are created one by one through the store)")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	only := fs.String("only", "", "comma-separated substrings: run only the rows whose name contains one")
	scale := fs.String("scale", "auto", "comma-separated database sizes (stored sessions) for the scale rows, or none; auto is 10000,100000,1000000 (1000,2000,4000 when --duration is under 1s, as in the CI smoke run)")
	hydra := fs.String("hydra", "", "an Ory Hydra binary built with SQLite support (docs/performance.md): runs it next to Latch and measures its token issue and introspection in the same run")
	rounds := fs.Int("rounds", 0, "turns each row of an interleaved group takes (a scenario and the limits it is compared with; the scale rows of one RPC): 0 is one per second of --duration, at most 5; 1 runs every row in one piece, one after another")
	sweepRows := fs.Int("sweep-rows", -1, "expired sessions the sweeper deletes during the sweep rows (0 skips them; default 40,000 per second of --duration, at least 2,000, at most 1,000,000)")
	useEtcd := fs.Bool("etcd", false, "run the etcd rows instead: three latch serve replicas on a three-member etcd cluster the bench starts on loopback (the etcd binary in $LATCH_ETCD, else etcd on $PATH), Refresh, Introspect and Revoke on one replica and on three next to a raw etcd Txn of each one's shape, and the revocation lag across replicas")
	var endpoints stringList
	fs.Var(&endpoints, "etcd-endpoints", "run the etcd rows on this etcd cluster instead of starting one: http:// client URLs, comma-separated or repeated (a test cluster: the bench writes synthetic data under a fresh prefix and deletes it at the end)")
	lagRevocations := fs.Int("lag-revocations", 1000, "revocations the etcd rows' lag percentiles are taken over")
	fs.Usage = usageWithEnv(fs, "Usage: latch bench [flags]\n\nStarts Latch (this binary) on a temporary database and loopback listeners, runs each\nscenario and the raw baselines it is bounded by, and prints a table with ratios.\nWith --etcd or --etcd-endpoints it runs Latch replicas on etcd instead.\nNumbers are for this machine, now: compare ratios, not absolute rates.", benchEnvName)
	if err := parseFlags(fs, args, e.getenv, benchEnvName); err != nil {
		return err
	}
	etcdMode, err := benchEtcdMode(*useEtcd, endpoints.vals, *lagRevocations, e.getenv)
	if err != nil {
		return err
	}
	if *sessions < 1 {
		return fmt.Errorf("--sessions %d must be positive", *sessions)
	}
	if *rounds < 0 {
		return fmt.Errorf("--rounds %d must not be negative (0 picks one turn per second of --duration)", *rounds)
	}
	if *sweepRows < -1 {
		return fmt.Errorf("--sweep-rows %d must not be negative (0 skips the sweep rows)", *sweepRows)
	}
	if etcdMode.on {
		for _, name := range []string{"scale", "sweep-rows", "hydra"} {
			if flagGiven(fs, name) {
				return fmt.Errorf("--%s belongs to the bbolt rows; the etcd rows (--etcd, --etcd-endpoints) have no such row", name)
			}
		}
		if !flagGiven(fs, "sessions") {
			*sessions = etcdSessions
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the latch binary: %w", err)
	}
	cfg := bench.Config{Binary: self, Duration: *dur, Concurrency: *conc, Sessions: max(*sessions, *conc), Rounds: *rounds, Hydra: *hydra, Progress: e.stderr,
		Etcd: etcdMode.on, EtcdBinary: etcdMode.binary, EtcdEndpoints: endpoints.vals, LagRevocations: *lagRevocations}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if cfg.Scale, err = scaleSizes(*scale, *dur); err != nil {
		return err
	}
	cfg.SweepRows = *sweepRows
	if cfg.SweepRows < 0 {
		cfg.SweepRows = min(max(int(40000*dur.Seconds()), 2000), 1_000_000)
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
	for _, l := range report.Lags {
		if l.ActiveAfterAck != nil && *l.ActiveAfterAck > 0 {
			// Every revocation check reads through the store's quorum, so
			// a token answered active after its Revoke returned is a fault.
			failed = append(failed, fmt.Sprintf("%s (%d tokens answered active after their Revoke returned)", l.Name, *l.ActiveAfterAck))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rows with errors: %s", strings.Join(failed, "; "))
	}
	return nil
}

// etcdSessions is --sessions for the etcd rows when it is not given.
const etcdSessions = 1000

// flagGiven reports whether the flag name was set on the command line or
// from its environment variable.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// benchEnvName is the environment variable of each bench flag: envName,
// except for the etcd mode's flags, which have none: LATCH_ETCD names the
// etcd binary and LATCH_ETCD_ENDPOINTS the cluster `latch serve` uses, and
// neither may turn the bench on a cluster by accident.
func benchEnvName(flagName string) string {
	switch flagName {
	case "etcd", "etcd-endpoints":
		return ""
	}
	return envName(flagName)
}

// etcdMode is what the etcd flags of `latch bench` ask for.
type etcdMode struct {
	on     bool
	binary string // the etcd to start; empty with endpoints
}

// benchEtcdMode checks the etcd flags: --etcd or --etcd-endpoints (http://
// URLs), not both, and a positive --lag-revocations; with --etcd it finds
// the etcd binary ($LATCH_ETCD, else etcd on $PATH).
func benchEtcdMode(start bool, endpoints []string, lag int, getenv func(string) string) (etcdMode, error) {
	if lag < 1 {
		return etcdMode{}, fmt.Errorf("--lag-revocations %d must be positive", lag)
	}
	if start && len(endpoints) > 0 {
		return etcdMode{}, errors.New("--etcd starts a cluster and --etcd-endpoints uses one: give one of them")
	}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return etcdMode{}, fmt.Errorf("--etcd-endpoints %q: want http://host:port (the bench speaks plaintext to a test cluster)", ep)
		}
	}
	if !start {
		return etcdMode{on: len(endpoints) > 0}, nil
	}
	if p := getenv("LATCH_ETCD"); p != "" {
		return etcdMode{on: true, binary: p}, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return etcdMode{}, errors.New("--etcd: no etcd on $PATH; install it (e.g. `apt-get install etcd-server`) or set LATCH_ETCD to an etcd binary")
	}
	return etcdMode{on: true, binary: p}, nil
}

// scaleSizes parses --scale.
func scaleSizes(v string, dur time.Duration) ([]int, error) {
	switch v {
	case "none", "":
		return nil, nil
	case "auto":
		if dur < time.Second {
			return []int{1000, 2000, 4000}, nil
		}
		return []int{10_000, 100_000, 1_000_000}, nil
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--scale: %q is not a positive number of sessions", f)
		}
		out = append(out, n)
	}
	return out, nil
}
