package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/storage/etcd/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// benchEtcdArgs are the flags of a tiny `latch bench` etcd run: a fraction
// of a second per row and a few revocations, so that the test checks that
// every row and percentile is produced, not how fast anything is.
var benchEtcdArgs = []string{"bench", "--duration", "200ms", "--concurrency", "2", "--sessions", "4", "--rounds", "1", "--lag-revocations", "20"}

// checkBenchEtcdReport fails t unless out holds every etcd row (each RPC on
// one and three replicas next to its raw Txn), the lag percentiles over
// the revocations asked for, and the CPU ratio.
func checkBenchEtcdReport(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{
		"Refresh (etcd, 1 replica)", "Refresh (etcd, 3 replicas)", "raw etcd Txn, Refresh shape",
		"Introspect (etcd, 1 replica)", "Introspect (etcd, 3 replicas)", "raw etcd Txn, Introspect shape",
		"Revoke (etcd, 1 replica)", "Revoke (etcd, 3 replicas)", "raw etcd Txn, Revoke shape",
		"Introspect (etcd, 3 replicas, 2 calls each)",
		"server CPU per Introspect, 3 replicas / 1, same load per replica",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q:\n%s", want, out)
		}
	}
	for _, lag := range []string{"Revoke on A → Introspect inactive on B", "Revoke on A → WatchRevocations event on C"} {
		re := regexp.MustCompile(regexp.QuoteMeta(lag) + `\s+20\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s`)
		if !re.MatchString(out) {
			t.Errorf("the report has no lag line %q over 20 revocations with p50, p99 and max:\n%s", lag, out)
		}
	}
	// No token may be answered active by B once A has acknowledged its
	// revocation: every check reads through the cluster's quorum.
	if !regexp.MustCompile(`Introspect inactive on B\s+20(\s+[0-9.]+){3}\s+0\n`).MatchString(out) {
		t.Errorf("want 0 tokens answered active after the Revoke's reply:\n%s", out)
	}
	if strings.Contains(out, "note:") {
		t.Errorf("the report notes errors:\n%s", out)
	}
}

// TestBenchEtcdOwnCluster runs `latch bench --etcd` end to end: it starts
// its own three-member etcd cluster and three Latch replicas on it, and
// reports the etcd rows and the revocation lag without errors.
func TestBenchEtcdOwnCluster(t *testing.T) {
	bin := etcdtest.Require(t)
	ctx := testCtx(t, 3*time.Minute)
	cmd := exec.CommandContext(ctx, latchBinary(t), append(benchEtcdArgs, "--etcd")...)
	cmd.Env = append(withoutLatchEnv(), "LATCH_ETCD="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("latch bench --etcd: %v\n%s", err, out)
	}
	checkBenchEtcdReport(t, string(out))
}

// TestBenchEtcdGivenCluster runs `latch bench --etcd-endpoints` against a
// cluster it did not start: the rows run there, and the bench removes
// every key it wrote (its Latch prefix and its raw rows') and every lease
// it made, so that a cluster lent to it is left as it was found.
func TestBenchEtcdGivenCluster(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	ctx := testCtx(t, 3*time.Minute)
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/other/app", "kept"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, latchBinary(t), append(benchEtcdArgs, "--etcd-endpoints", strings.Join(c.Endpoints(), ","))...)
	cmd.Env = withoutLatchEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("latch bench --etcd-endpoints: %v\n%s", err, out)
	}
	checkBenchEtcdReport(t, string(out))
	resp, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	if len(keys) != 1 || keys[0] != "/other/app" {
		t.Errorf("keys left in the cluster after the bench: %q, want only /other/app", keys)
	}
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 0 {
		t.Errorf("%d leases left in the cluster after the bench, want none", len(leases.Leases))
	}
}

// TestBenchEtcdFlags: the etcd mode's flags are checked before anything
// starts, with a message naming the flag.
func TestBenchEtcdFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd", "--lag-revocations", "0"}, "--lag-revocations"},
		{[]string{"--etcd-endpoints", "not a url"}, "--etcd-endpoints"},
		{[]string{"--etcd-endpoints", "ftp://127.0.0.1:2379"}, "--etcd-endpoints"},
		{[]string{"--etcd", "--etcd-endpoints", "http://127.0.0.1:2379"}, "--etcd-endpoints"},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379", "--hydra", "/bin/hydra"}, "--hydra"},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379", "--scale", "1000"}, "--scale"},
	} {
		var out, errOut strings.Builder
		e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		err := benchCmd(context.Background(), append(tc.args, "--duration", "1ms"), e)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want an error naming %s", tc.args, err, tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("%q: a report was printed, want none:\n%s", tc.args, out.String())
		}
	}
}

// TestBenchEtcdIgnoresServeEnv: LATCH_ETCD names the etcd binary and
// LATCH_ETCD_ENDPOINTS configures `latch serve`; neither turns the bench's
// etcd mode on or points it at a cluster.
func TestBenchEtcdIgnoresServeEnv(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cmd := exec.CommandContext(ctx, latchBinary(t), "bench", "--duration", "50ms", "--concurrency", "1", "--sessions", "2",
		"--rounds", "1", "--scale", "none", "--sweep-rows", "0", "--only", "GetJWKS")
	cmd.Env = append(withoutLatchEnv(), "LATCH_ETCD=/usr/bin/etcd", "LATCH_ETCD_ENDPOINTS=not a url")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("latch bench with LATCH_ETCD and LATCH_ETCD_ENDPOINTS set: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "GetJWKS") || strings.Contains(string(out), "etcd") {
		t.Errorf("want the bbolt GetJWKS row and no etcd rows:\n%s", out)
	}
}
