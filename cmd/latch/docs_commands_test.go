package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docFiles are the user documentation: README.md and docs/*.md.
func docFiles(t *testing.T) map[string]string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, filepath.Join("..", "..", "README.md"))
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(n, filepath.Join("..", "..")+string(filepath.Separator))] = string(b)
	}
	if len(out) < 5 {
		t.Fatalf("found only %d documentation files", len(out))
	}
	return out
}

// serveInvocation matches `latch serve` and what follows it on the line.
var serveInvocation = regexp.MustCompile(`latch serve\b(.*)`)

// TestDocsServeCommandsUseServeFlags: every `latch serve` command line in
// the documentation, in prose or in a shell block (with its continuation
// lines), names only flags that latch serve takes, and every one in a shell
// block says which issuer to use, since serve refuses to start without one
// outside --dev. Settings that are not flags are shown as configuration
// keys or LATCH_* variables.
func TestDocsServeCommandsUseServeFlags(t *testing.T) {
	valid := append([]string{"config", "help"}, serveFlagIDs...)
	flagRE := regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)
	commands := 0
	for name, doc := range docFiles(t) {
		lines := strings.Split(doc, "\n")
		inShell := false
		for i := 0; i < len(lines); i++ {
			line := lines[i]
			if strings.HasPrefix(line, "```") {
				inShell = !inShell && (line == "```sh" || line == "```bash" || line == "```shell")
				continue
			}
			m := serveInvocation.FindStringSubmatchIndex(line)
			if m == nil {
				continue
			}
			cmd := line[m[2]:m[3]]
			start := line[:m[0]]
			if strings.HasSuffix(start, "'") || strings.HasSuffix(start, `"`) {
				continue // a quoted string naming the process, not a command
			}
			for inShell && strings.HasSuffix(strings.TrimSpace(cmd), `\`) && i+1 < len(lines) {
				i++
				cmd += " " + lines[i]
			}
			// The command ends where the shell or the prose moves on.
			if j := strings.IndexAny(cmd, "`&|;#)"); j >= 0 {
				cmd = cmd[:j]
			}
			commands++
			for _, f := range flagRE.FindAllStringSubmatch(cmd, -1) {
				if !slices.Contains(valid, f[1]) {
					t.Errorf("%s:%d: `latch serve --%s`: not a flag of latch serve (use its configuration key or LATCH_* variable):\n%s",
						name, i+1, f[1], line)
				}
			}
			if inShell && !strings.Contains(cmd, "--dev") && !strings.Contains(cmd, "--issuer") && !strings.Contains(cmd, "--config") &&
				!strings.Contains(cmd, "--help") && !strings.Contains(start, "LATCH_ISSUER=") {
				t.Errorf("%s:%d: latch serve without an issuer (--issuer, LATCH_ISSUER, --config or --dev) refuses to start:\n%s", name, i+1, line)
			}
		}
	}
	if commands < 5 {
		t.Fatalf("found only %d latch serve commands in the documentation", commands)
	}
}

// TestDocsConfigSnippetsLoad: every YAML block in the documentation that
// is a piece of latch serve's configuration (its first key is a top-level
// key of the configuration, and it is not a marked mesh example) decodes
// strictly, as `latch serve --config` would read it.
func TestDocsConfigSnippetsLoad(t *testing.T) {
	block := regexp.MustCompile("(?s)(<!-- [^>]*-->\n)?```yaml\n(.*?)```")
	topKey := regexp.MustCompile(`(?m)^([a-z_]+):`)
	top := map[string]bool{}
	c := defaultConfig()
	for _, s := range settings(&c) {
		k, _, _ := strings.Cut(s.key, ".")
		top[k] = true
	}
	snippets := 0
	for name, doc := range docFiles(t) {
		for _, m := range block.FindAllStringSubmatch(doc, -1) {
			if strings.Contains(m[1], "mesh-example") {
				continue
			}
			k := topKey.FindStringSubmatch(m[2])
			if k == nil || !top[k[1]] {
				continue
			}
			snippets++
			cfg := defaultConfig()
			if err := decodeConfig(name, []byte(m[2]), &cfg); err != nil {
				t.Errorf("%s: a configuration snippet does not load: %v\n%s", name, err, m[2])
			}
		}
	}
	if snippets < 4 {
		t.Fatalf("found only %d configuration snippets in the documentation", snippets)
	}
}
