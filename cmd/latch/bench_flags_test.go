package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
