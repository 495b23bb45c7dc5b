package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pagingServer is an AdminService whose ListUsers pages by a fixed table:
// the request's page token names the page, and the page names the next
// token. It stands in for a misbehaving Latch; nothing of ours is faked.
type pagingServer struct {
	latchv1.UnimplementedAdminServiceServer
	next map[string]string // page token -> next page token ("" ends)

	mu    sync.Mutex
	calls int
}

// maxPagingCalls stops a client that would loop forever, so that a
// regression fails the test at once instead of at --timeout.
const maxPagingCalls = 50

func (p *pagingServer) ListUsers(_ context.Context, req *latchv1.ListUsersRequest) (*latchv1.ListUsersResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls > maxPagingCalls {
		return nil, status.Error(codes.ResourceExhausted, "test server: too many ListUsers calls")
	}
	next, ok := p.next[req.GetPageToken()]
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "unknown page token")
	}
	id := fmt.Sprintf("u%d", p.calls)
	return &latchv1.ListUsersResponse{Users: []*latchv1.User{{Id: id, Email: id + "@example.com"}}, NextPageToken: next}, nil
}

// TestAdminListUsersStopsOnRepeatedPageToken: `latch admin users list`
// follows page tokens to the end, and fails fast, with an error saying
// why, when the server hands back a token it already gave (the same one
// again, or a cycle), instead of looping until --timeout.
func TestAdminListUsersStopsOnRepeatedPageToken(t *testing.T) {
	for _, tc := range []struct {
		name      string
		next      map[string]string
		wantErr   bool
		wantCalls int
	}{
		{"pages to the end", map[string]string{"": "a", "a": "b", "b": ""}, false, 3},
		{"same token again", map[string]string{"": "a", "a": "a"}, true, 2},
		{"cycle", map[string]string{"": "a", "a": "b", "b": "c", "c": "a"}, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &pagingServer{next: tc.next}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			gs := grpc.NewServer()
			latchv1.RegisterAdminServiceServer(gs, srv)
			go gs.Serve(lis)
			defer gs.Stop()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr strings.Builder
			e := env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
				getenv: func(k string) string { return map[string]string{adminTokenEnv: "test-token"}[k] }}
			err = admin(ctx, []string{"users", "list", "--addr", lis.Addr().String(), "--insecure", "--page-size", "1"}, e)
			srv.mu.Lock()
			calls := srv.calls
			srv.mu.Unlock()
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "page token repeats") {
					t.Fatalf("users list = %v (after %d calls); want an error about a repeated page token", err, calls)
				}
				if strings.Contains(stdout.String(), "@example.com") {
					t.Errorf("users list printed a partial listing on failure:\n%s", stdout.String())
				}
			} else {
				if err != nil {
					t.Fatalf("users list: %v", err)
				}
				if got := stdout.String(); !strings.Contains(got, "u1@example.com") || !strings.Contains(got, "u3@example.com") || !strings.Contains(got, "3 user(s)") {
					t.Errorf("users list printed:\n%s\nwant every page's user and 3 user(s)", got)
				}
			}
			if calls != tc.wantCalls {
				t.Errorf("ListUsers called %d times; want %d", calls, tc.wantCalls)
			}
		})
	}
}
