package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestUnknownFlagIsOneLine: every command answers a misspelt flag or a bad
// value with one line that names the command and, for an unknown flag, the
// closest valid one, and exits 2 without printing its usage.
func TestUnknownFlagIsOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "add", "--emial", "a@example.com", "--password-stdin"},
			"latch user add: unknown flag --emial; did you mean --email?"},
		{[]string{"admin", "--insecure", "users", "list", "--jsn"},
			"latch admin users list: unknown flag --jsn; did you mean --json?"},
		{[]string{"ext-authz", "--ext-authz-adr", "127.0.0.1:0"},
			"latch ext-authz: unknown flag --ext-authz-adr; did you mean --ext-authz-addr?"},
		{[]string{"bench", "--duraton", "1s"},
			"latch bench: unknown flag --duraton; did you mean --duration?"},
		{[]string{"bench", "--zzzzzzzz"},
			"latch bench: unknown flag --zzzzzzzz (latch bench --help lists the flags)"},
		{[]string{"bench", "--duration", "soon"},
			`latch bench: invalid value "soon" for flag -duration: parse error (latch bench --help)`},
		{[]string{"serve", "--access-ttl", "1h"},
			"--access-ttl is not a flag of latch serve: set tokens.access_ttl in the configuration file (--config) or LATCH_ACCESS_TTL"},
		{[]string{"serve", "--key-encryption-key", "x"},
			"--key-encryption-key is not a flag: a secret is read from LATCH_KEY_ENCRYPTION_KEY or the file keys.encryption_key_file names"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tc.args, env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
				getenv: func(string) string { return "" }})
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			out := stderr.String()
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
			if tc.args[0] != "serve" && strings.Count(out, "\n") != 1 {
				t.Errorf("output is %d lines, want 1:\n%s", strings.Count(out, "\n"), out)
			}
			if strings.Contains(out, "Usage") || strings.Contains(out, "Flags (") {
				t.Errorf("output holds the usage:\n%s", out)
			}
		})
	}
}

// TestServeMisspeltFlagHidesItsValue: the argument after a misspelt flag
// of serve may be a secret, whatever it starts with; it is skipped and
// never named, while serve's own flags after it are still read.
func TestServeMisspeltFlagHidesItsValue(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--etcd-pasword", "-S3cr3t!"},
		{"serve", "--etcd-pasword", "--S3cr3t!", "--log-level", "loud"},
		{"serve", "--etcd-pasword", "S3cr3t!"},
	} {
		var stderr bytes.Buffer
		code := run(t.Context(), args, env{stdin: strings.NewReader(""), stdout: &stderr, stderr: &stderr,
			getenv: func(string) string { return "" }})
		out := stderr.String()
		if code != 2 || !strings.Contains(out, "unknown flag --etcd-pasword") {
			t.Errorf("%q: exit %d, want 2 naming --etcd-pasword:\n%s", args, code, out)
		}
		if strings.Contains(out, "S3cr3t") {
			t.Errorf("%q: output names the value after the misspelt flag:\n%s", args, out)
		}
		if slices.Contains(args, "--log-level") && !strings.Contains(out, `"loud"`) {
			t.Errorf("%q: the flag after the value was not read:\n%s", args, out)
		}
	}
}
