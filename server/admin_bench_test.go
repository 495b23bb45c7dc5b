package server_test

import (
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
)

// BenchmarkAdminGetUser measures an AdminService call through the full
// chain over bufconn, from 64 goroutines: the admin interceptors (cached
// verification, revocation check), the handler's re-check of the caller in
// storage, and the lookup. Compare it with BenchmarkIntrospect (same chain
// shape on AuthService).
func BenchmarkAdminGetUser(b *testing.B) {
	e := newEnv(b, baseConfig())
	e.addUser("root@example.com", adminPW, server.RoleAdmin)
	bob := e.addUser("bob@example.com", "bob-password-1")
	ctx := bearerCtx(b, e.loginSelf("root@example.com", adminPW).GetAccessToken())
	client := latchv1.NewAdminServiceClient(e.conn)
	req := &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: bob.ID}}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.GetUser(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
