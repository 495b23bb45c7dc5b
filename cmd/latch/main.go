// Command latch runs the Latch authentication service and administers its
// database.
//
//	latch serve [flags]        run the gRPC and HTTP servers
//	latch config example       print a complete configuration with every default
//	latch user add [flags]     add a user to the database (server stopped)
//	latch sessions revoke ...  revoke every session created before a time (after a restore)
//	latch admin ...            administer a running server (AdminService client)
//	latch bench [flags]        measure Latch against its raw limits on this machine
//	latch ext-authz [flags]    Envoy ext_authz away from Latch (keys and revocations followed)
//	latch version              print the version, module and VCS information
//
// Serve reads a YAML configuration file (--config), LATCH_* environment
// variables and a few flags, in rising precedence.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `latch — a gRPC authentication service (ES256 access tokens, rotating refresh tokens).

Usage:
  latch serve [--config FILE] [flags] run the service (latch serve --help)
  latch serve --dev                   first try: demo users and grpcurl commands printed
  latch config example                print a complete configuration with every default
  latch user add --email E [--role R ...] --password-stdin [--db PATH]
                                      add a user; the server must be stopped
  latch sessions revoke --before TIME [--db PATH]
                                      after restoring a backup: revoke every session created before TIME
  latch bench [--duration 10s] [--concurrency 32] [--json FILE]
                                      measure Latch against its raw limits on this machine
  latch ext-authz --ext-authz-addr A --ext-authz-policy F --latch-addr L --issuer URL
                  [--revocations-email E]   Envoy ext_authz next to the sidecars (latch ext-authz --help)
  latch admin <command> ...           administer a running server (latch admin --help)
  latch version                       print the version, module and VCS information
  latch help                          this text

Every setting of serve is a key of its configuration file and has a LATCH_*
environment variable (latch config example); a flag wins over the variable,
which wins over the file.
`

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		// The first signal starts a graceful stop (serve drains); a second
		// one gets the default action and ends the process at once, as an
		// operator pressing Ctrl-C twice expects. Nothing acknowledged is
		// lost: state is fsynced before each reply.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		cancel()
	}()
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	cancel()
	os.Exit(code)
}

// env is the process's outside world, passed explicitly so that commands
// can be tested without touching the real one.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// run executes the command line and returns the exit code: 0 success, 1
// failure, 2 usage error.
func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], e)
	case "config":
		err = configCmd(ctx, args[1:], e)
	case "user":
		err = user(ctx, args[1:], e)
	case "sessions":
		err = sessionsCmd(ctx, args[1:], e)
	case "admin":
		err = admin(ctx, args[1:], e)
	case "bench":
		err = benchCmd(ctx, args[1:], e)
	case "ext-authz":
		err = extAuthzCmd(ctx, args[1:], e)
	case "version", "--version":
		printVersion(e.stdout)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
	default:
		fmt.Fprintf(e.stderr, "latch: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(e.stderr, "latch: %v\n", err)
		return 1
	}
}

// errUsage marks an error already reported with the command's usage.
var errUsage = errors.New("usage error")
