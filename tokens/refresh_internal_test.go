package tokens

import (
	"strings"
	"testing"
)

// TestIsBase64URLAlphabet checks the bitmap against the alphabet, byte by
// byte, for all 256 bytes, alone and inside a longer string.
func TestIsBase64URLAlphabet(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(alphabet, byte(c)) >= 0
		if got := isBase64URL(string([]byte{byte(c)})); got != want {
			t.Errorf("isBase64URL(%q) = %v, want %v", byte(c), got, want)
		}
		if got := isBase64URL("abc" + string([]byte{byte(c)}) + "XYZ"); got != want {
			t.Errorf("isBase64URL(abc%qXYZ) = %v, want %v", byte(c), got, want)
		}
	}
	if !isBase64URL("") || !isBase64URL(alphabet) {
		t.Error("the empty string and the alphabet are base64url")
	}
}
