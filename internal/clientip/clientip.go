// Package clientip decides which IP address an HTTP request came from when
// passgate may sit behind reverse proxies. Forwarding headers
// (X-Forwarded-For, X-Real-IP) are believed only when the direct peer is a
// configured trusted proxy, so a client on the internet cannot choose the
// address that rate limits and the audit log see.
package clientip

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver maps a request to its client IP. It is immutable after New and
// safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
}

// DefaultTrusted returns the default trust set: loopback, a proxy on the
// same host.
func DefaultTrusted() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// New returns a Resolver that trusts forwarding headers from peers inside
// the given prefixes. A nil or empty list trusts DefaultTrusted. Prefixes are masked; IPv4-mapped IPv6
// prefixes are unmapped so they match plain IPv4 peers.
func New(trusted []netip.Prefix) *Resolver {
	if len(trusted) == 0 {
		trusted = DefaultTrusted()
	}
	r := &Resolver{trusted: make([]netip.Prefix, 0, len(trusted))}
	for _, p := range trusted {
		if !p.IsValid() {
			continue
		}
		r.trusted = append(r.trusted, unmapPrefix(p).Masked())
	}
	return r
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n ≥ 96) into a.b.c.d/(n-96).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// ParsePrefixes parses a comma-separated list of CIDRs or bare IP
// addresses (a bare address is a single-host prefix), as given to
// --trusted-proxies. Blank entries are ignored, so "" yields nil (which New
// treats as loopback only). Every malformed entry is reported.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var (
		out  []netip.Prefix
		errs []error
	)
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("trusted proxy %q: %w", f, err))
				continue
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted proxy %q: not an IP address or CIDR", f))
			continue
		}
		if a.Zone() != "" {
			errs = append(errs, fmt.Errorf("trusted proxy %q: zones are not allowed", f))
			continue
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, errors.Join(errs...)
}

// Trusted reports whether addr is inside a trusted proxy prefix.
func (r *Resolver) Trusted(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range r.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP returns the client address of req as a canonical IP string
// (no port, no zone, IPv4-mapped IPv6 unmapped).
//
// If the direct peer (req.RemoteAddr) is not trusted, the answer is the
// peer and every forwarding header is ignored. If it is trusted:
//   - X-Forwarded-For (all header lines, in order, as one list) is walked
//     from the right, skipping trusted hops; the first untrusted address is
//     the client. If every hop is trusted, the left-most one is used.
//   - A malformed or empty entry stops the walk: everything to its left
//     was written by someone we cannot vouch for, so the answer is the last
//     address already accepted (the right-most trusted hop seen, or the
//     peer itself). An entry "ip:port" or "[ipv6]:port" counts as its IP.
//   - Without X-Forwarded-For, X-Real-IP (its last line) is used if it
//     parses; otherwise the peer.
//
// A RemoteAddr that does not parse as an IP (e.g. a Unix socket) is
// returned as is, with any port stripped, and treated as untrusted.
func (r *Resolver) ClientIP(req *http.Request) string {
	peer, ok := parseHop(req.RemoteAddr)
	if !ok {
		return Peer(req)
	}
	if !r.Trusted(peer) {
		return peer.String()
	}
	if xff := req.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		return r.walk(peer, xff).String()
	}
	if real := req.Header.Values("X-Real-IP"); len(real) > 0 {
		if a, ok := parseHop(real[len(real)-1]); ok {
			return a.String()
		}
	}
	return peer.String()
}

// Peer returns the direct peer of req (its RemoteAddr) without the port,
// or RemoteAddr as is when it has none. It is the client IP where no
// proxy is trusted, and the default of every component that takes a
// ClientIP function.
func Peer(req *http.Request) string {
	if h, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		return h
	}
	return req.RemoteAddr
}

// walk applies the right-to-left X-Forwarded-For rule starting from the
// trusted peer.
func (r *Resolver) walk(peer netip.Addr, lines []string) netip.Addr {
	var hops []string
	for _, l := range lines {
		hops = append(hops, strings.Split(l, ",")...)
	}
	last := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return last
		}
		if !r.Trusted(a) {
			return a
		}
		last = a
	}
	return last
}

// parseHop parses one forwarded address: "ip", "ip:port" or "[ip]:port",
// with surrounding spaces. The result is unmapped and zone-free.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

// RateKey returns the key to rate-limit ip (a ClientIP result) under:
// an IPv4 address as is, an IPv6 address as its /64 network, because one
// subscriber usually holds a whole /64 and could otherwise get a fresh
// bucket per address. Anything that is not an IP is returned unchanged.
func RateKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}
