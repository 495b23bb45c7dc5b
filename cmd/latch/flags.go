package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// stringList is a repeatable string flag. Its environment form is a
// comma-separated list.
type stringList struct {
	vals  []string
	isSet bool
}

func (s *stringList) String() string { return strings.Join(s.vals, ",") }

func (s *stringList) Set(v string) error {
	if !s.isSet {
		s.vals, s.isSet = nil, true // the first explicit value replaces the default
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			s.vals = append(s.vals, part)
		}
	}
	return nil
}

// envName is the environment variable equivalent of a flag.
func envName(flagName string) string {
	return "LATCH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills every flag not given on the command line
// from its LATCH_* environment variable. A usage error is printed with the
// flag set's usage and reported as errUsage.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return setFromEnv(fs, getenv, envName)
}

// setFromEnv sets every flag of fs that was not given on the command line
// from the environment variable envOf names for it (none when envOf returns
// "").
func setFromEnv(fs *flag.FlagSet, getenv func(string) string, envOf func(flagName string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envOf(f.Name)
		if given[f.Name] || env == "" {
			return
		}
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

// usageFunc prints a command's synopsis and its flags with their
// environment variables.
func usageFunc(fs *flag.FlagSet, synopsis string) func() {
	return usageWithEnv(fs, synopsis, envName)
}

// usageWithEnv is usageFunc with the environment variable of each flag named
// by envOf (none shown when it returns "").
func usageWithEnv(fs *flag.FlagSet, synopsis string, envOf func(flagName string) string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\nFlags (environment variable in brackets):\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			env := ""
			if name := envOf(f.Name); name != "" {
				env = " [" + name + "]"
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "  --%s%s%s\n      %s\n", f.Name, env, def, f.Usage)
		})
	}
}
