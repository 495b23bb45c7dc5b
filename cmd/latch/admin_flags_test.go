package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestAdminFlagsFromEnv: connection flags come from LATCH_ADMIN_* unless
// given; a command's own flags never come from the environment; flags may
// sit among the positional arguments.
func TestAdminFlagsFromEnv(t *testing.T) {
	envs := map[string]string{
		"LATCH_ADMIN_ADDR":      "10.0.0.1:7300",
		"LATCH_ADMIN_EMAIL":     "root@example.com",
		"LATCH_ADMIN_PAGE_SIZE": "7",
		"LATCH_PAGE_SIZE":       "7",
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf connFlags
	cf.register(fs)
	pageSize := fs.Int("page-size", 100, "")
	pos, err := parseAdminFlags(fs, []string{"a", "--email", "cli@example.com", "b"}, func(k string) string { return envs[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pos, []string{"a", "b"}) {
		t.Errorf("positional = %q, want [a b]", pos)
	}
	if cf.addr != "10.0.0.1:7300" {
		t.Errorf("--addr = %q, want it from LATCH_ADMIN_ADDR", cf.addr)
	}
	if cf.email != "cli@example.com" {
		t.Errorf("--email = %q, want the command line's over LATCH_ADMIN_EMAIL", cf.email)
	}
	if *pageSize != 100 {
		t.Errorf("--page-size = %d, want the default: a command flag has no environment form", *pageSize)
	}

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf.register(fs)
	if _, err := parseAdminFlags(fs, nil, func(k string) string { return map[string]string{"LATCH_ADMIN_TIMEOUT": "soon"}[k] }); err == nil {
		t.Error("LATCH_ADMIN_TIMEOUT=soon accepted, want an error naming the variable")
	} else if !strings.Contains(err.Error(), "LATCH_ADMIN_TIMEOUT") {
		t.Errorf("error %q does not name LATCH_ADMIN_TIMEOUT", err)
	}
}
