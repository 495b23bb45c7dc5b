package tokens_test

import (
	"errors"
	"testing"

	"github.com/latchauth/latch/tokens"
)

// TestClientIDClaim: Sign writes client_id when the claims carry one, the
// Verifier exposes it, accepts tokens without it (it is never required),
// and refuses one that is not a string.
func TestClientIDClaim(t *testing.T) {
	f := newFixture(t)
	c := validClaims()
	c.ClientID = "orders"
	got, err := f.verify(f.mint(t, c))
	if err != nil || got.ClientID != "orders" {
		t.Fatalf("verify token with client_id: claims %+v, err %v; want ClientID orders", got, err)
	}
	k := f.kit(t)
	without := k.SignMaps(t, k.Header(), k.Claims())
	if got, err := f.verify(without); err != nil || got.ClientID != "" {
		t.Fatalf("verify token without client_id: claims %+v, err %v; want accepted, empty ClientID", got, err)
	}
	for _, bad := range []any{7, []string{"orders"}, nil, map[string]any{}} {
		p := k.Claims()
		p["client_id"] = bad
		if _, err := f.verify(k.SignMaps(t, k.Header(), p)); !errors.Is(err, tokens.ErrMalformed) {
			t.Errorf("client_id %v: err = %v, want ErrMalformed", bad, err)
		}
	}
}
