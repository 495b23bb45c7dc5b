package server

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/metadata"
)

// A user-agent is recorded, never refused: control characters and invalid
// UTF-8 become U+FFFD and the result is cut on a rune boundary.
func TestUserAgentSanitised(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "grpc-go/1.70.0", "grpc-go/1.70.0"},
		{"control", "a\x00b\nc\x7f", "a\uFFFDb\uFFFDc\uFFFD"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"none", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("user-agent", tc.in))
			if got := userAgent(ctx); got != tc.want {
				t.Errorf("userAgent(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	long := strings.Repeat("é", storage.MaxClientInfoLength) // 2 bytes each
	got := userAgent(metadata.NewIncomingContext(context.Background(), metadata.Pairs("user-agent", "x"+long)))
	if len(got) > storage.MaxClientInfoLength || !utf8.ValidString(got) || !strings.HasPrefix(got, "xé") {
		t.Errorf("long user-agent kept as %d bytes (valid UTF-8 %v), want at most %d on a rune boundary", len(got), utf8.ValidString(got), storage.MaxClientInfoLength)
	}
}
