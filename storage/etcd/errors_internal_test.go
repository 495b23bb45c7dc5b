package etcd

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/latchauth/latch/storage"
)

// TestClientErrUnavailable: every way the cluster, or the way to it, can
// fail a request is storage.ErrUnavailable (which clients see as
// UNAVAILABLE with a retry hint, never INTERNAL): the errors etcd answers
// during leader changes, elections and timeouts, the statuses of the gRPC
// connection to a member that was frozen, killed or closed, the client's
// own failures, and refusals for space or permission. A request etcd
// refuses as malformed stays as it is, and a caller's own ended context
// is that context's error.
func TestClientErrUnavailable(t *testing.T) {
	for _, err := range []error{
		rpctypes.ErrGRPCNoLeader, rpctypes.ErrGRPCLeaderChanged, rpctypes.ErrGRPCTimeout,
		rpctypes.ErrGRPCTimeoutDueToConnectionLost, rpctypes.ErrGRPCNoSpace, rpctypes.ErrGRPCPermissionDenied,
		rpctypes.Error(rpctypes.ErrGRPCLeaderChanged), rpctypes.Error(rpctypes.ErrGRPCNoLeader),
		status.Error(codes.Canceled, "grpc: the client connection is closing"),
		status.Error(codes.Canceled, "context canceled"),
		status.Error(codes.Unknown, "raft: proposal dropped"),
		status.Error(codes.Internal, "transport: received unexpected content-type"),
		status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing\""),
		status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
		clientv3.ErrNoAvailableEndpoints, context.Canceled, context.DeadlineExceeded,
		errors.New("unexpected EOF"),
		rpctypes.ErrGRPCNotSupportedForLearner, rpctypes.ErrGRPCCompacted, rpctypes.ErrGRPCLeaseNotFound,
		rpctypes.ErrGRPCStopped, rpctypes.ErrGRPCNotCapable, rpctypes.ErrGRPCUnhealthy,
	} {
		got := clientErr(context.Background(), fmt.Errorf("wrapped: %w", err))
		if !errors.Is(got, storage.ErrUnavailable) {
			t.Errorf("clientErr(%v) = %v, want storage.ErrUnavailable", err, got)
		}
	}
	for _, err := range []error{rpctypes.ErrGRPCTooManyOps, rpctypes.ErrGRPCRequestTooLarge, rpctypes.ErrGRPCEmptyKey,
		rpctypes.ErrGRPCDuplicateKey, rpctypes.ErrTooManyOps, fmt.Errorf("wrapped: %w", rpctypes.ErrRequestTooLarge)} {
		if got := clientErr(context.Background(), err); errors.Is(got, storage.ErrUnavailable) {
			t.Errorf("clientErr(%v) = %v, want the refusal as it is", err, got)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := clientErr(ctx, status.Error(codes.Canceled, "context canceled")); !errors.Is(got, context.Canceled) || errors.Is(got, storage.ErrUnavailable) {
		t.Errorf("clientErr with the caller's context canceled = %v, want context.Canceled", got)
	}
}
