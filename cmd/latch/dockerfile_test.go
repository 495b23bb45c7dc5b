package main

import (
	goversion "go/version"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfileBuild checks what CI cannot run (no Docker engine): every
// base image is pinned to a version tag, and one without a digest is named
// in docs/operations.md, which says what its tag pins; the Go image is at least the Go
// version go.mod requires (the official image sets GOTOOLCHAIN=local, so an
// older one fails to build, and only inside Docker); the build is static
// and trimmed; the runtime is distroless nonroot with both ports exposed
// and the database on a volume; and .dockerignore keeps local databases out
// of the build context.
func TestDockerfileBuild(t *testing.T) {
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(mod))
	if goLine == nil {
		t.Fatal("go.mod has no go directive")
	}
	need := "go" + goLine[1]
	if tc := regexp.MustCompile(`(?m)^toolchain (go\S+)$`).FindStringSubmatch(string(mod)); tc != nil && goversion.Compare(tc[1], need) > 0 {
		need = tc[1]
	}

	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("Dockerfile has %d FROM lines, want a build stage and a runtime stage", len(froms))
	}
	sawGo := false
	for _, m := range froms {
		image := m[1]
		name, tag, ok := strings.Cut(image, ":")
		if !ok || tag == "" || tag == "latest" || strings.Contains(tag, "${") {
			t.Errorf("FROM %s is not pinned to a version tag", image)
			continue
		}
		if name == "golang" {
			sawGo = true
			v := "go" + regexp.MustCompile(`^[0-9]+(\.[0-9]+)*`).FindString(tag)
			if !goversion.IsValid(v) || goversion.Compare(v, need) < 0 {
				t.Errorf("FROM %s: Go %s is older than go.mod's %s (the image has GOTOOLCHAIN=local)", image, v, need)
			}
		}
	}
	if !sawGo {
		t.Error("no golang build stage")
	}
	// An image pinned by tag only is named exactly in the docs, which say
	// what such a tag pins and how to pin the digest.
	ops, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range froms {
		if image := m[1]; !strings.Contains(image, "@sha256:") && !strings.Contains(string(ops), "`"+image+"`") {
			t.Errorf("FROM %s is pinned by tag, not digest, and docs/operations.md does not name it (as `%s`) to say what is pinned", image, image)
		}
	}
	if last := froms[len(froms)-1][1]; !strings.HasPrefix(last, "gcr.io/distroless/static") || !strings.HasSuffix(last, ":nonroot") {
		t.Errorf("runtime image %s, want gcr.io/distroless/static…:nonroot", last)
	}
	build := regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 go build .*$`).FindString(df)
	if build == "" || !strings.Contains(build, "-trimpath") {
		t.Errorf("build step %q is not a CGO_ENABLED=0 -trimpath go build", build)
	}
	for _, want := range []string{"EXPOSE 7300 7301", "VOLUME [\"/data\"]", "USER nonroot"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v (without it, a local latch.db, with its password hashes and perhaps unsealed private keys, goes into the build context)", err)
	}
	lines := strings.Split(string(ignore), "\n")
	if !slices.Contains(lines, "**/*.db") {
		t.Error(".dockerignore does not exclude **/*.db")
	}
	if slices.Contains(lines, ".git") || slices.Contains(lines, "/.git") {
		t.Error(".dockerignore excludes .git: the image's `latch version` would lose its VCS revision")
	}
}
