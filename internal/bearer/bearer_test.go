package bearer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/bearer"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/metadata"
)

// Every way an authorization value can be wrong has its own error, the same
// from gRPC metadata and from an HTTP header, and its message never repeats
// what was sent.
func TestParse(t *testing.T) {
	const tok = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"
	longest := strings.Repeat("a", tokens.MaxTokenLength)
	cases := []struct {
		name   string
		values []string
		want   string
		err    error
	}{
		{"bearer", []string{"Bearer " + tok}, tok, nil},
		{"scheme in any case", []string{"bEARER " + tok}, tok, nil},
		{"surrounding and separating spaces", []string{"  Bearer   " + tok + " "}, tok, nil},
		{"longest token", []string{"Bearer " + longest}, longest, nil},
		{"none", nil, "", bearer.ErrMissing},
		{"two values", []string{"Bearer " + tok, "Bearer " + tok}, "", bearer.ErrMultiple},
		{"oversized", []string{"Bearer " + longest + "a"}, "", bearer.ErrTooLong},
		{"basic", []string{"Basic YWxpY2U6cHc="}, "", bearer.ErrScheme},
		{"scheme glued to token", []string{"Bearer" + tok}, "", bearer.ErrScheme},
		{"empty value", []string{""}, "", bearer.ErrScheme},
		{"empty token", []string{"Bearer "}, "", bearer.ErrEmpty},
		{"scheme only", []string{"Bearer"}, "", bearer.ErrEmpty},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{"authorization": c.values})
			fromMD, errMD := bearer.FromIncomingContext(ctx)
			fromHeader, errHeader := bearer.FromHeader(c.values...)
			for _, got := range []struct {
				from string
				tok  string
				err  error
			}{{"metadata", fromMD, errMD}, {"header", fromHeader, errHeader}} {
				if got.tok != c.want || !errors.Is(got.err, c.err) {
					t.Errorf("%s: got %q, %v; want %q, %v", got.from, got.tok, got.err, c.want, c.err)
				}
				if got.err != nil && strings.Contains(got.err.Error(), "YWxp") {
					t.Errorf("%s: message %q repeats the credential", got.from, got.err)
				}
			}
		})
	}
}

// HTTP joins repeated header lines with commas (Envoy does so before
// ext_authz sees them); gRPC metadata keeps values apart, so a comma there
// is part of a malformed token and left to the verifier.
func TestCommaJoinedHeader(t *testing.T) {
	if tok, err := bearer.FromHeader("Bearer a.b.c,Bearer x"); !errors.Is(err, bearer.ErrMultiple) {
		t.Errorf("FromHeader = %q, %v; want %v", tok, err, bearer.ErrMultiple)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer a.b.c,x"))
	if tok, err := bearer.FromIncomingContext(ctx); tok != "a.b.c,x" || err != nil {
		t.Errorf("FromIncomingContext = %q, %v; want the token for the verifier to refuse", tok, err)
	}
}

// Without incoming metadata at all the token is missing.
func TestNoMetadata(t *testing.T) {
	if _, err := bearer.FromIncomingContext(context.Background()); !errors.Is(err, bearer.ErrMissing) {
		t.Fatalf("got %v, want %v", err, bearer.ErrMissing)
	}
}

// FuzzParse: an authorization value is untrusted input. Parsing never
// panics, returns either a token or one of the sentinel errors, and a token
// it returns is a non-empty, trimmed substring of the value without commas
// that fits tokens.MaxTokenLength. Whitespace inside a token is left for
// the verifier, which refuses it as malformed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"Bearer x", "", "Bearer ", "Basic a", "bearer a,b", " Bearer\tx", "Bearer  a b"} {
		f.Add(s)
	}
	sentinels := []error{bearer.ErrMissing, bearer.ErrMultiple, bearer.ErrTooLong, bearer.ErrScheme, bearer.ErrEmpty}
	f.Fuzz(func(t *testing.T, v string) {
		tok, err := bearer.FromHeader(v)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("FromHeader(%q) = %v, not a sentinel", v, err)
		}
		if tok == "" || !strings.Contains(v, tok) || strings.Contains(tok, ",") || strings.Trim(tok, " \t") != tok || len(tok) > tokens.MaxTokenLength {
			t.Fatalf("FromHeader(%q) = %q", v, tok)
		}
	})
}
