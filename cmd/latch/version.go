package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo describes the running binary, from the linker flag
// -X main.version and the build information the Go toolchain embeds
// (module version and, when built from a VCS checkout, vcs.* settings).
type buildInfo struct {
	version       string // -X main.version, else the module version, else "dev"
	module        string
	moduleVersion string // "(devel)" for a build from a checkout
	revision      string // vcs.revision, "unknown" if not stamped
	time          string // vcs.time
	modified      string // vcs.modified: "true" for uncommitted changes
	goVersion     string
}

func readBuildInfo() buildInfo {
	b := buildInfo{version: version, revision: "unknown", goVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.module, b.moduleVersion, b.goVersion = bi.Main.Path, bi.Main.Version, bi.GoVersion
	if b.version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.time":
			b.time = s.Value
		case "vcs.modified":
			b.modified = s.Value
		}
	}
	return b
}

// printVersion writes `latch version`: the version on the first line, then
// the module, VCS and toolchain details.
func printVersion(w io.Writer) {
	b := readBuildInfo()
	fmt.Fprintf(w, "latch %s\n", b.version)
	if b.module != "" {
		fmt.Fprintf(w, "  module:    %s %s\n", b.module, b.moduleVersion)
	}
	fmt.Fprintf(w, "  revision:  %s\n", b.revision)
	if b.time != "" {
		fmt.Fprintf(w, "  time:      %s\n", b.time)
	}
	if b.modified != "" {
		fmt.Fprintf(w, "  modified:  %s\n", b.modified)
	}
	fmt.Fprintf(w, "  go:        %s %s/%s\n", b.goVersion, runtime.GOOS, runtime.GOARCH)
}
