package main

import (
	"errors"
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

// TestAdminArgsMayStartWithDash: a user or session id may begin with '-'
// (ids are base64url); it is a positional argument, not an unknown flag,
// wherever it sits, while a flag's value that begins with '-' stays the
// flag's and a misspelt --flag is still refused.
func TestAdminArgsMayStartWithDash(t *testing.T) {
	parse := func(args ...string) ([]string, connFlags, *stringList, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var cf connFlags
		cf.register(fs)
		var roles stringList
		fs.Var(&roles, "role", "")
		pos, err := parseAdminFlags(fs, args, func(string) string { return "" })
		return pos, cf, &roles, err
	}
	pos, cf, roles, err := parse("-zlL7LZ64_BQ8RJ1wyMFIA", "--role", "user", "--json", "--audience", "-aud", "-x")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"-zlL7LZ64_BQ8RJ1wyMFIA", "-x"}; !slices.Equal(pos, want) {
		t.Errorf("positional = %q, want %q", pos, want)
	}
	if cf.audience != "-aud" || !cf.json || !slices.Equal(roles.vals, []string{"user"}) {
		t.Errorf("flags: audience %q json %v roles %q; want -aud true [user]", cf.audience, cf.json, roles.vals)
	}
	if pos, _, _, err := parse("--", "--abc"); err != nil || !slices.Equal(pos, []string{"--abc"}) {
		t.Errorf(`"-- --abc": positional %q, err %v; want [--abc]`, pos, err)
	}
	if _, _, _, err := parse("id", "--rol", "user"); err == nil {
		t.Error("misspelt --rol accepted, want a usage error")
	}
	if _, _, _, err := parse("-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err %v, want flag.ErrHelp", err)
	}
}

// TestAdminLeadingFlags: connection flags before the command are split off
// with their values, and a boolean one (--insecure, --json) takes none, so
// the command after it is still found.
func TestAdminLeadingFlags(t *testing.T) {
	for arg, want := range map[string]bool{"--addr": true, "-timeout": true, "--email": true, "--insecure": false, "-json": false} {
		if got := flagTakesValue(arg); got != want {
			t.Errorf("flagTakesValue(%q) = %v, want %v", arg, got, want)
		}
	}
}
