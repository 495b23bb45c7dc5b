package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
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
// from the environment variable envOf names for it (setFromEnv). A usage
// error is printed as one line (parseFlagSet) and reported as errUsage.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string, envOf func(flagName string) string) error {
	if err := parseFlagSet(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q (%s --help)\n", fs.Name(), fs.Arg(0), fs.Name())
		return errUsage
	}
	return setFromEnv(fs, getenv, envOf)
}

// parseFlagSet parses args with fs. --help prints fs's usage and returns
// flag.ErrHelp. Any other problem is printed as one line naming the command
// (an unknown flag with the closest valid one) instead of the whole usage,
// which would bury it, and returns errUsage.
func parseFlagSet(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // flag calls it on every error; only --help shows it, below
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		if usage != nil {
			usage()
		} else {
			fs.PrintDefaults()
		}
		return flag.ErrHelp
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		var known []string
		fs.VisitAll(func(f *flag.Flag) { known = append(known, f.Name) })
		fmt.Fprintf(out, "%s: %s\n", fs.Name(), unknownFlag(fs.Name(), name, known))
	} else {
		fmt.Fprintf(out, "%s: %v (%s --help)\n", fs.Name(), err, fs.Name())
	}
	return errUsage
}

// unknownFlag is the one-line message for a flag that cmd does not take:
// the closest valid flag if one is near, else where the list of flags is.
func unknownFlag(cmd, name string, known []string) string {
	if s := closest(name, known); s != "" {
		return fmt.Sprintf("unknown flag --%s; did you mean --%s?", name, s)
	}
	return fmt.Sprintf("unknown flag --%s (%s --help lists the flags)", name, cmd)
}

// closest returns the candidate nearest to name by edit distance, if it is
// near enough to be what was meant.
func closest(name string, candidates []string) string {
	best, bestD := "", len(name)/2+2
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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

// usageWithEnv prints a command's synopsis and its flags, each with the
// environment variable envOf names for it (none shown when it returns "").
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
