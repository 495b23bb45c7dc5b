// Package bearer extracts an OAuth 2.0 bearer token (RFC 6750) from a gRPC
// call's "authorization" metadata or from an HTTP Authorization header, with
// one set of errors whose messages say what is wrong and never repeat what
// was sent. It checks the shape of the credential only; the token itself is
// for the verifier.
package bearer

import (
	"context"
	"errors"
	"strings"

	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/metadata"
)

// The ways an authorization value can be unusable. Their messages are safe
// to return to the client as they are.
var (
	ErrMissing  = errors.New(`missing bearer token: send "authorization: Bearer <access token>"`)
	ErrMultiple = errors.New("more than one authorization value")
	ErrTooLong  = errors.New("bearer token longer than 8 KiB")
	ErrScheme   = errors.New("authorization must use the Bearer scheme")
	ErrEmpty    = errors.New("empty bearer token")
)

// maxValue bounds a whole authorization value: the scheme, one space and a
// token of tokens.MaxTokenLength. Anything longer is refused before it is
// looked at further.
const maxValue = len("Bearer ") + tokens.MaxTokenLength

// FromIncomingContext returns the token of the one "authorization: Bearer
// <token>" value of the gRPC call whose incoming metadata ctx carries.
func FromIncomingContext(ctx context.Context) (string, error) {
	return parse(metadata.ValueFromIncomingContext(ctx, "authorization"))
}

// FromHeader returns the token of the one "Bearer <token>" value among the
// lines of an HTTP Authorization header. HTTP joins repeated lines with
// commas, which a bearer token never contains, so a comma is refused as a
// second value.
func FromHeader(lines ...string) (string, error) {
	tok, err := parse(lines)
	if err == nil && strings.Contains(tok, ",") {
		return "", ErrMultiple
	}
	return tok, err
}

// parse checks values in the order a client's mistake is most plainly
// named: presence, count, size, scheme, then the token. The scheme is
// case-insensitive (RFC 9110 §11.1); spaces and tabs around the value and
// the token are allowed (RFC 9110 §5.5, RFC 6750 §2.1).
func parse(values []string) (string, error) {
	switch {
	case len(values) == 0:
		return "", ErrMissing
	case len(values) > 1:
		return "", ErrMultiple
	case len(values[0]) > maxValue:
		return "", ErrTooLong
	}
	v := strings.Trim(values[0], " \t")
	scheme, tok, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrScheme
	}
	if tok = strings.Trim(tok, " \t"); tok == "" {
		return "", ErrEmpty
	}
	return tok, nil
}
