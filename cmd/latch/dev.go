package main

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// grpcurlVersion is the grpcurl release that the --dev banner, the docs and
// the end-to-end tests (.ci/test) use.
const grpcurlVersion = "v1.9.4"

// devSetup creates, on an empty database only, a demo person and a service
// account with role introspect, prints their random passwords once, and
// prints grpcurl commands that work when pasted as one block: each one
// keeps what the next needs in a shell variable, so there is no
// placeholder to fill in.
func devSetup(ctx context.Context, e env, store storage.Store, hasher *password.Hasher, grpcAddr, issuer string) error {
	n, err := store.CountUsers(ctx)
	if err != nil {
		return fmt.Errorf("dev: count users: %w", err)
	}
	if n > 0 {
		fmt.Fprintf(e.stdout, `latch --dev: the database already has %d user(s); nothing created.
Demo passwords are printed only when --dev creates the demo users, on an
empty database. For new ones, stop Latch and start it again on a new file,
latch serve --dev --db demo2.db (or move the old database away: it holds
every user, session and signing key).
`, n)
		return nil
	}
	type acct struct{ email, role, pw string }
	accts := []acct{{email: "demo@example.com", role: "user"}, {email: "service@example.com", role: server.RoleIntrospect}}
	for i := range accts {
		pw, err := tokens.NewID(rand.Reader)
		if err != nil {
			return fmt.Errorf("dev: password: %w", err)
		}
		accts[i].pw = pw
		if _, err := addUser(ctx, store, hasher, accts[i].email, pw, []string{accts[i].role}); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	p, svc := accts[0], accts[1]
	fmt.Fprintf(e.stdout, `
latch --dev: created two users. Their passwords are shown only this once.
  person:  %s  password %s  (role user)
  service: %s  password %s  (role introspect)

Try it: paste these lines into a shell (they need grpcurl and jq;
go install github.com/fullstorydev/grpcurl/cmd/grpcurl@%[7]s):

  grpcurl -plaintext %[5]s list
  LOGIN=$(grpcurl -plaintext -d '{"email":"%[1]s","password":"%[2]s"}' %[5]s latch.v1.AuthService/Login); echo "$LOGIN"
  AT=$(echo "$LOGIN" | jq -r .tokens.accessToken); RT=$(echo "$LOGIN" | jq -r .tokens.refreshToken)
  SVC=$(grpcurl -plaintext -d '{"email":"%[3]s","password":"%[4]s","audience":"%[6]s"}' %[5]s latch.v1.AuthService/Login | jq -r .tokens.accessToken)
  grpcurl -plaintext -H "authorization: Bearer $SVC" -d "{\"token\":\"$AT\"}" %[5]s latch.v1.AuthService/Introspect
  RT=$(grpcurl -plaintext -d "{\"refresh_token\":\"$RT\"}" %[5]s latch.v1.AuthService/Refresh | jq -r .tokens.refreshToken)
  grpcurl -plaintext -d "{\"token\":\"$RT\"}" %[5]s latch.v1.AuthService/Revoke

The service logs in for Latch's own audience (the issuer, %[6]s): only such
tokens may call Introspect, WatchRevocations and AdminService.

`, p.email, p.pw, svc.email, svc.pw, grpcAddr, issuer, grpcurlVersion)
	return nil
}
