package etcd

import (
	"errors"
	"fmt"
	"testing"

	"github.com/latchauth/latch/storage"
)

// A write that kept losing races is the store being unavailable for now
// (the server answers UNAVAILABLE, worth a retry), not an internal fault,
// also as the methods wrap it.
func TestContentionIsUnavailable(t *testing.T) {
	for _, err := range []error{errContention, fmt.Errorf("etcd: rotate refresh token: %w", errContention)} {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%v is not storage.ErrUnavailable", err)
		}
	}
}
