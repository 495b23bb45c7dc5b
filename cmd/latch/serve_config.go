package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// namer names a setting, given by its id (the lower-case, dash-separated
// tail of its LATCH_* variable, e.g. "etcd-endpoints"), in a message: the
// commands that take flags name the flag, serve names the configuration
// key with its variable.
type namer func(id string) string

// flagName names a setting by its flag.
func flagName(id string) string { return "--" + id }

// idOf is the setting id of an environment variable.
func idOf(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "LATCH_")), "_", "-")
}

// serveFlagIDs are the settings that `latch serve` also takes as flags,
// besides --config; every other setting is a key of the file and a
// variable.
var serveFlagIDs = []string{"issuer", "dev", "grpc-addr", "http-addr", "db", "log-level"}

// configEnv names the configuration file when --config is not given.
const configEnv = "LATCH_CONFIG"

// configNamer names settings for serve's messages: the key, its variable
// and, for the few that have one, its flag, so that an operator sees every
// way to set it.
func configNamer() namer {
	keys := keyNames()
	return func(id string) string {
		env := envName(id)
		key, ok := keys[env]
		if !ok {
			return env
		}
		if slices.Contains(serveFlagIDs, id) {
			return fmt.Sprintf("%s (--%s, %s)", key, id, env)
		}
		return fmt.Sprintf("%s (%s)", key, env)
	}
}

// serveArgs is what serve's command line says.
type serveArgs struct {
	configFile string
	values     map[string]string // setting id → value, for the flags given
	help       bool
}

// isServeFlag reports whether arg is one of the flags in known (or help),
// with or without a value after "=".
func isServeFlag(arg string, known []string) bool {
	if !strings.HasPrefix(arg, "-") {
		return false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name == "h" || name == "help" || slices.Contains(known, name)
}

// parseServeArgs reads serve's few flags (--name value, --name=value, and
// --dev alone), reporting every problem at once; an unknown flag is named
// with the closest valid one.
func parseServeArgs(args []string) (serveArgs, []error) {
	sa := serveArgs{values: map[string]string{}}
	known := append([]string{"config"}, serveFlagIDs...)
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" || a == "-help" {
			sa.help = true
			continue
		}
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			errs = append(errs, fmt.Errorf("unexpected argument %q: latch serve takes flags only (latch serve --help)", a))
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !slices.Contains(known, name) {
			errs = append(errs, errors.New(unknownServeFlag(name, known)))
			// Skip its value, most likely the next argument, unless that
			// is one of serve's own flags: whatever else it is, even one
			// starting with "-", it may be a secret given to a misspelt
			// flag, and it is never named in an error.
			if !hasVal && i+1 < len(args) && !isServeFlag(args[i+1], known) {
				i++
			}
			continue
		}
		if name == "dev" {
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("flag --%s needs a value", name))
				continue
			}
			i++
			val = args[i]
		}
		if name == "config" {
			sa.configFile = val
		} else {
			sa.values[name] = val
		}
	}
	return sa, errs
}

// unknownServeFlag is the one-line message for a flag serve does not take.
// A setting that is not a flag is named by its key and variable, and a
// secret by where it is read from, since operators used to other servers
// try both as flags.
func unknownServeFlag(name string, known []string) string {
	for _, s := range secretEnv {
		if idOf(s.env) == name {
			return fmt.Sprintf("--%s is not a flag: a secret is read from %s%s, never from the command line, "+
				"which other users of the machine can see", name, s.env, s.alt)
		}
	}
	if key, ok := keyNames()[envName(name)]; ok {
		return fmt.Sprintf("--%s is not a flag of latch serve: set %s in the configuration file (--config) or %s", name, key, envName(name))
	}
	return unknownFlag("latch serve", name, known)
}

// loadServeConfig builds serve's configuration from the defaults, the file
// (--config, else LATCH_CONFIG), the environment and the flags, in rising
// precedence, and reports every problem with them at once.
func loadServeConfig(sa serveArgs, getenv func(string) string) (config, []error) {
	cfg := defaultConfig()
	var errs []error
	path := sa.configFile
	if path == "" {
		path = getenv(configEnv)
	}
	if path != "" {
		if err := loadConfigFile(path, &cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		errs = append(errs, err)
	}
	for _, s := range settings(&cfg) {
		id := idOf(s.env)
		if val, ok := sa.values[id]; ok {
			if err := setFromString(s.v, val); err != nil {
				errs = append(errs, fmt.Errorf("--%s %q: %w", id, val, err))
			}
		}
	}
	if cfg.Dev && cfg.Issuer == "" {
		cfg.Issuer = "http://" + cfg.Listen.HTTP
	}
	return cfg, errs
}

// changed reports, by setting id, the settings of c that differ from the
// defaults.
func changed(c config) map[string]bool {
	d := defaultConfig()
	got, def := settings(&c), settings(&d)
	out := map[string]bool{}
	for i := range got {
		if !reflect.DeepEqual(got[i].v.Interface(), def[i].v.Interface()) {
			out[idOf(got[i].env)] = true
		}
	}
	return out
}

// checkIssuer reports what is wrong with the issuer, naming every way to
// set it.
func checkIssuer(issuer string, n namer) error {
	if issuer == "" {
		return fmt.Errorf("%s is required outside --dev: set it to the URL that clients and verifiers know Latch by "+
			"(e.g. https://auth.example.com); it is the iss claim of every token and Latch's own audience", n("issuer"))
	}
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s %q: want an absolute http:// or https:// URL without query or fragment (e.g. https://auth.example.com)", n("issuer"), issuer)
	}
	return nil
}

// serveUsage is serve's --help.
const serveUsage = `Usage: latch serve [--config FILE] [--dev] [--issuer URL] [--grpc-addr ADDR] [--http-addr ADDR] [--db PATH] [--log-level LEVEL]

Runs Latch's gRPC services (with reflection and grpc.health.v1) and its HTTP
endpoints. Keys are generated on first start. SIGINT or SIGTERM stops it
gracefully (after shutdown.drain_delay).

Flags (configuration key and environment variable in brackets):
  --config FILE      YAML configuration file [LATCH_CONFIG]; latch config example prints one with every key
  --dev              first-try mode: demo users and grpcurl commands [dev, LATCH_DEV]
  --issuer URL       iss claim of every token; required outside --dev [issuer, LATCH_ISSUER]
  --grpc-addr ADDR   gRPC listen address (default 127.0.0.1:7300) [listen.grpc, LATCH_GRPC_ADDR]
  --http-addr ADDR   HTTP listen address (default 127.0.0.1:7301): /.well-known/jwks.json,
                     /.well-known/openid-configuration, /healthz, /readyz, /metrics [listen.http, LATCH_HTTP_ADDR]
  --db PATH          bbolt database file (default ./latch.db) [storage.db, LATCH_DB]
  --log-level LEVEL  debug, info, warn or error (default info) [log.level, LATCH_LOG_LEVEL]

Every other setting is a key of the configuration file with a LATCH_* variable
(latch config example). Precedence: flag > environment > file > default.
`

// configCmd runs `latch config`: example prints a complete configuration
// with every default; check loads a file as serve would and reports every
// problem in it.
func configCmd(_ context.Context, args []string, e env) error {
	const use = "usage: latch config example     print a complete, commented configuration with every default\n" +
		"       latch config check FILE  report every problem in a configuration file (with the environment applied)\n"
	switch {
	case len(args) == 1 && args[0] == "example":
		return exampleConfig(e.stdout, defaultConfig())
	case len(args) == 2 && args[0] == "check":
		cfg, errs := loadServeConfig(serveArgs{configFile: args[1]}, e.getenv)
		if len(errs) == 0 {
			errs = validateServeConfig(cfg, e.getenv)
		}
		if err := errors.Join(errs...); err != nil {
			return invalidConfig(err)
		}
		fmt.Fprintf(e.stdout, "%s: valid\n", args[1])
		return nil
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help"):
		fmt.Fprint(e.stdout, use)
		return flag.ErrHelp
	}
	fmt.Fprint(e.stderr, use)
	return errUsage
}

// invalidConfig presents every configuration problem, one a line.
func invalidConfig(err error) error {
	return fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
}
