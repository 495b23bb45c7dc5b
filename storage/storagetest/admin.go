package storagetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// userSession stores a session of user created at the time given.
func userSession(t *testing.T, s storage.Store, user, id string, created time.Time) storage.Session {
	t.Helper()
	sess := sessionOf(t, user, id, created)
	EnsureUser(t, s, user)
	if err := s.CreateSession(ctx(t), sess); err != nil {
		t.Fatalf("CreateSession(%s): %v", id, err)
	}
	return sess
}

func sessionIDs(ss []storage.Session) []string {
	return ids(ss, func(s storage.Session) string { return s.ID })
}

func userIDs(us []storage.User) []string { return ids(us, func(u storage.User) string { return u.ID }) }

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

func testListUsers(t *testing.T, s storage.Store) {
	c := ctx(t)
	if got, err := s.ListUsers(c, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("ListUsers on an empty store = %v, %v; want none", userIDs(got), err)
	}
	// Inserted out of order; listed in byte order of the id.
	ids := []string{"u07", "u02", "u10", "u01", "u05", "u03", "U99"}
	for _, id := range ids {
		if err := s.CreateUser(c, storage.User{ID: id, Email: id + "@example.com", PasswordHash: "$argon2id$" + id,
			Roles: []string{"r-" + id}, CreatedAt: base, UpdatedAt: base}); err != nil {
			t.Fatal(err)
		}
	}
	want := slices.Clone(ids)
	slices.Sort(want) // "U99" sorts before "u01" in byte order

	all, err := s.ListUsers(c, "", 100)
	if err != nil || !slices.Equal(userIDs(all), want) {
		t.Fatalf("ListUsers(\"\", 100) = %v, %v; want %v", userIDs(all), err, want)
	}
	if u := all[1]; u.Email != u.ID+"@example.com" || u.PasswordHash != "$argon2id$"+u.ID ||
		!slices.Equal(u.Roles, []string{"r-" + u.ID}) || !u.CreatedAt.Equal(base) {
		t.Fatalf("listed user = %+v, want its stored fields", u)
	}
	all[1].Roles[0] = "mutated" // the store must have copied the slice
	if u, _ := s.GetUser(c, all[1].ID); u.Roles[0] != "r-"+all[1].ID {
		t.Fatalf("mutating a listed user changed the store: %v", u.Roles)
	}

	for _, limit := range []int{1, 2, 3, len(ids), len(ids) + 1} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			var got []string
			after, pages := "", 0
			for {
				page, err := s.ListUsers(c, after, limit)
				if err != nil {
					t.Fatalf("ListUsers(%q, %d): %v", after, limit, err)
				}
				if len(page) > limit {
					t.Fatalf("ListUsers(%q, %d) returned %d users", after, limit, len(page))
				}
				pages++
				got = append(got, userIDs(page)...)
				if len(page) < limit {
					break
				}
				after = page[len(page)-1].ID
				if pages > len(ids)+1 {
					t.Fatal("pagination does not end")
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("paged through %v, want %v", got, want)
			}
			// A full last page is followed by one empty page.
			if wantPages := len(ids)/limit + 1; pages != wantPages {
				t.Fatalf("took %d pages, want %d", pages, wantPages)
			}
		})
	}

	cases := []struct {
		after string
		want  []string
	}{
		{"u03", []string{"u05", "u07"}},     // an existing id is excluded
		{"u04", []string{"u05", "u07"}},     // an id that does not exist: start after where it would be
		{"u", []string{"u01", "u02"}},       // a prefix of ids
		{"u10", nil},                        // the last id
		{"zzz", nil},                        // past the end
		{"\x00", []string{"U99", "u01"}},    // before the start
		{"U99\x00", []string{"u01", "u02"}}, // just after an id
	}
	for _, tc := range cases {
		got, err := s.ListUsers(c, tc.after, 2)
		if err != nil || !slices.Equal(userIDs(got), tc.want) {
			t.Fatalf("ListUsers(%q, 2) = %v, %v; want %v", tc.after, userIDs(got), err, tc.want)
		}
	}
	for _, limit := range []int{0, -1} {
		_, err := s.ListUsers(c, "", limit)
		wantErr(t, fmt.Sprintf("ListUsers limit %d", limit), err, storage.ErrInvalidArgument)
	}
}

func testDeleteUser(t *testing.T, s storage.Store) {
	c := ctx(t)
	for _, u := range []storage.User{{ID: "u1", Email: "ada@example.com", Roles: []string{"admin"}}, {ID: "u2", Email: "bob@example.com"}} {
		if err := s.CreateUser(c, u); err != nil {
			t.Fatal(err)
		}
	}
	now := base.Add(time.Hour)
	liveA := userSession(t, s, "u1", "a", base)
	liveB := userSession(t, s, "u1", "b", base.Add(time.Minute))
	userSession(t, s, "u1", "c", base)
	mustRevoke(t, s, "c", storage.ReasonRevoked, base.Add(time.Second))
	userSession(t, s, "u1", "d", base.Add(-maxAge)) // expired, not swept
	other := userSession(t, s, "u2", "e", base)

	revoked, err := s.DeleteUser(c, "u1", now)
	if err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	gotIDs := sessionIDs(revoked)
	slices.Sort(gotIDs)
	if !slices.Equal(gotIDs, []string{liveA.ID, liveB.ID}) {
		t.Fatalf("DeleteUser revoked %v, want the live sessions [a b]", gotIDs)
	}
	for _, sess := range revoked {
		if !sess.RevokedAt.Equal(now) || sess.RevokeReason != storage.ReasonUserChanged || sess.UserID != "u1" {
			t.Fatalf("returned session %+v, want revoked at %v with %q", sess, now, storage.ReasonUserChanged)
		}
		stored := wantRevoked(t, s, sess.ID, storage.ReasonUserChanged)
		if !stored.RevokedAt.Equal(now) {
			t.Fatalf("stored RevokedAt = %v, want %v", stored.RevokedAt, now)
		}
		wantRevokedAt(t, s, "some-jti", sess.ID, now, true)
	}
	if got := wantRevoked(t, s, "c", storage.ReasonRevoked); !got.RevokedAt.Equal(base.Add(time.Second)) {
		t.Fatalf("already revoked session changed: %+v", got)
	}
	if got, err := s.GetSession(c, "d"); err != nil || got.Revoked() {
		t.Fatalf("expired session d = %+v, %v; want left as it was", got, err)
	}
	if got, err := s.GetSession(c, other.ID); err != nil || !got.Live(now) {
		t.Fatalf("another user's session = %+v, %v; want live", got, err)
	}

	_, err = s.GetUser(c, "u1")
	wantErr(t, "GetUser after delete", err, storage.ErrNotFound)
	_, err = s.GetUserByEmail(c, "ada@example.com")
	wantErr(t, "GetUserByEmail after delete", err, storage.ErrNotFound)
	if n, err := s.CountUsers(c); err != nil || n != 1 {
		t.Fatalf("CountUsers after delete = %d, %v; want 1", n, err)
	}
	if list, err := s.ListUsers(c, "", 10); err != nil || !slices.Equal(userIDs(list), []string{"u2"}) {
		t.Fatalf("ListUsers after delete = %v, %v", userIDs(list), err)
	}
	// The email is free again, for a new user with no sessions.
	if err := s.CreateUser(c, storage.User{ID: "u3", Email: "ada@example.com"}); err != nil {
		t.Fatalf("CreateUser with a deleted user's email: %v", err)
	}
	if got, err := s.ListUserSessions(c, "u3"); err != nil || len(got) != 0 {
		t.Fatalf("new user's sessions = %v, %v; want none", sessionIDs(got), err)
	}

	_, err = s.DeleteUser(c, "u1", now)
	wantErr(t, "DeleteUser twice", err, storage.ErrNotFound)
	_, err = s.DeleteUser(c, "nobody", now)
	wantErr(t, "DeleteUser unknown", err, storage.ErrNotFound)
	_, err = s.DeleteUser(c, "", now)
	wantErr(t, "DeleteUser empty id", err, storage.ErrInvalidArgument)
	_, err = s.DeleteUser(c, "u2", time.Time{})
	wantErr(t, "DeleteUser zero time", err, storage.ErrInvalidArgument)
	if _, err := s.GetUser(c, "u2"); err != nil {
		t.Fatalf("refused DeleteUser removed the user: %v", err)
	}
	if got, _ := s.GetSession(c, other.ID); got.Revoked() {
		t.Fatal("refused DeleteUser revoked a session")
	}
}

func testListUserSessions(t *testing.T, s storage.Store) {
	c := ctx(t)
	if got, err := s.ListUserSessions(c, "nobody"); err != nil || len(got) != 0 {
		t.Fatalf("ListUserSessions(unknown) = %v, %v; want none, no error", sessionIDs(got), err)
	}
	userSession(t, s, "u1", "mid", base.Add(time.Minute))
	first := userSession(t, s, "u1", "old", base)
	userSession(t, s, "u1", "new", base.Add(time.Hour))
	userSession(t, s, "u1", "expired", base.Add(-maxAge))
	userSession(t, s, "u1x", "prefix", base) // a user whose id extends u1's
	userSession(t, s, "u", "short", base)    // and one whose id is a prefix of it
	mustRevoke(t, s, "mid", storage.ReasonAdmin, base.Add(2*time.Minute))
	mustRotate(t, s, rotation(t, s, "old", first.CurrentHash, Digest(t), base.Add(3*time.Minute)))

	got, err := s.ListUserSessions(c, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"new", "mid", "old", "expired"}; !slices.Equal(sessionIDs(got), want) {
		t.Fatalf("ListUserSessions(u1) = %v, want %v (newest first, live, revoked and expired)", sessionIDs(got), want)
	}
	if got[1].RevokeReason != storage.ReasonAdmin || got[2].Generation != 1 || got[2].UserID != "u1" || got[0].Audience != "orders" {
		t.Fatalf("listed sessions do not carry their stored state: %+v", got)
	}
	for user, want := range map[string][]string{"u1x": {"prefix"}, "u": {"short"}} {
		if got, err := s.ListUserSessions(c, user); err != nil || !slices.Equal(sessionIDs(got), want) {
			t.Fatalf("ListUserSessions(%s) = %v, %v; want %v", user, sessionIDs(got), err, want)
		}
	}

	// The sweeper removes expired sessions from the listing too.
	if _, err := s.DeleteExpired(c, base.Add(time.Minute), 100); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ListUserSessions(c, "u1"); err != nil || !slices.Equal(sessionIDs(got), []string{"new", "mid", "old"}) {
		t.Fatalf("ListUserSessions after a sweep = %v, %v", sessionIDs(got), err)
	}
	_, err = s.ListUserSessions(c, "")
	wantErr(t, "ListUserSessions empty id", err, storage.ErrInvalidArgument)
}

func testRevokeUserSessions(t *testing.T, s storage.Store) {
	c := ctx(t)
	now := base.Add(time.Hour)
	userSession(t, s, "u1", "a", base)
	userSession(t, s, "u1", "b", base.Add(time.Minute))
	userSession(t, s, "u1", "revoked", base)
	mustRevoke(t, s, "revoked", storage.ReasonReuse, base.Add(time.Second))
	userSession(t, s, "u1", "expired", base.Add(-maxAge))
	userSession(t, s, "u2", "other", base)

	// Refused arguments change nothing.
	for name, call := range map[string]func() error{
		"empty user":   func() error { _, err := s.RevokeUserSessions(c, "", storage.ReasonAdmin, now); return err },
		"empty reason": func() error { _, err := s.RevokeUserSessions(c, "u1", "", now); return err },
		"zero time":    func() error { _, err := s.RevokeUserSessions(c, "u1", storage.ReasonAdmin, time.Time{}); return err },
	} {
		wantErr(t, "RevokeUserSessions "+name, call(), storage.ErrInvalidArgument)
	}
	wantLiveCount(t, s, now, 3)

	revoked, err := s.RevokeUserSessions(c, "u1", storage.ReasonAdmin, now)
	if err != nil {
		t.Fatal(err)
	}
	ids := sessionIDs(revoked)
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("RevokeUserSessions returned %v, want only the live sessions [a b]", ids)
	}
	for _, sess := range revoked {
		if !sess.RevokedAt.Equal(now) || sess.RevokeReason != storage.ReasonAdmin {
			t.Fatalf("returned %+v, want revoked at %v with %q", sess, now, storage.ReasonAdmin)
		}
		wantRevoked(t, s, sess.ID, storage.ReasonAdmin)
	}
	if got := wantRevoked(t, s, "revoked", storage.ReasonReuse); !got.RevokedAt.Equal(base.Add(time.Second)) {
		t.Fatalf("earlier revocation overwritten: %+v", got)
	}
	if got, _ := s.GetSession(c, "expired"); got.Revoked() {
		t.Fatal("expired session was revoked (and returned nothing), want it left as it was")
	}
	if got, _ := s.GetSession(c, "other"); !got.Live(now) {
		t.Fatal("another user's session was revoked")
	}
	if seen := revocationSet(t, s, now); !seen["a"] || !seen["b"] {
		t.Fatalf("ListRevocations = %v, want sessions a and b (watchers must learn of them)", seen)
	}

	again, err := s.RevokeUserSessions(c, "u1", storage.ReasonUserChanged, now.Add(time.Minute))
	if err != nil || len(again) != 0 {
		t.Fatalf("second RevokeUserSessions = %v, %v; want none", sessionIDs(again), err)
	}
	wantRevoked(t, s, "a", storage.ReasonAdmin)
	if got, err := s.RevokeUserSessions(c, "nobody", storage.ReasonAdmin, now); err != nil || len(got) != 0 {
		t.Fatalf("RevokeUserSessions(unknown) = %v, %v; want none, no error", sessionIDs(got), err)
	}
}

func testCountLiveSessions(t *testing.T, s storage.Store) {
	c := ctx(t)
	wantLiveCount(t, s, base, 0)
	userSession(t, s, "u1", "a", base)
	userSession(t, s, "u1", "b", base)
	userSession(t, s, "u2", "c", base.Add(time.Hour))
	userSession(t, s, "u2", "expired", base.Add(-maxAge))
	userSession(t, s, "u2", "revoked", base)
	mustRevoke(t, s, "revoked", storage.ReasonRevoked, base)
	now := base.Add(2 * time.Hour)
	wantLiveCount(t, s, now, 3)
	if _, err := s.RevokeUserSessions(c, "u1", storage.ReasonAdmin, now); err != nil {
		t.Fatal(err)
	}
	wantLiveCount(t, s, now, 1)
	// At c's idle expiry nothing is live.
	wantLiveCount(t, s, base.Add(time.Hour+idle), 0)
}
