package clientcreds_test

import (
	"context"
	"log"

	"github.com/latchauth/latch/interceptors/clientcreds"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A client logs in once; the credentials keep its access token fresh and
// attach it to every call.
func ExampleLogin() {
	ctx := context.Background()
	latch, err := grpc.NewClient("latch.internal:7300", grpc.WithTransportCredentials(insecure.NewCredentials())) // use TLS
	if err != nil {
		log.Fatal(err)
	}
	creds, err := clientcreds.Login(ctx, latch, "svc@example.com", "from-a-secret-store", "orders")
	if err != nil {
		log.Fatal(err)
	}
	orders, err := grpc.NewClient("orders.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()), // use TLS: creds require it
		grpc.WithPerRPCCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	defer orders.Close()
}

// Credentials that log in again, reading the password afresh, whenever
// Latch ends their session (revoked, or expired).
func ExamplePasswordLogin() {
	ctx := context.Background()
	latch, err := grpc.NewClient("latch.internal:7300", grpc.WithTransportCredentials(insecure.NewCredentials())) // use TLS
	if err != nil {
		log.Fatal(err)
	}
	password := func(context.Context) (string, error) { return "from-a-secret-store", nil }
	login := clientcreds.PasswordLogin(latch, "svc@example.com", "orders", password)
	pair, err := login(ctx)
	if err != nil {
		log.Fatal(err)
	}
	creds, err := clientcreds.New(latch, pair, clientcreds.WithRelogin(login))
	if err != nil {
		log.Fatal(err)
	}
	_ = creds // grpc.WithPerRPCCredentials(creds)
}
