package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeListsEveryExtAuthzFlag: every flag of `latch ext-authz`, and
// its environment variable, is documented in docs/ (as
// TestReadmeListsEveryServeFlag does for `latch serve`).
func TestReadmeListsEveryExtAuthzFlag(t *testing.T) {
	var readme []byte
	for _, f := range []string{"configuration.md", "service-mesh.md"} {
		doc, err := os.ReadFile(filepath.Join("..", "..", "docs", f))
		if err != nil {
			t.Fatal(err)
		}
		readme = append(readme, doc...)
	}
	var help bytes.Buffer
	cmd := exec.Command(latchBinary(t), "ext-authz", "--help")
	cmd.Stdout, cmd.Stderr = &help, &help
	_ = cmd.Run()
	n := 0
	for _, line := range strings.Split(help.String(), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || !strings.HasPrefix(fields[0], "--") || !strings.HasPrefix(fields[1], "[LATCH_") {
			continue
		}
		n++
		for _, want := range []string{"`" + fields[0] + "`", "`" + strings.Trim(fields[1], "[]") + "`"} {
			if !bytes.Contains(readme, []byte(want)) {
				t.Errorf("docs/ do not document %s (latch ext-authz)", want)
			}
		}
	}
	if n < 15 {
		t.Fatalf("found only %d flags in latch ext-authz --help:\n%s", n, help.String())
	}
	if !bytes.Contains(readme, []byte("`LATCH_EXT_AUTHZ_PASSWORD`")) {
		t.Error("docs/ do not document `LATCH_EXT_AUTHZ_PASSWORD`")
	}
}
