// Command latch-example-orders is an example sibling service: a tiny orders
// API whose every method is protected by Latch's interceptors. It shows, in
// about a hundred lines, what another team writes to accept Latch tokens.
//
// Usage:
//
//	latch-example-orders [--addr 127.0.0.1:7400] [--latch-addr 127.0.0.1:7300]
//	    [--issuer http://127.0.0.1:7301] [--audience latch]
//	    [--revocations-email svc@example.com]   # password in LATCH_EXAMPLE_PASSWORD
//
// With --revocations-email it follows Latch's revocations (that account needs
// role "introspect"); without it, tokens stay valid until they expire. It may
// start before Latch listens: it waits up to 30 s for Latch to log in and
// fetch keys. ListSignIns shows how a backend calls Latch's self-service API
// (AccountService) for a person: with a token for Latch's own audience
// obtained from the person's session, never with the token it was given.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	ordersv1 "github.com/latchauth/latch/gen/latch/example/orders/v1"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "latch-example-orders:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("latch-example-orders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7400", "gRPC listen address")
	latchAddr := fs.String("latch-addr", "127.0.0.1:7300", "Latch's gRPC address (keys and revocations)")
	issuer := fs.String("issuer", "http://127.0.0.1:7301", "Latch's issuer (iss)")
	audience := fs.String("audience", "latch", "this service's audience (aud)")
	revEmail := fs.String("revocations-email", "", "account with role introspect used to follow revocations; password in LATCH_EXAMPLE_PASSWORD")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// The connection to Latch. Loopback plaintext for the example; use TLS
	// (grpc/credentials) anywhere else.
	latch, err := grpc.NewClient(*latchAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("latch connection: %w", err)
	}
	defer latch.Close()
	opts := []interceptors.Option{interceptors.WithLogger(log)}
	if *revEmail != "" {
		// WatchRevocations is one of Latch's own APIs: the account logs in
		// for Latch's own audience, its issuer, and again whenever its
		// session ends.
		password := func(context.Context) (string, error) { return getenv("LATCH_EXAMPLE_PASSWORD"), nil }
		login := clientcreds.PasswordLogin(latch, *revEmail, *issuer, password)
		pair, err := loginWhenReachable(ctx, login, log)
		if err != nil {
			return fmt.Errorf("revocations account: %w", err)
		}
		creds, err := clientcreds.New(latch, pair, clientcreds.WithInsecure(), clientcreds.WithRelogin(login))
		if err != nil {
			return fmt.Errorf("revocations account: %w", err)
		}
		opts = append(opts, interceptors.WithRevocations(latch, creds))
	}
	v, err := interceptors.NewVerifier(ctx, interceptors.Config{
		Issuer:   *issuer,
		Audience: []string{*audience},
		Keys:     interceptors.JWKSFromGRPC(latch),
	}, opts...)
	if err != nil {
		return err
	}
	defer v.Close()

	policy := interceptors.NewPolicy().Require("/"+ordersv1.OrdersService_ServiceDesc.ServiceName+"/", "orders:read")
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor(policy)),
		grpc.ChainStreamInterceptor(v.StreamServerInterceptor(policy)))
	ordersv1.RegisterOrdersServiceServer(srv, orders{
		auth: latchv1.NewAuthServiceClient(latch), account: latchv1.NewAccountServiceClient(latch), issuer: *issuer})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	// "latch.verifier" reports whether the keys and revocations this
	// service verifies with are fresh (see interceptors.Verifier.Status).
	hctx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go v.ReportHealth(hctx, hs, 5*time.Second)

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("orders serving", "event", "listening", "addr", lis.Addr().String(), "revocations", *revEmail != "")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		srv.Stop()
	}
	return nil
}

// latchWait bounds how long the example waits for Latch to listen at
// start, like the verifier's wait for keys.
const latchWait = 30 * time.Second

// loginWhenReachable logs in, retrying while Latch is not reachable yet
// (UNAVAILABLE) for up to latchWait, so that the example may start before
// Latch listens. Any other failure (a wrong password, say) ends it at once.
func loginWhenReachable(ctx context.Context, login clientcreds.LoginFunc, log *slog.Logger) (*latchv1.TokenPair, error) {
	ctx, cancel := context.WithTimeout(ctx, latchWait)
	defer cancel()
	backoff := 100 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		pair, err := login(ctx)
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return pair, err
		}
		log.Info("waiting for Latch", "event", "latch_unreachable", "retry_in", backoff.String())
		timer.Reset(backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("latch not reachable within %s: %w", latchWait, err)
		case <-timer.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// orders serves three fixed orders to every caller, owned by the caller,
// and the caller's sign-ins from Latch's AccountService.
type orders struct {
	ordersv1.UnimplementedOrdersServiceServer
	auth    latchv1.AuthServiceClient
	account latchv1.AccountServiceClient
	issuer  string // Latch's own audience
}

var items = map[string]string{"o-1": "a kettle", "o-2": "two mugs", "o-3": "tea"}

func (orders) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	c, _ := interceptors.ClaimsFromContext(ctx) // always present: the method is not public
	if req.GetOrderId() == "" {
		return nil, status.Error(codes.InvalidArgument, "order_id is required")
	}
	item, ok := items[req.GetOrderId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such order")
	}
	return &ordersv1.GetOrderResponse{Order: &ordersv1.Order{OrderId: req.GetOrderId(), Owner: c.Subject, Item: item}}, nil
}

func (orders) WatchOrders(_ *ordersv1.WatchOrdersRequest, st grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	c, _ := interceptors.ClaimsFromContext(st.Context())
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		if err := st.Send(&ordersv1.WatchOrdersResponse{Order: &ordersv1.Order{OrderId: id, Owner: c.Subject, Item: items[id]}}); err != nil {
			return err
		}
	}
	return nil
}

// ListSignIns asks Latch for the caller's sessions on the caller's behalf.
// The access token this service was called with is for this service's
// audience: Latch's own APIs refuse it, and forwarding a token to another
// audience is what audiences exist to prevent. Instead the caller's
// session, through its refresh token, yields a token for Latch's own
// audience (Refresh with audience = the issuer): the same session, no
// second login.
func (o orders) ListSignIns(ctx context.Context, req *ordersv1.ListSignInsRequest) (*ordersv1.ListSignInsResponse, error) {
	c, _ := interceptors.ClaimsFromContext(ctx)
	if req.GetRefreshToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "refresh_token is required")
	}
	r, err := o.auth.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: req.GetRefreshToken(), Audience: o.issuer})
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "Latch refused the refresh token")
	}
	pair := r.GetTokens()
	if pair.GetSessionId() != c.SessionID {
		// Acting on another session's account with this caller's request
		// would let one person read another's devices.
		return nil, status.Error(codes.PermissionDenied, "the refresh token is not of the caller's session")
	}
	latchCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+pair.GetAccessToken())
	list, err := o.account.ListMySessions(latchCtx, &latchv1.ListMySessionsRequest{})
	if err != nil {
		return nil, status.Error(codes.Unavailable, "could not list sessions at Latch")
	}
	resp := &ordersv1.ListSignInsResponse{RefreshToken: pair.GetRefreshToken()}
	for _, s := range list.GetSessions() {
		device := s.GetDeviceName()
		if device == "" {
			device = s.GetUserAgent()
		}
		resp.SignIns = append(resp.SignIns, &ordersv1.SignIn{SessionId: s.GetId(), Device: device,
			LastAddress: s.GetLastAddress(), Current: s.GetId() == list.GetCurrentSessionId()})
	}
	return resp, nil
}
