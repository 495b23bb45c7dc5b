package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
)

// Transport holds the connection limits of the gRPC server.
type Transport struct {
	// MaxConcurrentStreams bounds the RPCs in flight on one connection.
	MaxConcurrentStreams uint32
	// Keepalive: pings to idle clients, the idle and age limits of a
	// connection. A zero MaxConnectionAge means no limit; a zero
	// MaxConnectionAgeGrace means in-flight RPCs may take forever after the
	// age is reached.
	Keepalive keepalive.ServerParameters
	// Enforcement: clients pinging more often than MinTime (or, unless
	// PermitWithoutStream, pinging without an RPC in flight) are
	// disconnected with GOAWAY "too_many_pings".
	Enforcement keepalive.EnforcementPolicy
}

// DefaultTransport returns the limits NewGRPCServer uses unless told
// otherwise: 1024 streams per connection; connections idle for 15 minutes
// closed; a ping after 2 minutes of silence, answered within 20 s; no
// maximum age (30 s of grace when one is set); clients may ping every 10 s.
func DefaultTransport() Transport {
	return Transport{
		MaxConcurrentStreams: 1024,
		Keepalive: keepalive.ServerParameters{
			MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second,
			MaxConnectionAgeGrace: 30 * time.Second,
		},
		Enforcement: keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true},
	}
}

// Validate reports every problem with t at once.
func (t Transport) Validate() error {
	var errs []error
	if t.MaxConcurrentStreams == 0 {
		errs = append(errs, errors.New("config: MaxConcurrentStreams must be at least 1"))
	}
	k := t.Keepalive
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Keepalive.MaxConnectionIdle", k.MaxConnectionIdle}, {"Keepalive.MaxConnectionAge", k.MaxConnectionAge},
		{"Keepalive.MaxConnectionAgeGrace", k.MaxConnectionAgeGrace}, {"Keepalive.Time", k.Time},
		{"Keepalive.Timeout", k.Timeout}, {"Enforcement.MinTime", t.Enforcement.MinTime},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("config: %s %v must not be negative", d.name, d.v))
		}
	}
	if k.Time > 0 && t.Enforcement.MinTime > k.Time {
		// Not an error for grpc-go, but clients following the server's own
		// interval would then be told "too many pings".
		errs = append(errs, fmt.Errorf("config: Enforcement.MinTime %v must not exceed Keepalive.Time %v", t.Enforcement.MinTime, k.Time))
	}
	return errors.Join(errs...)
}

// WithTransport sets the connection limits. Default DefaultTransport().
func WithTransport(t Transport) GRPCOption { return func(o *grpcOptions) { o.transport = t } }

// PeerIdentity is who the client proved to be with a client certificate
// that verified against the configured client CAs (mutual TLS).
type PeerIdentity struct {
	// Subject is the certificate's subject distinguished name.
	Subject string
	// URIs are its URI SANs (a SPIFFE id, for example).
	URIs []string
	// DNSNames are its DNS SANs.
	DNSNames []string
}

// String is the identity's most specific name: its first URI SAN, else its
// first DNS SAN, else its subject.
func (p PeerIdentity) String() string {
	switch {
	case len(p.URIs) > 0:
		return p.URIs[0]
	case len(p.DNSNames) > 0:
		return p.DNSNames[0]
	}
	return p.Subject
}

// PeerIdentityFromContext returns the identity of the client of an RPC,
// taken from its verified client certificate. ok is false without mutual
// TLS, or when the client presented no certificate that verified: an
// unverified certificate is never an identity.
func PeerIdentityFromContext(ctx context.Context) (id PeerIdentity, ok bool) {
	if p, found := peer.FromContext(ctx); found {
		if info, isTLS := p.AuthInfo.(credentials.TLSInfo); isTLS {
			return PeerIdentityFromTLS(&info.State)
		}
	}
	return PeerIdentity{}, false
}

// PeerIdentityFromTLS returns the identity in a verified client certificate
// of a TLS connection (for HTTP handlers: r.TLS).
func PeerIdentityFromTLS(st *tls.ConnectionState) (PeerIdentity, bool) {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return PeerIdentity{}, false
	}
	c := st.VerifiedChains[0][0]
	id := PeerIdentity{Subject: c.Subject.String(), DNSNames: slices.Clone(c.DNSNames)}
	for _, u := range c.URIs {
		id.URIs = append(id.URIs, u.String())
	}
	return id, true
}

// WithTLS serves gRPC over TLS with cfg (see certs.Reloader.ServerConfig);
// a handshake that fails, a refused client certificate for example, is
// logged with event "tls_handshake_failed" and the client's address.
// Default: plaintext.
func WithTLS(cfg *tls.Config) GRPCOption { return func(o *grpcOptions) { o.tls = cfg } }

// handshakeLogger logs failed server handshakes of its credentials.
type handshakeLogger struct {
	credentials.TransportCredentials
	log *slog.Logger
}

// ServerHandshake implements credentials.TransportCredentials.
func (h handshakeLogger) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, info, err := h.TransportCredentials.ServerHandshake(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		// crypto/tls errors name the failure, never key material.
		h.log.Info("TLS handshake failed", "event", "tls_handshake_failed",
			"peer", conn.RemoteAddr().String(), "error", err.Error())
	}
	return c, info, err
}

// Clone implements credentials.TransportCredentials.
func (h handshakeLogger) Clone() credentials.TransportCredentials {
	return handshakeLogger{TransportCredentials: h.TransportCredentials.Clone(), log: h.log}
}
