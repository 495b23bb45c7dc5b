package main

import (
	"context"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// serveCommand is `latch serve` with args, in which the tests name any
// setting as --id (the tail of its LATCH_* variable): the few that are
// flags stay flags, every other one is passed in its environment variable
// (a repeated one comma-joined, a boolean without a value as true). When
// args set no issuer, LATCH_ISSUER is https://latch.test.
func serveCommand(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	flags, env := serveArgsToEnv(t, args)
	cmd := exec.CommandContext(ctx, latchBinary(t), append([]string{"serve"}, flags...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// serveArgsToEnv splits args as serveCommand describes.
func serveArgsToEnv(t *testing.T, args []string) (flags, env []string) {
	t.Helper()
	c := defaultConfig()
	kinds := map[string]reflect.Kind{}
	for _, s := range settings(&c) {
		kinds[idOf(s.env)] = s.v.Kind()
	}
	vals := map[string][]string{}
	var order []string
	issuer := false
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "--") || (name != "config" && kinds[name] == reflect.Invalid) {
			flags = append(flags, args[i]) // not a setting: passed as given (the test wants it refused)
			continue
		}
		if name == "issuer" {
			issuer = true
		}
		if !hasVal {
			if kinds[name] == reflect.Bool && (i+1 == len(args) || strings.HasPrefix(args[i+1], "--")) {
				val = "true"
			} else if i+1 < len(args) {
				i++
				val = args[i]
			}
		}
		if name == "config" || slices.Contains(serveFlagIDs, name) {
			flags = append(flags, "--"+name+"="+val)
			continue
		}
		if _, ok := vals[name]; !ok {
			order = append(order, name)
		}
		vals[name] = append(vals[name], val)
	}
	for _, name := range order {
		env = append(env, envName(name)+"="+strings.Join(vals[name], ","))
	}
	if !issuer && os.Getenv("LATCH_ISSUER") == "" {
		env = append(env, "LATCH_ISSUER=https://latch.test")
	}
	return flags, env
}

// latchCommand is the latch binary with args; a serve command line goes
// through serveCommand.
func latchCommand(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	if len(args) > 0 && args[0] == "serve" {
		return serveCommand(t, ctx, args[1:]...)
	}
	return exec.CommandContext(ctx, latchBinary(t), args...)
}
