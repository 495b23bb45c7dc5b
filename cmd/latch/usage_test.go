package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpDescribesEachCommand: `latch --help` gives every command its own
// description, next to that command and no other.
func TestHelpDescribesEachCommand(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("latch --help: exit %d", code)
	}
	// Each command's block runs from its "  latch <cmd>" line to the next.
	blocks := map[string]string{}
	var cur string
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "  latch "); ok {
			cur = strings.Fields(rest)[0]
			if cur == "user" || cur == "serve" || cur == "config" {
				cur = strings.Join(strings.Fields(rest)[:2], " ")
			}
		}
		if cur != "" {
			blocks[cur] += line + "\n"
		}
	}
	for cmd, want := range map[string]string{
		"serve [--config": "run the service",
		"serve --dev":     "demo users",
		"config example":  "complete configuration",
		"user add":        "add a user; the server must be stopped",
		"sessions":        "after restoring a backup",
		"bench":           "measure",
		"ext-authz":       "Envoy ext_authz",
		"admin":           "administer a running server",
		"version":         "print the version",
	} {
		if !strings.Contains(blocks[cmd], want) {
			t.Errorf("help for latch %s lacks %q:\n%s", cmd, want, blocks[cmd])
		}
	}
	if strings.Contains(blocks["bench"], "add a user") {
		t.Errorf("help for latch bench describes another command:\n%s", blocks["bench"])
	}
}
