package main

// What a replica does while etcd's space quota is exhausted, and after an
// operator has freed space and disarmed the alarm.

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestEtcdNoSpace: etcd with a small --quota-backend-bytes is filled (by
// keys outside Latch's prefix, as another tenant of the cluster might)
// until it raises its NOSPACE alarm. Then Login, Refresh and Revoke answer
// UNAVAILABLE with a retry hint (never INTERNAL) and change nothing, the
// log names the alarm and what to do, reads (Introspect, JWKS) keep
// working, /readyz stays 200 but says writes are refused, and
// latch_storage_no_space is 1. Once the operator deletes the junk,
// compacts, defragments and disarms the alarm, the same replica serves
// writes again without a restart, and the gauge and /readyz say so.
func TestEtcdNoSpace(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	srv := etcdtest.Start(t, etcdtest.WithQuotaBackendBytes(4<<20))
	const prefix = "/latch-quota/"
	etcdUserAdd(t, ctx, srv, prefix, "alice@example.com", "alice-password-1", "user")
	etcdUserAdd(t, ctx, srv, prefix, "svc@example.com", "svc-password-111", server.RoleIntrospect)
	r := startReplicas(t, ctx, srv, prefix, "A")[0]

	login := func() (*latchv1.TokenPair, error) {
		resp, err := r.cli.Login(ctx, &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password-1"})
		return resp.GetTokens(), err
	}
	alice, err := login()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := r.cli.Login(ctx, &latchv1.LoginRequest{Email: "svc@example.com", Password: "svc-password-111", Audience: "https://latch.test"})
	if err != nil {
		t.Fatal(err)
	}
	ictx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+svc.GetTokens().GetAccessToken())
	if got := noSpaceGauge(t, r); got != 0 {
		t.Fatalf("latch_storage_no_space = %v before the quota is reached, want 0", got)
	}

	op, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	junk := strings.Repeat("x", 256<<10)
	for i := 0; ; i++ {
		_, err := op.Put(ctx, "/junk/"+string(rune('a'+i%26))+strings.Repeat("k", i/26), junk)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatalf("filling etcd: %v", err)
		}
		if i > 200 {
			t.Fatal("etcd took 50 MiB without raising its NOSPACE alarm")
		}
	}

	wantUnavailable := func(what string, err error) {
		t.Helper()
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || st.Message() != "service unavailable; retry later" {
			t.Errorf("%s while etcd is out of space: %v, want UNAVAILABLE \"service unavailable; retry later\"", what, err)
			return
		}
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
				return
			}
		}
		t.Errorf("%s while etcd is out of space: no RetryInfo", what)
	}
	_, err = login()
	wantUnavailable("Login", err)
	_, err = r.cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: alice.GetRefreshToken()})
	wantUnavailable("Refresh", err)
	_, err = r.cli.Revoke(ctx, &latchv1.RevokeRequest{Token: alice.GetAccessToken()})
	wantUnavailable("Revoke", err)
	if in, err := r.cli.Introspect(ictx, &latchv1.IntrospectRequest{Token: alice.GetAccessToken()}); err != nil || !in.GetActive() {
		t.Errorf("Introspect while etcd is out of space = %v, %v; want active (reads work, and the failed Revoke changed nothing)", in, err)
	}
	if _, err := r.cli.GetJWKS(ctx, &latchv1.GetJWKSRequest{}); err != nil {
		t.Errorf("GetJWKS while etcd is out of space: %v", err)
	}
	logs := r.proc.logText()
	if !strings.Contains(logs, `"event":"storage_no_space"`) || !strings.Contains(logs, "NOSPACE") || !strings.Contains(logs, "alarm disarm") {
		t.Errorf("no storage_no_space record naming the NOSPACE alarm and how to disarm it:\n%s", logs)
	}
	if code, body := readyzBody(t, r); code != http.StatusOK || !strings.Contains(body, "writes refused: storage out of space") {
		t.Errorf("/readyz while etcd is out of space = %d %q, want 200 saying writes are refused", code, body)
	}
	if got := noSpaceGauge(t, r); got != 1 {
		t.Errorf("latch_storage_no_space = %v while etcd is out of space, want 1", got)
	}

	// The operator frees space: delete what filled it, compact, defragment,
	// disarm.
	del, err := op.Delete(ctx, "/junk/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete junk: %v", err)
	}
	if _, err := op.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if _, err := op.Defragment(ctx, srv.Endpoint); err != nil {
		t.Fatalf("defragment: %v", err)
	}
	// What `etcdctl alarm disarm` does: every raised alarm, of every member.
	if _, err := op.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatalf("alarm disarm: %v", err)
	}

	// The token the failed Refresh presented was not consumed.
	if _, err := r.cli.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: alice.GetRefreshToken()}); err != nil {
		t.Fatalf("Refresh after the alarm was disarmed: %v", err)
	}
	if _, err := login(); err != nil {
		t.Fatalf("Login after the alarm was disarmed: %v", err)
	}
	if _, err := r.cli.Revoke(ctx, &latchv1.RevokeRequest{Token: alice.GetAccessToken()}); err != nil {
		t.Fatalf("Revoke after the alarm was disarmed: %v", err)
	}
	// Readiness asks etcd about its alarms at most every 5 s (the question
	// is a proposal through the cluster's log), so the next check after
	// that sees the space.
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := readyzBody(t, r)
		if code == http.StatusOK && body == "ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("/readyz 15 s after the alarm was disarmed = %d %q, want 200 \"ready\"", code, body)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if got := noSpaceGauge(t, r); got != 0 {
		t.Errorf("latch_storage_no_space = %v after the alarm was disarmed, want 0", got)
	}
}

// readyzBody returns the status code and body of the replica's GET /readyz.
func readyzBody(t *testing.T, r replica) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.proc.httpAddr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// noSpaceGauge scrapes latch_storage_no_space from the replica (-1 when it
// is absent).
func noSpaceGauge(t *testing.T, r replica) float64 {
	t.Helper()
	fam := scrape(t, "http://"+r.proc.httpAddr+"/metrics")["latch_storage_no_space"]
	if fam == nil || len(fam.GetMetric()) != 1 {
		return -1
	}
	return fam.GetMetric()[0].GetGauge().GetValue()
}
