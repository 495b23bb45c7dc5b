package server

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// forwardedForHeader is the metadata key proxies append the address they
// received a request from to.
const forwardedForHeader = "x-forwarded-for"

// clientAddress is the address a request came from, as Latch charges and
// logs it.
type clientAddress struct {
	ip netip.Addr // invalid when the transport gave no IP address
}

// String is the address for logs ("unknown" when there is none).
func (a clientAddress) String() string {
	if !a.ip.IsValid() {
		return "unknown"
	}
	return a.ip.String()
}

// bucket is the address's rate-limit key: the IPv4 address, or the /64 an
// IPv6 address belongs to (one host usually holds a whole /64, so counting
// addresses inside it would hand one client 2^64 buckets).
func (a clientAddress) bucket() string {
	switch {
	case !a.ip.IsValid():
		return "unknown"
	case a.ip.Is4():
		return a.ip.String()
	default:
		return netip.PrefixFrom(a.ip, 64).Masked().String()
	}
}

// clientAddr resolves the client's address: the transport peer, unless the
// peer is one of Config.TrustedProxies, in which case x-forwarded-for is
// read from its right end (the entry the nearest proxy appended) and the
// first entry that is not itself a trusted proxy is the client. An entry
// that does not parse ends the walk at the proxy that appended it: what lies
// further left is whatever the client chose to send. Every rate-limit
// bucket, log line and session record uses this one address, so that a
// thousand clients behind one proxy are a thousand clients.
func (s *Server) clientAddr(ctx context.Context) clientAddress {
	ip := peerIP(ctx)
	if !ip.IsValid() || !s.trustedProxy(ip) {
		return clientAddress{ip: ip}
	}
	var hops []string
	for _, v := range metadata.ValueFromIncomingContext(ctx, forwardedForHeader) {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		ip = hop.Unmap()
		if !s.trustedProxy(ip) {
			break
		}
	}
	return clientAddress{ip: ip}
}

// trustedProxy reports whether ip is in one of Config.TrustedProxies.
func (s *Server) trustedProxy(ip netip.Addr) bool {
	return slices.ContainsFunc(s.cfg.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// peerIP is the transport peer's IP address (invalid when it has none, as
// over an in-process pipe).
func peerIP(ctx context.Context) netip.Addr {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
		return ap.Addr().Unmap()
	}
	ip, _ := netip.ParseAddr(p.Addr.String()) // an address without a port
	return ip.Unmap()
}
