package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBenchRejectsNegativeCounts: a negative --sessions, --sweep-rows or
// --rounds is
// refused with an error naming the flag, instead of being silently replaced
// by a default (--sessions by --concurrency, --sweep-rows by its automatic
// size).
func TestBenchRejectsNegativeCounts(t *testing.T) {
	for _, tc := range []struct{ flag, val string }{{"--sessions", "-5"}, {"--sessions", "0"}, {"--sweep-rows", "-7"}, {"--rounds", "-1"}} {
		var out, errOut bytes.Buffer
		e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		err := benchCmd(context.Background(), []string{tc.flag, tc.val, "--duration", "1ms", "--scale", "none", "--only", "no-such-row"}, e)
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%s %s: err %v, want an error naming %s", tc.flag, tc.val, err, tc.flag)
		}
		if out.Len() != 0 {
			t.Errorf("%s %s: a report was printed, want none:\n%s", tc.flag, tc.val, out.String())
		}
	}
}

// TestBenchStartsLatch runs `latch bench` end to end on one small row: the
// server it starts must accept the settings bench gives it.
func TestBenchStartsLatch(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cmd := exec.CommandContext(ctx, latchBinary(t), "bench", "--duration", "50ms", "--concurrency", "1", "--sessions", "2",
		"--rounds", "1", "--scale", "none", "--sweep-rows", "0", "--only", "GetJWKS")
	cmd.Env = withoutLatchEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("latch bench: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "GetJWKS") {
		t.Errorf("the report has no GetJWKS row:\n%s", out)
	}
}

// TestBenchRefusesStrayArgumentsAndReadsEnv: a positional argument is a
// usage error (exit 2, named), and a bench flag not given on the command
// line comes from its LATCH_* variable.
func TestBenchRefusesStrayArgumentsAndReadsEnv(t *testing.T) {
	var errOut bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &errOut, getenv: func(string) string { return "" }}
	if code := run(context.Background(), []string{"bench", "--duration", "1ms", "stray"}, e); code != 2 || !strings.Contains(errOut.String(), `unexpected argument "stray"`) {
		t.Errorf("latch bench stray: exit %d, stderr %q; want 2 naming the argument", code, errOut.String())
	}
	e.getenv = func(k string) string {
		if k == "LATCH_SESSIONS" {
			return "-3"
		}
		return ""
	}
	if err := benchCmd(context.Background(), []string{"--duration", "1ms", "--scale", "none", "--only", "no-such-row"}, e); err == nil || !strings.Contains(err.Error(), "--sessions -3") {
		t.Errorf("LATCH_SESSIONS=-3: err %v, want the --sessions check to see it", err)
	}
}
