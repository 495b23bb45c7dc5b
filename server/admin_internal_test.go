package server

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
)

// FuzzDecodePageToken: ListUsers' page_token is untrusted input. Decoding
// never panics, refuses anything it did not issue with INVALID_ARGUMENT, and
// every token it issues decodes back to the id it was made from.
func FuzzDecodePageToken(f *testing.F) {
	for _, seed := range []string{"", "u1:abc", encodePageToken("kiZI-k5Nah0NlCGxETAP7w"), "dTE6", "!!!", "eHl6"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		after, err := decodePageToken(tok)
		var ce *clientError
		switch {
		case err != nil && (!errors.As(err, &ce) || ce.code != codes.InvalidArgument || ce.msg != msgBadPageToken):
			t.Fatalf("decodePageToken(%q) = %v, want INVALID_ARGUMENT %q", tok, err, msgBadPageToken)
		case err == nil && tok != "" && after == "":
			t.Fatalf("decodePageToken(%q) accepted a token without an id", tok)
		case err == nil && tok != "" && encodePageToken(after) != tok:
			t.Fatalf("decodePageToken(%q) = %q, which encodes differently", tok, after)
		}
		if tok != "" && len(tok) < 200 {
			if got, err := decodePageToken(encodePageToken(tok)); err != nil || got != tok {
				t.Fatalf("round trip of %q = %q, %v", tok, got, err)
			}
		}
	})
}
