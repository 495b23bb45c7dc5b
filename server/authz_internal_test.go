package server

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/storage/bolt"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// newTableServer returns a Server on a bbolt file in a temporary directory.
func newTableServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hasher, err := password.NewHasher(password.Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, st, hasher, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every method the real gRPC server serves (AuthService, AdminService,
// health and reflection) has a rule in the access table, and the table
// names no method that is not served: a method added to a service, or
// brought in by a gRPC upgrade, fails here until someone decides who may
// call it. Without a rule it would be refused (deny by default).
func TestAccessTableCoversEveryServedMethod(t *testing.T) {
	for _, open := range []bool{false, true} {
		s := newTableServer(t, Config{Issuer: "https://latch.test", Audiences: []string{"orders"}, IntrospectOpen: open})
		gs := NewGRPCServer(s, s.log, WithReflection(true))
		t.Cleanup(gs.Stop)
		var served []string
		for svc, info := range gs.GetServiceInfo() {
			for _, m := range info.Methods {
				full := "/" + svc + "/" + m.Name
				served = append(served, full)
				if _, ok := s.access[full]; !ok {
					t.Errorf("IntrospectOpen=%v: %s is served but has no rule in the access table", open, full)
				}
			}
		}
		for m := range s.access {
			if !slices.Contains(served, m) {
				t.Errorf("IntrospectOpen=%v: the access table names %s, which is not served", open, m)
			}
		}
	}
}

// The table says what the documentation says: sign-in, token and key
// endpoints and health are public; Introspect and WatchRevocations need
// role introspect unless introspection is open; every AdminService method
// needs role admin.
func TestAccessTableRules(t *testing.T) {
	closed := accessTable(false)
	for _, m := range []string{latchv1.AuthService_Login_FullMethodName, latchv1.AuthService_Refresh_FullMethodName,
		latchv1.AuthService_Revoke_FullMethodName, latchv1.AuthService_GetJWKS_FullMethodName,
		healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName} {
		if r := closed[m]; !r.public {
			t.Errorf("%s: rule %+v, want public", m, r)
		}
	}
	for _, m := range []string{latchv1.AuthService_Introspect_FullMethodName, latchv1.AuthService_WatchRevocations_FullMethodName} {
		if r := closed[m]; r.public || r.role != RoleIntrospect {
			t.Errorf("%s: rule %+v, want role %s", m, r, RoleIntrospect)
		}
		if r := accessTable(true)[m]; !r.public {
			t.Errorf("%s with IntrospectOpen: rule %+v, want public", m, r)
		}
	}
	for _, m := range latchv1.AdminService_ServiceDesc.Methods {
		full := "/" + latchv1.AdminService_ServiceDesc.ServiceName + "/" + m.MethodName
		if r := closed[full]; r.public || r.role != RoleAdmin {
			t.Errorf("%s: rule %+v, want role %s", full, r, RoleAdmin)
		}
	}
	// AccountService: the caller's own Latch-audience token, any role.
	for _, m := range latchv1.AccountService_ServiceDesc.Methods {
		full := "/" + latchv1.AccountService_ServiceDesc.ServiceName + "/" + m.MethodName
		if r := closed[full]; r.public || r.admin || !r.anyRole {
			t.Errorf("%s: rule %+v, want any role of an authenticated caller", full, r)
		}
	}
}
