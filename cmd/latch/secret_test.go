package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadSecretOneWayOnly checks that a secret is read from its file or
// from its variable, that giving both is refused without repeating either,
// and that giving neither yields nothing.
func TestReadSecretOneWayOnly(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name, path, envValue, want, wantFrom, wantErr string
	}{
		{"file", file, "", "from-the-file", "the-file-setting", ""},
		{"variable", "", "from-the-variable", "from-the-variable", "LATCH_TEST_SECRET", ""},
		{"both", file, "from-the-variable", "", "", "give the test secret once: LATCH_TEST_SECRET or the-file-setting, not both"},
		{"neither", "", "", "", "", ""},
	} {
		getenv := func(string) string { return c.envValue }
		got, from, err := readSecret("test secret", c.path, "the-file-setting", "LATCH_TEST_SECRET", getenv, log)
		if got != c.want || from != c.wantFrom {
			t.Errorf("%s: got %q from %q, want %q from %q", c.name, got, from, c.want, c.wantFrom)
		}
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || err.Error() != c.wantErr):
			t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
		case err != nil && (strings.Contains(err.Error(), "from-the-file") || strings.Contains(err.Error(), "from-the-variable")):
			t.Errorf("%s: error repeats the secret: %v", c.name, err)
		}
	}
}
