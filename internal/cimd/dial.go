package cimd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// specialPrefixes are special-use ranges (RFC 6890 and its updates) that
// netip's predicates do not already cover. A client_id must never make
// passgate connect into its own network, to documentation or benchmarking
// ranges, or through translation prefixes that embed an IPv4 address we
// would otherwise have refused.
var specialPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT shared space
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
	netip.MustParsePrefix("::ffff:0:0/96"),   // IPv4-mapped (unmapped first anyway)
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments, incl. Teredo
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4
	netip.MustParsePrefix("3fff::/20"),       // documentation
	netip.MustParsePrefix("5f00::/16"),       // SRv6 SIDs
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// globalUnicast6 is the only IPv6 range the internet routes today.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// publicAddr reports whether a is an ordinary public unicast address:
// not private, loopback, link-local, unspecified, multicast, CGNAT,
// special-use, or an IPv4-mapped form of any of those.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.Zone() != "" || !a.IsGlobalUnicast() || a.IsPrivate() {
		// IsGlobalUnicast is false for unspecified, loopback, multicast
		// and link-local addresses, and for 255.255.255.255.
		return false
	}
	if a.Is6() && !globalUnicast6.Contains(a) {
		return false
	}
	for _, p := range specialPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// allowedAddr applies the SSRF policy: public addresses, plus loopback
// when the development option is on.
func (f *Fetcher) allowedAddr(a netip.Addr) bool {
	a = a.Unmap()
	if f.cfg.AllowLoopbackHTTP && a.IsLoopback() {
		return true
	}
	return publicAddr(a)
}

// dialContext resolves the host itself, refuses the connection unless
// every address is allowed (a name that mixes public and private answers
// is an attack or a misconfiguration either way), then dials the checked
// IP literally so nothing resolves the name a second time.
func (f *Fetcher) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("%w: network %s", ErrBlocked, network)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = f.lookupIP(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	for _, ip := range ips {
		if !f.allowedAddr(ip) {
			return nil, fmt.Errorf("%w: %s resolves to a special-use address", ErrBlocked, host)
		}
	}
	var errs []error
	for _, ip := range ips {
		c, err := f.dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// control runs on the socket right before connect(2) with the address
// actually being dialed. It repeats the policy check so that no path to
// the network (a resolver hook, a future code change, a proxy setting)
// can reach a refused address: this is what defeats DNS rebinding.
func (f *Fetcher) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable dial address", ErrBlocked)
	}
	if !f.allowedAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrBlocked, ap.Addr())
	}
	return nil
}
