package clientip

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/validtest"
)

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []netip.Prefix
		wantErr []string // substrings that must all appear in the error
	}{
		{name: "empty", in: "", want: nil},
		{name: "blanks", in: " , ,", want: nil},
		{name: "cidrs and bare", in: "10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1",
			want: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"),
				netip.MustParsePrefix("192.168.1.7/32"),
				netip.MustParsePrefix("fd00::/8"),
				netip.MustParsePrefix("::1/128"),
			}},
		{name: "masked", in: "10.1.2.3/8", want: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{name: "all errors reported", in: "nope,10.0.0.0/99,1.2.3.4,fe80::1%eth0",
			want:    []netip.Prefix{netip.MustParsePrefix("1.2.3.4/32")},
			wantErr: []string{`"nope"`, `"10.0.0.0/99"`, `"fe80::1%eth0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrefixes(tt.in)
			if diff := cmp.Diff(got, tt.want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("ParsePrefixes(%q) (-got +want):\n%s", tt.in, diff)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			validtest.Mentions(t, err, tt.wantErr...)
		})
	}
}

func TestClientIP(t *testing.T) {
	proxies := New([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("127.0.0.0/8"),
	})
	tests := []struct {
		name   string
		r      *Resolver
		remote string
		xff    []string
		realIP []string
		want   string
	}{
		{name: "no proxy", r: proxies, remote: "203.0.113.5:4711", want: "203.0.113.5"},
		{name: "untrusted peer spoofs xff", r: proxies, remote: "203.0.113.5:4711",
			xff: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "untrusted peer spoofs x-real-ip", r: proxies, remote: "203.0.113.5:4711",
			realIP: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "untrusted peer spoofs trusted address", r: proxies, remote: "203.0.113.5:4711",
			xff: []string{"10.0.0.1"}, want: "203.0.113.5"},
		{name: "trusted peer single hop", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "right-most untrusted wins over client-supplied left", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"1.1.1.1, 198.51.100.1, 10.0.0.9"}, want: "198.51.100.1"},
		{name: "multiple header lines are one list", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"1.1.1.1, 198.51.100.1", "10.0.0.9"}, want: "198.51.100.1"},
		{name: "all hops trusted uses left-most", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"10.1.1.1, 10.0.0.9"}, want: "10.1.1.1"},
		{name: "garbage at the right stops at peer", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"198.51.100.1, garbage"}, want: "10.0.0.2"},
		{name: "garbage behind a trusted hop stops at that hop", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"198.51.100.1, <script>, 10.0.0.9"}, want: "10.0.0.9"},
		{name: "garbage left of the client is never reached", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"garbage, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "empty entry stops", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"198.51.100.1,,10.0.0.9"}, want: "10.0.0.9"},
		{name: "empty header line stops at peer", r: proxies, remote: "10.0.0.2:80",
			xff: []string{""}, want: "10.0.0.2"},
		{name: "hop with port", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"198.51.100.1:5555"}, want: "198.51.100.1"},
		{name: "ipv6 hop with port", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"[2001:db8:2::1]:443"}, want: "2001:db8:2::1"},
		{name: "ipv6 trusted peer and hops", r: proxies, remote: "[2001:db8:1::5]:80",
			xff: []string{"2001:DB8:2::1, 2001:db8:1::7"}, want: "2001:db8:2::1"},
		{name: "mapped peer is unmapped and trusted", r: proxies, remote: "[::ffff:10.0.0.2]:80",
			xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "mapped untrusted peer", r: proxies, remote: "[::ffff:203.0.113.5]:80",
			xff: []string{"1.2.3.4"}, want: "203.0.113.5"},
		{name: "x-real-ip from trusted peer", r: proxies, remote: "10.0.0.2:80",
			realIP: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "x-real-ip last line", r: proxies, remote: "10.0.0.2:80",
			realIP: []string{"1.1.1.1", "198.51.100.1"}, want: "198.51.100.1"},
		{name: "x-real-ip garbage", r: proxies, remote: "10.0.0.2:80",
			realIP: []string{"nope"}, want: "10.0.0.2"},
		{name: "xff wins over x-real-ip", r: proxies, remote: "10.0.0.2:80",
			xff: []string{"198.51.100.1"}, realIP: []string{"1.1.1.1"}, want: "198.51.100.1"},
		{name: "default trusts loopback", r: New(nil), remote: "127.0.0.1:80",
			xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "default trusts ::1", r: New(nil), remote: "[::1]:80",
			xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "default does not trust private", r: New(nil), remote: "10.0.0.2:80",
			xff: []string{"198.51.100.1"}, want: "10.0.0.2"},
		{name: "zone stripped", r: New(nil), remote: "[fe80::1%eth0]:80", want: "fe80::1"},
		{name: "remote without port", r: proxies, remote: "203.0.113.5", want: "203.0.113.5"},
		{name: "unix socket peer", r: proxies, remote: "@", xff: []string{"1.1.1.1"}, want: "@"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tt.realIP {
				req.Header.Add("X-Real-IP", v)
			}
			if got := tt.r.ClientIP(req); got != tt.want {
				t.Errorf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewUnmapsPrefixes(t *testing.T) {
	r := New([]netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")})
	if !r.Trusted(netip.MustParseAddr("10.1.2.3")) {
		t.Error("mapped prefix does not match plain IPv4")
	}
	if r.Trusted(netip.MustParseAddr("11.0.0.1")) {
		t.Error("mapped prefix matches outside its range")
	}
}

// FuzzClientIP checks the invariants: the answer is the peer or an address
// written in a forwarding header, and it is always the peer when the peer
// is untrusted.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.2:80", "1.1.1.1, 198.51.100.1, 10.0.0.9", "", "")
	f.Add("10.0.0.2:80", "", "garbage", "198.51.100.1")
	f.Add("203.0.113.5:1", "10.0.0.1", "", "1.1.1.1")
	f.Add("[::1]:1", "[2001:db8::1]:5,::ffff:1.2.3.4", "x,,y", "")
	f.Add("127.0.0.1:9", "127.0.0.2,127.0.0.3", "", "")
	r := New([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
	})
	f.Fuzz(func(t *testing.T, remote, xff1, xff2, realIP string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = remote
		var lines []string
		for _, v := range []string{xff1, xff2} {
			if v != "" {
				req.Header.Add("X-Forwarded-For", v)
				lines = append(lines, strings.Split(v, ",")...)
			}
		}
		if realIP != "" {
			req.Header.Add("X-Real-IP", realIP)
			lines = append(lines, realIP)
		}
		got := r.ClientIP(req)

		peerAddr, peerOK := parseHop(remote)
		peer := remote
		if peerOK {
			peer = peerAddr.String()
		}
		if !peerOK || !r.Trusted(peerAddr) {
			if peerOK && got != peer {
				t.Fatalf("untrusted peer %q: got %q", remote, got)
			}
			if !peerOK && !strings.Contains(remote, got) {
				t.Fatalf("unparsable peer %q: got %q", remote, got)
			}
			return
		}
		if got == peer {
			return
		}
		if _, ok := parseHop(got); !ok {
			t.Fatalf("result %q is not an IP", got)
		}
		for _, l := range lines {
			if a, ok := parseHop(l); ok && a.String() == got {
				return
			}
		}
		t.Fatalf("result %q is neither the peer %q nor in the headers %q", got, peer, lines)
	})
}

func TestRateKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"203.0.113.5", "203.0.113.5"},
		{"::ffff:203.0.113.5", "203.0.113.5"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"@", "@"},
	}
	for _, tt := range tests {
		if got := RateKey(tt.in); got != tt.want {
			t.Errorf("RateKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
