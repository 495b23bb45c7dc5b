package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("code = %v (%q), want %v", st.Code(), st.Message(), code)
	}
	if msg != "" && st.Message() != msg {
		t.Errorf("message = %q, want %q", st.Message(), msg)
	}
}

// TestEveryMethodImplemented calls every method of the service descriptor
// and fails if any answers Unimplemented.
func TestEveryMethodImplemented(t *testing.T) {
	e := newEnv(t, baseConfig())
	sd := latchv1.File_latch_v1_auth_proto.Services().ByName("AuthService")
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		t.Run(string(m.Name()), func(t *testing.T) {
			req := dynamicpb.NewMessage(m.Input())
			resp := dynamicpb.NewMessage(m.Output())
			err := e.conn.Invoke(ctxT(t), fmt.Sprintf("/%s/%s", sd.FullName(), m.Name()), req, resp)
			if status.Code(err) == codes.Unimplemented {
				t.Errorf("%s is unimplemented", m.FullName())
			}
		})
	}
}

func TestLoginIssuesTokens(t *testing.T) {
	e := newEnv(t, baseConfig())
	u := e.addUser("Alice@Example.com", "alice-password", "user", "reader")
	resp, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "  ALICE@example.com ", Password: "alice-password", Audience: "billing"})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	tp := resp.GetTokens()
	if tp.GetTokenType() != "Bearer" || tp.GetExpiresIn() != 900 || tp.GetRefreshExpiresIn() != int64(7*24*3600) || tp.GetSessionId() == "" {
		t.Errorf("token pair = %v", tp)
	}
	if n := len(tp.GetRefreshToken()); n > tokens.MaxRefreshTokenLength || n < 43 {
		t.Errorf("refresh token length = %d, want 43 to %d", n, tokens.MaxRefreshTokenLength)
	}
	c, err := e.srv.Verifier().Verify(ctxT(t), tp.GetAccessToken())
	if err != nil {
		t.Fatalf("access token does not verify: %v", err)
	}
	now := e.clock.Now()
	if c.Subject != u.ID || c.SessionID != tp.GetSessionId() || c.Issuer != "https://latch.test" ||
		fmt.Sprint(c.Audience) != "[billing]" || fmt.Sprint(c.Roles) != "[user reader]" || c.ID == "" ||
		!c.ExpiresAt.Equal(now.Add(15*time.Minute)) || !c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) {
		t.Errorf("claims = %+v", c)
	}
	if strings.Contains(tp.GetAccessToken(), "alice") {
		t.Errorf("access token payload must not hold the email")
	}
}

// TestBadCredentialsIndistinguishable: unknown email, wrong password and a
// disabled account give the same status and message (invariant 3), and an
// unknown email still costs one argon2id comparison.
func TestBadCredentialsIndistinguishable(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	d := e.addUser("disabled@example.com", "disabled-password")
	if _, err := e.store.UpdateUser(ctxT(t), d.ID, func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, req := range []*latchv1.LoginRequest{
		{Email: "nobody@example.com", Password: "alice-password"},
		{Email: "alice@example.com", Password: "wrong-password"},
		{Email: "disabled@example.com", Password: "disabled-password"},
	} {
		_, err := e.client.Login(ctxT(t), req)
		wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
		msgs = append(msgs, status.Convert(err).String())
	}
	if msgs[0] != msgs[1] || msgs[1] != msgs[2] {
		t.Errorf("failure statuses differ: %q", msgs)
	}
	logs := e.logs.String()
	for _, reason := range []string{"unknown_email", "wrong_password", "user_disabled"} {
		if !strings.Contains(logs, `"reason":"`+reason+`"`) {
			t.Errorf("login failure reason %s not logged", reason)
		}
	}
}

func TestLoginInvalidArguments(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	for name, req := range map[string]*latchv1.LoginRequest{
		"empty email":       {Password: "x"},
		"empty password":    {Email: "alice@example.com"},
		"oversize email":    {Email: strings.Repeat("a", 250) + "@example.com", Password: "x"},
		"oversize password": {Email: "alice@example.com", Password: strings.Repeat("p", 1025)},
		"unknown audience":  {Email: "alice@example.com", Password: "alice-password", Audience: "payroll"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.client.Login(ctxT(t), req)
			wantStatus(t, err, codes.InvalidArgument, "")
			if strings.Contains(status.Convert(err).Message(), "alice-password") {
				t.Errorf("message echoes the password")
			}
		})
	}
	// None of these spent a rate-limit token: a correct login still works.
	e.login("alice@example.com", "alice-password")
}

func TestRequestTooLarge(t *testing.T) {
	e := newEnv(t, baseConfig())
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "a@example.com", Password: strings.Repeat("p", server.MaxRecvMsgSize)})
	wantStatus(t, err, codes.ResourceExhausted, "")
}

// TestLoginRateLimits: failed logins spend the account's budget, after
// which even the right password is refused with RESOURCE_EXHAUSTED and a
// retry hint; an unknown email is limited exactly like a known one; every
// attempt, right or wrong, spends the address's budget, after which every
// account is refused from that address; the budgets refill with time.
func TestLoginRateLimits(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst, cfg.PersonLimits.FailureRefill = 3, time.Minute
	cfg.AddressBurst, cfg.AddressRefill = 8, time.Minute
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	e.addUser("bob@example.com", "bob-password")
	for range 3 {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "wrong"})
		wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
	}
	// The account is now limited, even with the right password.
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	wantStatus(t, err, codes.ResourceExhausted, "too many login attempts; retry later")
	st := status.Convert(err)
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("RESOURCE_EXHAUSTED without a RetryInfo hint: %v", st.Details())
	}
	limitLogged := func(limit string) bool {
		return slices.ContainsFunc(records(t, e.logs.String(), "login_rate_limited"), func(r map[string]any) bool { return r["limit"] == limit })
	}
	if !limitLogged(server.LimiterLoginAccount) {
		t.Errorf("the account's limit not logged")
	}
	// An unknown email is limited exactly like a known one (no
	// enumeration): three failures, then refused by its account budget.
	for range 3 {
		_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "ghost@example.com", Password: "wrong"})
		wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
	}
	_, err = e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "ghost@example.com", Password: "wrong"})
	wantStatus(t, err, codes.ResourceExhausted, "too many login attempts; retry later")
	// The address has spent 6 of its 8 attempts (refused attempts take
	// nothing); bob's logins take the last two, right password or not.
	for range 2 {
		e.login("bob@example.com", "bob-password")
	}
	_, err = e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password"})
	wantStatus(t, err, codes.ResourceExhausted, "too many login attempts; retry later")
	if !limitLogged(server.LimiterLoginAddress) {
		t.Errorf("the address's limit not logged")
	}
	// Buckets refill with time.
	e.clock.Advance(10 * time.Minute)
	e.login("alice@example.com", "alice-password")
}

func TestRefreshRotationChain(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password", "user")
	tp := e.login("alice@example.com", "alice-password")
	seen := map[string]bool{tp.GetRefreshToken(): true}
	for i := range 5 {
		e.clock.Advance(time.Minute)
		resp, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		next := resp.GetTokens()
		if next.GetSessionId() != tp.GetSessionId() || seen[next.GetRefreshToken()] {
			t.Fatalf("refresh %d: session %s→%s, refresh token repeated=%v", i, tp.GetSessionId(), next.GetSessionId(), seen[next.GetRefreshToken()])
		}
		seen[next.GetRefreshToken()] = true
		tp = next
	}
}

// TestRefreshRetryAfterOutageKeepsSession: with the default configuration,
// a client whose Refresh committed but was answered UNAVAILABLE (or missed
// its deadline) while etcd recovered, and which retries the same token 25 s
// later, when a replica serves again, keeps its session: the retry gets a
// new pair, the successor it replaces is dead, and only the retry's
// successor is live. A token two generations old is reuse at once, and so
// is the previous one after the window.
func TestRefreshRetryAfterOutageKeepsSession(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()
	first := e.login("alice@example.com", "alice-password")
	lost, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(25 * time.Second) // the reply was lost; the service was down meanwhile
	retry, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	if err != nil {
		t.Fatalf("retry 25s after a committed rotation: %v, want a new pair", err)
	}
	if e.introspect(ictx, lost.GetTokens().GetRefreshToken()).GetActive() || !e.introspect(ictx, retry.GetTokens().GetRefreshToken()).GetActive() {
		t.Fatal("after the retry, want only the retry's successor live")
	}
	next, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: retry.GetTokens().GetRefreshToken()})
	if err != nil {
		t.Fatalf("the session after the retry: %v", err)
	}
	// first is now two generations old.
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	if e.introspect(ictx, next.GetTokens().GetAccessToken()).GetActive() {
		t.Error("a token two generations old did not revoke the session")
	}

	// The previous token after the window is reuse.
	other := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: other.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: other.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	if e.introspect(ictx, other.GetAccessToken()).GetActive() {
		t.Error("the previous token after the window did not revoke the session")
	}
}

// TestRefreshReuseRevokesSession is invariant 1: presenting a rotated token
// again after the retry window for the immediately previous token revokes
// the whole session — every refresh token of it, and every access token
// carrying its sid in Introspect — and the revocation is logged and durable
// although the RPC failed.
func TestRefreshReuseRevokesSession(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()
	first := e.login("alice@example.com", "alice-password")
	other := e.login("alice@example.com", "alice-password") // another session, unaffected
	resp, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	second := resp.GetTokens()
	if !e.introspect(ictx, second.GetAccessToken()).GetActive() {
		t.Fatalf("fresh access token inactive")
	}

	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")

	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: second.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	for name, tok := range map[string]string{"first access": first.GetAccessToken(), "second access": second.GetAccessToken(), "second refresh": second.GetRefreshToken()} {
		if got := e.introspect(ictx, tok); !proto.Equal(got, &latchv1.IntrospectResponse{}) {
			t.Errorf("after reuse, introspect(%s) = %v, want active=false and nothing else", name, got)
		}
	}
	if !e.introspect(ictx, other.GetAccessToken()).GetActive() {
		t.Errorf("another session of the same user was revoked")
	}
	if !strings.Contains(e.logs.String(), `"event":"refresh_reuse_detected"`) {
		t.Errorf("reuse detection not logged with event=refresh_reuse_detected")
	}
	sess, err := e.store.GetSession(ctxT(t), first.GetSessionId())
	if err != nil || !sess.Revoked() || sess.RevokeReason != storage.ReasonReuse {
		t.Errorf("stored session = %+v, %v; want revoked with reason reuse", sess, err)
	}

	// Durable: reopen the same file in a new server.
	e.close()
	e2 := newEnvAt(t, e.dbPath, baseConfig())
	_, err = e2.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: second.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
}

// concurrentRefreshes exchanges tp's refresh token from n goroutines at
// once and returns each exchange's successor (nil where it failed) and
// error; an error other than UNAUTHENTICATED fails the test.
func concurrentRefreshes(t *testing.T, e *env, tp *latchv1.TokenPair, n int) ([]*latchv1.TokenPair, []error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	succ := make([]*latchv1.TokenPair, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
			succ[i], errs[i] = resp.GetTokens(), err
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if c := status.Code(err); c != codes.OK && c != codes.Unauthenticated {
			t.Errorf("unexpected error %v", err)
		}
	}
	return succ, errs
}

// TestConcurrentRefreshOneLiveSuccessor is invariant 1 under the default
// retry window: of N concurrent exchanges of one token, at most one
// successor stays live. Every exchange within the window may be answered
// (each retry replaces the successor before it), but exactly one of the
// successors handed out still works, and presenting any other is reuse.
func TestConcurrentRefreshOneLiveSuccessor(t *testing.T) {
	for _, n := range []int{2, 8, 64} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			cfg := baseConfig()
			cfg.ProbeBurst = 1000 // up to 63 dead successors are presented below
			e := newEnv(t, cfg)
			e.addUser("alice@example.com", "alice-password")
			ictx := e.introspector()
			tp := e.login("alice@example.com", "alice-password")
			succ, _ := concurrentRefreshes(t, e, tp, n)
			// Which successor is live, asked without spending any: Introspect
			// reports a refresh token active only while it may be exchanged.
			var live *latchv1.TokenPair
			var dead []*latchv1.TokenPair
			for _, s := range succ {
				switch {
				case s == nil:
				case e.introspect(ictx, s.GetRefreshToken()).GetActive():
					if live != nil {
						t.Fatalf("two of %d concurrent exchanges left a live successor", n)
					}
					live = s
				default:
					dead = append(dead, s)
				}
			}
			if live == nil {
				t.Fatalf("none of %d successors is live (%d handed out)", n, len(dead))
			}
			// Try every successor: the live one works, every other fails.
			if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: live.GetRefreshToken()}); err != nil {
				t.Fatalf("the live successor: %v", err)
			}
			for _, s := range dead {
				_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: s.GetRefreshToken()})
				wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
			}
		})
	}
}

// TestConcurrentRefreshExactlyOneWins: with the retry window disabled, of N
// concurrent exchanges of one token over gRPC exactly one succeeds; the
// losers count as reuse and revoke the session (without a retry window a
// lost race is indistinguishable from a replay).
func TestConcurrentRefreshExactlyOneWins(t *testing.T) {
	for _, n := range []int{2, 8, 64} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			// The losers are failing refresh tokens from one address: past
			// the default probe burst (30) they would be answered
			// RESOURCE_EXHAUSTED instead of UNAUTHENTICATED. This test is
			// about the race, so the probe limit is out of the way (its own
			// tests are in probe_test.go).
			cfg := baseConfig()
			cfg.ProbeBurst = 1000
			cfg.RefreshReuseGrace = -1
			e := newEnv(t, cfg)
			e.addUser("alice@example.com", "alice-password")
			tp := e.login("alice@example.com", "alice-password")
			_, errs := concurrentRefreshes(t, e, tp, n)
			wins := 0
			for _, err := range errs {
				if err == nil {
					wins++
				}
			}
			if wins != 1 {
				t.Errorf("%d of %d concurrent refreshes succeeded, want exactly 1", wins, n)
			}
			if n > 1 {
				if sess, err := e.store.GetSession(ctxT(t), tp.GetSessionId()); err != nil || sess.RevokeReason != storage.ReasonReuse {
					t.Errorf("session after a lost race = %+v, %v; want revoked for reuse", sess, err)
				}
			}
		})
	}
}

func TestRefreshGraceRetry(t *testing.T) {
	cfg := baseConfig()
	cfg.RefreshReuseGrace = 10 * time.Second
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	r1, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Second)
	// The client lost r1's reply and retries with the same token.
	r2, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatalf("retry within grace: %v", err)
	}
	// r1's refresh token has been replaced: presenting it is reuse.
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: r1.GetTokens().GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: r2.GetTokens().GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
}

func TestRefreshFailuresShareOneMessage(t *testing.T) {
	cfg := baseConfig()
	cfg.RefreshIdleTTL, cfg.RefreshMaxAge = time.Hour, 2*time.Hour
	e := newEnv(t, cfg)
	u := e.addUser("alice@example.com", "alice-password")
	revoked := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: revoked.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	idle := e.login("alice@example.com", "alice-password")
	disabled := e.login("alice@example.com", "alice-password")
	cases := map[string]func() string{
		"malformed": func() string { return "not a refresh token" },
		"unknown": func() string {
			k, _ := tokens.NewRefreshKey(rand.Reader)
			t, _, _ := tokens.NewRefreshToken(rand.Reader, k, disabled.GetSessionId(), 0)
			return t
		},
		"revoked":      func() string { return revoked.GetRefreshToken() },
		"idle expired": func() string { e.clock.Advance(61 * time.Minute); return idle.GetRefreshToken() },
		"access token": func() string { return idle.GetAccessToken() },
		"trailing bits": func() string {
			r := []byte(disabled.GetRefreshToken())
			r[len(r)-1] ^= 1
			return string(r)
		},
		"user disabled": func() string {
			if _, err := e.store.UpdateUser(ctxT(t), u.ID, func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
				t.Fatal(err)
			}
			return disabled.GetRefreshToken()
		},
	}
	for _, name := range []string{"malformed", "unknown", "revoked", "access token", "trailing bits", "idle expired", "user disabled"} {
		t.Run(name, func(t *testing.T) {
			_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: cases[name]()})
			wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
		})
	}
	_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{})
	wantStatus(t, err, codes.InvalidArgument, "")
}

// rawCodec sends pre-encoded bytes, so that a test can put on the wire what
// a well-behaved protobuf library refuses to encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

// TestInvalidUTF8OnTheWire sends requests whose string fields are not
// UTF-8, which a validating protobuf library will not encode but an
// attacker can. The protobuf runtime lets them reach the handlers (the
// proto files turn its UTF-8 check off; with it grpc-go answers INTERNAL),
// which refuse them like any malformed input: INVALID_ARGUMENT for Login,
// UNAUTHENTICATED for Refresh, OK for Revoke and inactive for Introspect;
// nothing echoed, no rate-limit token spent.
func TestInvalidUTF8OnTheWire(t *testing.T) {
	cfg := baseConfig()
	cfg.IntrospectOpen = true
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	field := func(msg []byte, num protowire.Number, val string) []byte {
		msg = protowire.AppendTag(msg, num, protowire.BytesType)
		return protowire.AppendBytes(msg, []byte(val))
	}
	invoke := func(method string, msg []byte, out proto.Message) error {
		return e.conn.Invoke(ctxT(t), method, msg, out, grpc.ForceCodec(rawCodec{}))
	}
	for name, msg := range map[string][]byte{
		"email":    field(field(nil, 1, "al\xffice@example.com"), 2, "alice-password"),
		"password": field(field(nil, 1, "alice@example.com"), 2, "alice-\xffpassword"),
		"audience": field(field(field(nil, 1, "alice@example.com"), 2, "alice-password"), 3, "ord\xffers"),
	} {
		t.Run("Login "+name, func(t *testing.T) {
			err := invoke(latchv1.AuthService_Login_FullMethodName, msg, &latchv1.LoginResponse{})
			wantStatus(t, err, codes.InvalidArgument, "")
			if m := status.Convert(err).Message(); strings.Contains(m, "alice-") || strings.Contains(m, "ice@example") {
				t.Errorf("message %q echoes the request", m)
			}
		})
	}
	err := invoke(latchv1.AuthService_Refresh_FullMethodName, field(nil, 1, strings.Repeat("\xff", 43)), &latchv1.RefreshResponse{})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	err = invoke(latchv1.AuthService_Revoke_FullMethodName, field(nil, 1, "tok\xffen"), &latchv1.RevokeResponse{})
	wantStatus(t, err, codes.OK, "")
	var in latchv1.IntrospectResponse
	if err := invoke(latchv1.AuthService_Introspect_FullMethodName, field(nil, 1, "tok\xffen"), &in); err != nil || in.GetActive() {
		t.Fatalf("Introspect of invalid UTF-8 = %v, %v", &in, err)
	}
	// A message that is not even protobuf is still refused (by grpc-go).
	err = invoke(latchv1.AuthService_Login_FullMethodName, []byte{0xff, 0xff, 0xff}, &latchv1.LoginResponse{})
	if status.Code(err) == codes.OK {
		t.Fatal("garbage message accepted")
	}
	e.login("alice@example.com", "alice-password")
}

func TestAbsoluteLifetimeCapsTokens(t *testing.T) {
	cfg := baseConfig()
	cfg.RefreshIdleTTL, cfg.RefreshMaxAge = time.Hour, time.Hour+10*time.Minute
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	e.clock.Advance(59 * time.Minute) // 11 minutes of absolute lifetime left
	resp, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetTokens().GetExpiresIn(); got != 660 {
		t.Errorf("expires_in = %d, want 660 (capped by the session's absolute lifetime)", got)
	}
	if got := resp.GetTokens().GetRefreshExpiresIn(); got != 660 {
		t.Errorf("refresh_expires_in = %d, want 660", got)
	}
	e.clock.Advance(11 * time.Minute)
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: resp.GetTokens().GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()

	// Each case first sees the access token active, then revokes it, and
	// sees it inactive.
	t.Run("refresh token ends the session", func(t *testing.T) {
		tp := e.login("alice@example.com", "alice-password")
		if !e.introspect(ictx, tp.GetAccessToken()).GetActive() {
			t.Fatal("fresh access token inactive")
		}
		if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetRefreshToken()}); err != nil {
			t.Fatal(err)
		}
		if e.introspect(ictx, tp.GetAccessToken()).GetActive() {
			t.Errorf("access token of revoked session still active")
		}
		_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	})
	t.Run("access token denies its jti only", func(t *testing.T) {
		tp := e.login("alice@example.com", "alice-password")
		if !e.introspect(ictx, tp.GetAccessToken()).GetActive() {
			t.Fatal("fresh access token inactive")
		}
		if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetAccessToken(),
			TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN}); err != nil { // wrong hint: still found
			t.Fatal(err)
		}
		if e.introspect(ictx, tp.GetAccessToken()).GetActive() {
			t.Errorf("revoked access token still active")
		}
		resp, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		if err != nil {
			t.Fatalf("session must survive revoking one access token: %v", err)
		}
		if !e.introspect(ictx, resp.GetTokens().GetAccessToken()).GetActive() {
			t.Errorf("new access token of the session inactive")
		}
	})
	t.Run("unknown, malformed and repeated tokens are OK", func(t *testing.T) {
		tp := e.login("alice@example.com", "alice-password")
		for _, tok := range []string{"garbage", strings.Repeat("A", 43), "a.b.c", strings.Repeat("x", 9000), tp.GetRefreshToken(), tp.GetRefreshToken()} {
			if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tok}); err != nil {
				t.Errorf("Revoke = %v, want OK", err)
			}
		}
		_, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{})
		wantStatus(t, err, codes.InvalidArgument, "")
	})
}

// TestRevokeDurable is invariant 2 at the storage boundary: once Revoke has
// returned, reopening the database (no graceful anything) keeps it revoked.
// The end-to-end test repeats this with kill -9 on the real binary.
func TestRevokeDurable(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	at := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: at.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	e.close()
	e2 := newEnvAt(t, e.dbPath, baseConfig())
	ictx := e2.introspector()
	if e2.introspect(ictx, at.GetAccessToken()).GetActive() {
		t.Errorf("revoked access token active after reopening")
	}
	_, err := e2.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
}

// TestIntrospectAuthMatrix: the caller credential of Introspect.
func TestIntrospectAuthMatrix(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password", "user")
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	alice := e.login("alice@example.com", "alice-password") // the target
	aliceSelf := e.loginSelf("alice@example.com", "alice-password")
	svc := e.loginSelf("svc@example.com", "svc-password")
	relyingParty := e.login("svc@example.com", "svc-password") // has the role, wrong audience
	revokedSvc := e.loginSelf("svc@example.com", "svc-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: revokedSvc.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	tampered := svc.GetAccessToken()[:len(svc.GetAccessToken())-4] + "AAAA"
	bearer := func(v ...string) context.Context {
		md := metadata.MD{}
		for _, x := range v {
			md.Append("authorization", x)
		}
		return metadata.NewOutgoingContext(ctxT(t), md)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		code codes.Code
	}{
		{"no metadata", ctxT(t), codes.Unauthenticated},
		{"empty bearer", bearer("Bearer "), codes.Unauthenticated},
		{"wrong scheme", bearer("Basic " + svc.GetAccessToken()), codes.Unauthenticated},
		{"two values", bearer("Bearer "+svc.GetAccessToken(), "Bearer "+svc.GetAccessToken()), codes.Unauthenticated},
		{"malformed", bearer("Bearer not.a.jwt"), codes.Unauthenticated},
		{"bad signature", bearer("Bearer " + tampered), codes.Unauthenticated},
		{"refresh token as credential", bearer("Bearer " + svc.GetRefreshToken()), codes.Unauthenticated},
		{"revoked", bearer("Bearer " + revokedSvc.GetAccessToken()), codes.Unauthenticated},
		{"oversized", bearer("Bearer " + strings.Repeat("a", 9000)), codes.Unauthenticated},
		{"relying party's audience", bearer("Bearer " + relyingParty.GetAccessToken()), codes.Unauthenticated},
		{"missing role", bearer("Bearer " + aliceSelf.GetAccessToken()), codes.PermissionDenied},
		{"valid", bearer("Bearer " + svc.GetAccessToken()), codes.OK},
		{"valid, lower-case scheme", bearer("bearer " + svc.GetAccessToken()), codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.Introspect(tc.ctx, &latchv1.IntrospectRequest{Token: alice.GetAccessToken()})
			wantStatus(t, err, tc.code, "")
			if tc.code != codes.OK && resp != nil {
				t.Errorf("response with an error: %v", resp)
			}
			if tc.code == codes.OK && !resp.GetActive() {
				t.Errorf("valid caller got inactive for a live token")
			}
		})
	}
	t.Run("expired credential", func(t *testing.T) {
		e.clock.Advance(16 * time.Minute)
		_, err := e.client.Introspect(bearer("Bearer "+svc.GetAccessToken()), &latchv1.IntrospectRequest{Token: alice.GetAccessToken()})
		wantStatus(t, err, codes.Unauthenticated, "")
	})
}

func TestIntrospectOpen(t *testing.T) {
	cfg := baseConfig()
	cfg.IntrospectOpen = true
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	if !e.introspect(ctxT(t), tp.GetAccessToken()).GetActive() {
		t.Errorf("open introspection: token inactive")
	}
}

func TestIntrospectResponses(t *testing.T) {
	e := newEnv(t, baseConfig())
	u := e.addUser("alice@example.com", "alice-password", "user")
	ictx := e.introspector()
	tp := e.login("alice@example.com", "alice-password")
	now := e.clock.Now().Unix()

	got := e.introspect(ictx, tp.GetAccessToken())
	c, _ := e.srv.Verifier().Verify(ctxT(t), tp.GetAccessToken())
	want := &latchv1.IntrospectResponse{Active: true, Sub: u.ID, SessionId: tp.GetSessionId(), Roles: []string{"user"},
		Exp: now + 900, Iat: now, Nbf: now, Jti: c.ID, Iss: "https://latch.test", Aud: []string{"orders"}, TokenType: "access_token", ClientId: "orders"}
	if !proto.Equal(got, want) {
		t.Errorf("introspect(access) =\n%v\nwant\n%v", got, want)
	}

	got = e.introspect(ictx, tp.GetRefreshToken())
	want = &latchv1.IntrospectResponse{Active: true, Sub: u.ID, SessionId: tp.GetSessionId(), Roles: []string{"user"},
		Exp: now + 7*24*3600, Iat: now, Nbf: now, Iss: "https://latch.test", Aud: []string{"orders"}, TokenType: "refresh_token", ClientId: "orders"}
	if !proto.Equal(got, want) {
		t.Errorf("introspect(refresh) =\n%v\nwant\n%v", got, want)
	}

	inactive := map[string]string{
		"garbage":             "garbage",
		"jwt-shaped garbage":  "a.b.c",
		"unknown refresh":     strings.Repeat("A", 43),
		"truncated access":    tp.GetAccessToken()[:len(tp.GetAccessToken())-1],
		"oversized":           strings.Repeat("a", 9000),
		"header only":         strings.Split(tp.GetAccessToken(), ".")[0],
		"access with padding": tp.GetAccessToken() + "=",
		// Introspect describes relying parties' tokens only.
		"Latch's own audience": e.loginSelf("alice@example.com", "alice-password").GetAccessToken(),
	}
	for name, tok := range inactive {
		t.Run(name, func(t *testing.T) {
			for _, hint := range []latchv1.TokenTypeHint{0, 1, 2} {
				resp, err := e.client.Introspect(ictx, &latchv1.IntrospectRequest{Token: tok, TokenTypeHint: hint})
				if err != nil || !proto.Equal(resp, &latchv1.IntrospectResponse{}) {
					t.Errorf("hint %v: introspect = %v, %v; want OK with active=false and nothing else", hint, resp, err)
				}
			}
		})
	}
	_, err := e.client.Introspect(ictx, &latchv1.IntrospectRequest{})
	wantStatus(t, err, codes.InvalidArgument, "")

	e.clock.Advance(16 * time.Minute)
	// The introspector's own token has expired too; get a fresh caller.
	svc := e.loginSelf("introspector@example.com", "introspector-pw")
	ictx2 := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+svc.GetAccessToken())
	if got := e.introspect(ictx2, tp.GetAccessToken()); got.GetActive() {
		t.Errorf("expired access token active")
	}
}

func TestGetJWKSMatchesHTTPAndTokens(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	resp, err := e.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The active key first, then the next key (published before it signs).
	if len(resp.GetKeys()) != 2 {
		t.Fatalf("GetJWKS = %d keys, want 2 (active and next)", len(resp.GetKeys()))
	}
	k := resp.GetKeys()[0]
	if k.GetKty() != "EC" || k.GetCrv() != "P-256" || k.GetAlg() != "ES256" || k.GetUse() != "sig" || k.GetKid() == "" {
		t.Errorf("JWK = %v", k)
	}
	hdr := strings.Split(tp.GetAccessToken(), ".")[0]
	if !strings.Contains(decodeSegment(t, hdr), `"kid":"`+k.GetKid()+`"`) {
		t.Errorf("token kid is not the published key")
	}
	// A verifier built from the published set alone accepts the token: no
	// private key needed, nothing taken from the token.
	jwk := tokens.JWK{Kty: k.GetKty(), Crv: k.GetCrv(), X: k.GetX(), Y: k.GetY(), Kid: k.GetKid(), Alg: k.GetAlg(), Use: k.GetUse()}
	pub, err := jwk.PublicKey()
	if err != nil {
		t.Fatalf("published JWK invalid: %v", err)
	}
	ks, err := tokens.NewKeySet(pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tokens.NewVerifier(ks, "https://latch.test", []string{"orders"}, tokens.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctxT(t), tp.GetAccessToken()); err != nil {
		t.Errorf("token does not verify against the published JWKS: %v", err)
	}

	h := e.srv.HTTPHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, server.JWKSPath, nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Cache-Control"), "max-age=300") ||
		rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("ETag") == "" {
		t.Errorf("HTTP JWKS: %d %v", rec.Code, rec.Header())
	}
	var set2 struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &set2); err != nil || len(set2.Keys) != 2 || set2.Keys[0]["kid"] != k.GetKid() || set2.Keys[0]["x"] != k.GetX() {
		t.Errorf("HTTP JWKS body %s does not match GetJWKS", rec.Body.String())
	}
	if _, hasD := set2.Keys[0]["d"]; hasD {
		t.Errorf("HTTP JWKS serves a private key")
	}
	rec2 := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, server.JWKSPath, nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	h.ServeHTTP(rec2, req)
	if rec2.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", rec2.Code)
	}
	for path, want := range map[string]int{"/healthz": 200, "/nope": 404} {
		r := httptest.NewRecorder()
		h.ServeHTTP(r, httptest.NewRequest(http.MethodGet, path, nil))
		if r.Code != want {
			t.Errorf("GET %s = %d, want %d", path, r.Code, want)
		}
	}
	r := httptest.NewRecorder()
	h.ServeHTTP(r, httptest.NewRequest(http.MethodPost, server.JWKSPath, nil))
	if r.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST jwks = %d, want 405", r.Code)
	}
}

// TestSigningKeyPersists: keys are generated on first start only.
func TestSigningKeyPersists(t *testing.T) {
	e := newEnv(t, baseConfig())
	kid := e.srv.JWKS().Keys[0].Kid
	e.close()
	e2 := newEnvAt(t, e.dbPath, baseConfig())
	if got := e2.srv.JWKS().Keys[0].Kid; got != kid {
		t.Errorf("kid after restart = %s, want %s", got, kid)
	}
}

// failingStore injects faults around the real store.
type failingStore struct {
	storage.Store
	failGetUserByEmail error
	panicOnCreate      bool
	panicOnRevoked     atomic.Bool
}

func (f *failingStore) AccessTokenRevoked(ctx context.Context, jti, sessionID string, now time.Time) (bool, error) {
	if f.panicOnRevoked.Load() {
		panic("boom: secret-panic-value")
	}
	return f.Store.AccessTokenRevoked(ctx, jti, sessionID, now)
}

func (f *failingStore) GetUserByEmail(ctx context.Context, email string) (storage.User, error) {
	if f.failGetUserByEmail != nil {
		return storage.User{}, f.failGetUserByEmail
	}
	return f.Store.GetUserByEmail(ctx, email)
}

func (f *failingStore) CreateSession(ctx context.Context, s storage.Session) error {
	if f.panicOnCreate {
		panic("boom: secret-panic-value")
	}
	return f.Store.CreateSession(ctx, s)
}

func TestInternalErrorsLeakNothing(t *testing.T) {
	fs := &failingStore{}
	e := newEnv(t, baseConfig(), func(s storage.Store) storage.Store { fs.Store = s; return fs })
	e.addUser("alice@example.com", "alice-password")

	fs.failGetUserByEmail = errors.New("disk on fire at /var/secret/path")
	_, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	wantStatus(t, err, codes.Internal, "internal error")
	if !strings.Contains(e.logs.String(), "disk on fire") {
		t.Errorf("internal error detail not logged")
	}

	fs.failGetUserByEmail = nil
	fs.panicOnCreate = true
	_, err = e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
	wantStatus(t, err, codes.Internal, "internal error")
	if !strings.Contains(e.logs.String(), `"event":"panic"`) {
		t.Errorf("panic not logged")
	}
	// The server still serves after a panic.
	fs.panicOnCreate = false
	e.login("alice@example.com", "alice-password")

	// A panic while the caller's credential is checked (before any
	// handler runs), on a unary and a streaming RPC, is INTERNAL too and
	// leaves the process serving.
	ictx := e.introspector()
	fs.panicOnRevoked.Store(true)
	_, err = e.client.Introspect(ictx, &latchv1.IntrospectRequest{Token: "x"})
	wantStatus(t, err, codes.Internal, "internal error")
	stream, err := e.client.WatchRevocations(ictx, &latchv1.WatchRevocationsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantStatus(t, err, codes.Internal, "internal error")
	fs.panicOnRevoked.Store(false)
	if r := e.introspect(ictx, "x"); r.GetActive() {
		t.Error("Introspect of a junk token after the panics: active")
	}
}

// TestLogsHoldNoSecrets is invariant 4: after a full session life, no log
// record contains a password or token, and records carry ids instead.
func TestLogsHoldNoSecrets(t *testing.T) {
	// The access log is on, so that the per-call records are checked too.
	e := newOpsEnv(t, opsConfig{grpcOpts: []server.GRPCOption{server.WithAccessLog(1)}})
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()
	tp := e.login("alice@example.com", "alice-password")
	_, _ = e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "alice@example.com", Password: "wrong-password-secret"})
	r, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	_, _ = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()}) // reuse
	if !strings.Contains(e.logs.String(), `"event":"refresh_reuse_detected"`) {
		t.Fatal("no reuse detected: the reuse path's records are not checked")
	}
	e.introspect(ictx, r.GetTokens().GetAccessToken())
	_, _ = e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: r.GetTokens().GetAccessToken()})
	logs := e.logs.String()
	md, _ := metadata.FromOutgoingContext(ictx)
	for name, secret := range map[string]string{
		"password": "alice-password", "wrong password": "wrong-password-secret",
		"access token": tp.GetAccessToken(), "refresh token": tp.GetRefreshToken(),
		"rotated refresh": r.GetTokens().GetRefreshToken(), "caller credential": md.Get("authorization")[0],
		"access token signature": strings.Split(tp.GetAccessToken(), ".")[2],
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
	if !strings.Contains(logs, `"session_id":"`+tp.GetSessionId()+`"`) {
		t.Errorf("logs lack the session id")
	}
	if !strings.Contains(logs, `"grpc.method":"Login"`) {
		t.Errorf("logs lack per-call records with the method")
	}
}

// TestHashUpgradedOnLogin: a hash with old parameters is rewritten with the
// current ones after a successful login.
func TestHashUpgradedOnLogin(t *testing.T) {
	e := newEnv(t, baseConfig())
	u := e.addUser("alice@example.com", "alice-password")
	p := fastParams()
	p.Memory = 32
	oldHasher, err := password.NewHasher(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	oh, err := oldHasher.Hash(ctxT(t), "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateUser(ctxT(t), u.ID, func(u *storage.User) error { u.PasswordHash = oh; return nil }); err != nil {
		t.Fatal(err)
	}
	e.login("alice@example.com", "alice-password")
	got, err := e.store.GetUser(ctxT(t), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.PasswordHash == oh || !strings.Contains(got.PasswordHash, "m=64,t=1,p=1") {
		t.Errorf("hash not upgraded: %s", got.PasswordHash)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	err := server.Config{AccessTTL: -1, RefreshIdleTTL: time.Hour, RefreshMaxAge: time.Minute, Leeway: time.Hour}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"Issuer", "Audiences", "AccessTTL", "RefreshMaxAge", "Leeway"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q: %v", want, err)
		}
	}
}

// TestConfigRefreshTTLCoversAccessTokenAndLeeway pins the rule that lets
// storage skip a session's idle expiry when checking an access token: a
// token stays verifiable until exp + leeway, so the session's idle
// lifetime must cover access-ttl + leeway.
func TestConfigRefreshTTLCoversAccessTokenAndLeeway(t *testing.T) {
	base := server.Config{Issuer: "https://latch.test", Audiences: []string{"svc"},
		AccessTTL: 15 * time.Minute, RefreshMaxAge: time.Hour, Leeway: 30 * time.Second}
	for _, tc := range []struct {
		idle time.Duration
		ok   bool
	}{
		{15*time.Minute + 30*time.Second, true},
		{time.Hour, true},
		{15*time.Minute + 29*time.Second, false},
		{15 * time.Minute, false},
	} {
		c := base
		c.RefreshIdleTTL = tc.idle
		c = c.Defaults()
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("refresh-ttl %v: Validate() = %v, want ok=%v", tc.idle, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "RefreshIdleTTL") {
			t.Errorf("refresh-ttl %v: error does not name refresh-ttl: %v", tc.idle, err)
		}
	}
}

// decodeSegment decodes one base64url part of a compact JWS.
func decodeSegment(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode segment: %v", err)
	}
	return string(b)
}

// TestConfigRefreshMaxAgeBounded: a session lifetime past what storage can
// record (times up to 2262) is refused at start-up, naming the flag.
func TestConfigRefreshMaxAgeBounded(t *testing.T) {
	for _, tc := range []struct {
		maxAge time.Duration
		ok     bool
	}{
		{server.MaxSessionLifetime, true},
		{server.MaxSessionLifetime + time.Hour, false},
		{250 * 365 * 24 * time.Hour, false},
	} {
		c := server.Config{Issuer: "https://latch.test", Audiences: []string{"svc"}, RefreshMaxAge: tc.maxAge}.Defaults()
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("refresh-max-age %v: Validate() = %v, want ok=%v", tc.maxAge, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "RefreshMaxAge") {
			t.Errorf("refresh-max-age %v: error does not name refresh-max-age: %v", tc.maxAge, err)
		}
	}
}
