package cimd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/clocktest"
	"github.com/passgate/passgate/internal/testing/validtest"
	"github.com/passgate/passgate/store"
)

func newClock() *clocktest.Clock { return clocktest.New(time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)) }

// docServer serves a document whose behaviour a test can change.
type docServer struct {
	*httptest.Server
	hits atomic.Int64

	mu      sync.Mutex
	handler http.HandlerFunc
}

func (s *docServer) set(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}

func (s *docServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	h := s.handler
	s.mu.Unlock()
	h(w, r)
}

func newDocServer(t *testing.T, useTLS bool) *docServer {
	t.Helper()
	s := &docServer{}
	if useTLS {
		s.Server = httptest.NewTLSServer(s)
	} else {
		s.Server = httptest.NewServer(s)
	}
	t.Cleanup(s.Close)
	return s
}

// newHeldDocServer serves a valid document at id, but holds every
// response until release is closed, so that concurrent Gets overlap one
// fetch.
func newHeldDocServer(t *testing.T) (srv *docServer, id string, release chan struct{}) {
	t.Helper()
	srv = newDocServer(t, false)
	id = srv.URL + "/cimd.json"
	release = make(chan struct{})
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		serveDoc(id, "")(w, r)
	})
	return srv, id, release
}

// waitForHit waits until a request has reached the server.
func (s *docServer) waitForHit() {
	for s.hits.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
}

func docJSON(clientID string) string {
	return fmt.Sprintf(`{"client_id":%q,"client_name":"Test Client","redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none"}`, clientID)
}

// serveDoc answers with a valid document for the requested URL's client
// ID, with the given Cache-Control (if any).
func serveDoc(clientID, cacheControl string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, docJSON(clientID))
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func TestGetLoopbackHTTP(t *testing.T) {
	srv := newDocServer(t, false)
	id := srv.URL + "/oauth/client.json"
	var accept string
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		serveDoc(id, "max-age=600")(w, r)
	})
	f := New(Config{AllowLoopbackHTTP: true, Now: newClock().Now, Logger: testLogger(t)})
	if !f.IsClientIDURL(id) {
		t.Fatalf("IsClientIDURL(%q) = false with AllowLoopbackHTTP", id)
	}
	doc, err := f.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(doc, minimalDocument(id, "Test Client", "http://127.0.0.1:33418/callback")); diff != "" {
		t.Errorf("Get (-got +want):\n%s", diff)
	}
	if accept != "application/json" {
		t.Errorf("Accept = %q", accept)
	}
	if _, err := f.Get(t.Context(), id); err != nil {
		t.Fatalf("second Get: %v", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("server hit %d times, want 1 (cached)", got)
	}
}

func TestHTTPSWithHostname(t *testing.T) {
	srv := newDocServer(t, true)
	addr := srv.Listener.Addr().String()
	port := addr[strings.LastIndex(addr, ":")+1:]
	id := "https://example.com:" + port + "/cimd.json"
	srv.set(serveDoc(id, ""))
	var looked []string
	var mu sync.Mutex
	f := New(Config{
		AllowLoopbackHTTP: true,
		RootCAs:           srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
		LookupIP: func(_ context.Context, host string) ([]netip.Addr, error) {
			mu.Lock()
			looked = append(looked, host)
			mu.Unlock()
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
		Logger: testLogger(t),
	})
	doc, err := f.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if doc.ClientID != id || doc.Host() != "example.com:"+port {
		t.Errorf("doc = %+v, host %q", doc, doc.Host())
	}
	if diff := cmp.Diff(looked, []string{"example.com"}); diff != "" {
		t.Errorf("lookups (-got +want):\n%s", diff)
	}
}

func TestLoopbackRefusedByDefault(t *testing.T) {
	plain := newDocServer(t, false)
	plain.set(serveDoc(plain.URL+"/c", ""))
	tlsSrv := newDocServer(t, true)
	addr := tlsSrv.Listener.Addr().String()
	port := addr[strings.LastIndex(addr, ":")+1:]
	tlsSrv.set(func(w http.ResponseWriter, r *http.Request) {
		serveDoc("https://"+r.Host+"/c", "")(w, r)
	})
	roots := tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	toLoopback := func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}

	tests := []struct {
		name    string
		cfg     Config
		id      string
		wantErr error
	}{
		{name: "http loopback URL", id: plain.URL + "/c", wantErr: ErrInvalidURL},
		{name: "https loopback IP literal", cfg: Config{RootCAs: roots}, id: "https://127.0.0.1:" + port + "/c", wantErr: ErrBlocked},
		{name: "https localhost via the system resolver", cfg: Config{RootCAs: roots}, id: "https://localhost:" + port + "/c", wantErr: ErrBlocked},
		{name: "name resolving to loopback", cfg: Config{RootCAs: roots, LookupIP: toLoopback}, id: "https://example.com:" + port + "/c", wantErr: ErrBlocked},
		{name: "ipv6 loopback literal", cfg: Config{RootCAs: roots}, id: "https://[::1]:" + port + "/c", wantErr: ErrBlocked},
		{name: "mapped loopback literal", cfg: Config{RootCAs: roots}, id: "https://[::ffff:127.0.0.1]:" + port + "/c", wantErr: ErrBlocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = testLogger(t)
			f := New(tt.cfg)
			_, err := f.Get(t.Context(), tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
		})
	}
	if plain.hits.Load() != 0 || tlsSrv.hits.Load() != 0 {
		t.Errorf("a refused fetch reached a server: %d, %d hits", plain.hits.Load(), tlsSrv.hits.Load())
	}
}

// TestPrivateAddressesRefused makes names resolve to special-use addresses.
// The refusal happens before any connection is attempted, so no packet is
// sent to these ranges.
func TestPrivateAddressesRefused(t *testing.T) {
	tests := []struct {
		name     string
		addrs    []string
		loopback bool
	}{
		{name: "rfc1918 10/8", addrs: []string{"10.0.0.1"}},
		{name: "rfc1918 192.168/16", addrs: []string{"192.168.1.1"}},
		{name: "rfc1918 172.16/12", addrs: []string{"172.31.255.255"}},
		{name: "cloud metadata", addrs: []string{"169.254.169.254"}},
		{name: "cgnat", addrs: []string{"100.64.0.1"}},
		{name: "unspecified", addrs: []string{"0.0.0.0"}},
		{name: "mapped private", addrs: []string{"::ffff:10.0.0.1"}},
		{name: "ula", addrs: []string{"fd00::1"}},
		{name: "v6 link-local", addrs: []string{"fe80::1"}},
		{name: "nat64 of private", addrs: []string{"64:ff9b::a00:1"}},
		{name: "loopback without option", addrs: []string{"127.0.0.1"}},
		{name: "private even with loopback option", addrs: []string{"10.0.0.1"}, loopback: true},
		{name: "mixed answers refused whole", addrs: []string{"127.0.0.1", "10.0.0.1"}, loopback: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dialed atomic.Bool
			f := New(Config{
				AllowLoopbackHTTP: tt.loopback,
				LookupIP: func(context.Context, string) ([]netip.Addr, error) {
					var out []netip.Addr
					for _, a := range tt.addrs {
						out = append(out, netip.MustParseAddr(a))
					}
					return out, nil
				},
				Logger: testLogger(t),
			})
			orig := f.dialer.Control
			f.dialer.Control = func(network, address string, c syscall.RawConn) error {
				dialed.Store(true)
				return orig(network, address, c)
			}
			_, err := f.Get(t.Context(), "https://client.example/cimd.json")
			if !errors.Is(err, ErrBlocked) {
				t.Fatalf("Get = %v, want ErrBlocked", err)
			}
			if dialed.Load() {
				t.Error("a connection was attempted")
			}
		})
	}
}

func TestLookupFailureIsFetchError(t *testing.T) {
	f := New(Config{
		LookupIP: func(context.Context, string) ([]netip.Addr, error) {
			return nil, errors.New("no such host")
		},
		Logger: testLogger(t),
	})
	if _, err := f.Get(t.Context(), "https://client.example/cimd.json"); !errors.Is(err, ErrFetch) {
		t.Fatalf("Get = %v, want ErrFetch", err)
	}
}

// TestControlRefuses exercises the socket-level check that backs up the
// resolver check (DNS rebinding, or any other path to the dialer).
func TestControlRefuses(t *testing.T) {
	strict := New(Config{})
	dev := New(Config{AllowLoopbackHTTP: true})
	tests := []struct {
		addr     string
		strictOK bool
		devOK    bool
	}{
		{"10.0.0.1:443", false, false},
		{"127.0.0.1:443", false, true},
		{"127.9.9.9:443", false, true},
		{"[::1]:443", false, true},
		{"[::ffff:127.0.0.1]:443", false, true},
		{"[::ffff:10.0.0.1]:443", false, false},
		{"[::ffff:192.168.0.1]:443", false, false},
		{"169.254.169.254:80", false, false},
		{"0.0.0.0:443", false, false},
		{"[::]:443", false, false},
		{"224.0.0.1:443", false, false},
		{"255.255.255.255:443", false, false},
		{"100.100.100.100:443", false, false},
		{"[fe80::1%lo]:443", false, false},
		{"8.8.8.8:443", true, true},
		{"[2606:4700:4700::1111]:443", true, true},
		{"garbage", false, false},
	}
	for _, tt := range tests {
		if got := strict.control("tcp", tt.addr, nil) == nil; got != tt.strictOK {
			t.Errorf("strict control(%s) allowed=%v, want %v", tt.addr, got, tt.strictOK)
		}
		if got := dev.control("tcp", tt.addr, nil) == nil; got != tt.devOK {
			t.Errorf("dev control(%s) allowed=%v, want %v", tt.addr, got, tt.devOK)
		}
		if err := strict.control("tcp", tt.addr, nil); err != nil && !errors.Is(err, ErrBlocked) {
			t.Errorf("control(%s) = %v, not ErrBlocked", tt.addr, err)
		}
	}
}

func TestPublicAddr(t *testing.T) {
	public := func(addr string) bool { return publicAddr(netip.MustParseAddr(addr)) }
	validtest.Check(t, "publicAddr", validtest.Bool(public), validtest.Cases[string]{
		Accept: []string{"1.1.1.1", "93.184.216.34", "2a00:1450:4001::1", "100.128.0.1"},
		Refuse: []string{
			"192.0.2.1",
			"198.51.100.1",
			"203.0.113.1",
			"198.18.0.1",
			"240.0.0.1",
			"192.0.0.8",
			"100.127.255.255",
			"2001:db8::1",
			"2001::1",
			"2002:a00:1::",
			"::a00:1",
			"ff02::1",
			"fec0::1",
			"::1",
			"4000::1",
		},
	})
}

func TestFetchFailures(t *testing.T) {
	srv := newDocServer(t, false)
	var otherHits atomic.Int64
	id := srv.URL + "/cimd.json"
	tests := []struct {
		name    string
		cfg     Config
		h       http.HandlerFunc
		wantErr error
		wantMsg string
	}{
		{name: "redirect not followed", wantErr: ErrFetch, wantMsg: "redirects are not followed",
			h: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/other" {
					otherHits.Add(1)
					serveDoc(id, "")(w, r)
					return
				}
				http.Redirect(w, r, "/other", http.StatusFound)
			}},
		{name: "404", wantErr: ErrFetch, wantMsg: "status 404", h: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
		{name: "500", wantErr: ErrFetch, wantMsg: "status 500", h: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }},
		{name: "204", wantErr: ErrFetch, wantMsg: "status 204", h: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }},
		{name: "too large with length", cfg: Config{MaxBytes: 100}, wantErr: ErrFetch, wantMsg: "larger than 100 bytes",
			h: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, docJSON(id)+strings.Repeat(" ", 200))
			}},
		{name: "too large streamed", cfg: Config{MaxBytes: 100}, wantErr: ErrFetch, wantMsg: "larger than 100 bytes",
			h: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				for range 50 {
					fmt.Fprint(w, "          ")
					w.(http.Flusher).Flush()
				}
			}},
		{name: "exactly max is fine", cfg: Config{MaxBytes: int64(len(docJSON(id)))}, h: serveDoc(id, "")},
		{name: "text/plain", wantErr: ErrInvalidDocument, wantMsg: "Content-Type must be application/json",
			h: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				fmt.Fprint(w, docJSON(id))
			}},
		{name: "no content type", wantErr: ErrInvalidDocument, wantMsg: "Content-Type must be application/json",
			h: func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil // not sniffed
				fmt.Fprint(w, docJSON(id))
			}},
		{name: "json suffix is fine", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/client-metadata+json; charset=utf-8")
			fmt.Fprint(w, docJSON(id))
		}},
		{name: "json parameters are fine", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "Application/JSON; charset=utf-8")
			fmt.Fprint(w, docJSON(id))
		}},
		{name: "client_name missing", wantErr: ErrInvalidDocument, wantMsg: "client_name is missing",
			h: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"]}`, id)
			}},
		{name: "invalid document", wantErr: ErrInvalidDocument, wantMsg: "client_id does not match",
			h: serveDoc("https://evil.example/cimd.json", "")},
		{name: "html", wantErr: ErrInvalidDocument,
			h: func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html></html>") }},
		{name: "secret in document", wantErr: ErrInvalidDocument, wantMsg: "client_secret must not be",
			h: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"client_secret":"hunter2"}`, id)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.set(tt.h)
			tt.cfg.AllowLoopbackHTTP = true
			logs := &proc.Buffer{}
			tt.cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			f := New(tt.cfg)
			_, err := f.Get(t.Context(), id)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error()+logs.String(), "hunter2") {
				t.Error("document contents leaked into the error or logs")
			}
			// Errors are never cached.
			before := srv.hits.Load()
			f.Get(t.Context(), id)
			if srv.hits.Load() == before {
				t.Error("an error was cached")
			}
		})
	}
	if otherHits.Load() != 0 {
		t.Errorf("the redirect target was fetched %d times", otherHits.Load())
	}
}

func TestTimeout(t *testing.T) {
	srv := newDocServer(t, false)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	f := New(Config{AllowLoopbackHTTP: true, Timeout: 200 * time.Millisecond, Logger: testLogger(t)})
	start := time.Now()
	_, err := f.Get(t.Context(), srv.URL+"/cimd.json")
	if !errors.Is(err, ErrFetch) {
		t.Fatalf("Get = %v, want ErrFetch", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Get took %v with a 200ms timeout", d)
	}
}

func TestSlowBodyTimeout(t *testing.T) {
	srv := newDocServer(t, false)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "{")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	f := New(Config{AllowLoopbackHTTP: true, Timeout: 200 * time.Millisecond, Logger: testLogger(t)})
	start := time.Now()
	if _, err := f.Get(t.Context(), srv.URL+"/cimd.json"); !errors.Is(err, ErrFetch) {
		t.Fatalf("Get = %v, want ErrFetch", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Get took %v with a 200ms timeout", d)
	}
}

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)
	f := New(Config{MinTTL: 5 * time.Minute, MaxTTL: 24 * time.Hour})
	tests := []struct {
		name string
		h    map[string]string
		want time.Duration
	}{
		{name: "nothing uses MinTTL", want: 5 * time.Minute},
		{name: "max-age", h: map[string]string{"Cache-Control": "public, max-age=3600"}, want: time.Hour},
		{name: "max-age minus age", h: map[string]string{"Cache-Control": "max-age=3600", "Age": "600"}, want: 50 * time.Minute},
		{name: "short max-age clamped up", h: map[string]string{"Cache-Control": "max-age=10"}, want: 5 * time.Minute},
		{name: "huge max-age clamped down", h: map[string]string{"Cache-Control": "max-age=99999999999"}, want: 24 * time.Hour},
		{name: "no-store uses MinTTL", h: map[string]string{"Cache-Control": "no-store"}, want: 5 * time.Minute},
		{name: "no-cache uses MinTTL", h: map[string]string{"Cache-Control": "max-age=3600, no-cache"}, want: 5 * time.Minute},
		{name: "malformed max-age", h: map[string]string{"Cache-Control": "max-age=abc"}, want: 5 * time.Minute},
		{name: "quoted max-age", h: map[string]string{"Cache-Control": `max-age="7200"`}, want: 2 * time.Hour},
		{name: "expires relative to date", h: map[string]string{
			"Expires": "Tue, 28 Jul 2026 14:00:00 GMT", "Date": "Tue, 28 Jul 2026 11:00:00 GMT"}, want: 3 * time.Hour},
		{name: "expires relative to now", h: map[string]string{"Expires": "Tue, 28 Jul 2026 14:00:00 GMT"}, want: 2 * time.Hour},
		{name: "max-age beats expires", h: map[string]string{"Cache-Control": "max-age=3600", "Expires": "Tue, 28 Jul 2026 20:00:00 GMT"}, want: time.Hour},
		{name: "invalid expires", h: map[string]string{"Expires": "0"}, want: 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			if got := f.ttl(h, now); got != tt.want {
				t.Errorf("ttl = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCacheExpiry(t *testing.T) {
	srv := newDocServer(t, false)
	id := srv.URL + "/cimd.json"
	srv.set(serveDoc(id, "max-age=600"))
	c := newClock()
	f := New(Config{AllowLoopbackHTTP: true, Now: c.Now, MinTTL: time.Minute, Logger: testLogger(t)})
	get := func() {
		t.Helper()
		if _, err := f.Get(t.Context(), id); err != nil {
			t.Fatalf("Get: %v", err)
		}
	}
	get()
	c.Advance(599 * time.Second)
	get()
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("hits = %d before expiry, want 1", got)
	}
	c.Advance(time.Second)
	get()
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("hits = %d after expiry, want 2", got)
	}
}

func TestStale(t *testing.T) {
	srv := newDocServer(t, false)
	id := srv.URL + "/cimd.json"
	srv.set(serveDoc(id, "max-age=300"))
	c := newClock()
	logs := &proc.Buffer{}
	f := New(Config{AllowLoopbackHTTP: true, Now: c.Now, MinTTL: time.Minute, MaxStale: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	first, err := f.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}

	// The client's server breaks: the stale copy is served, with a warning.
	srv.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	c.Advance(301 * time.Second)
	got, err := f.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get with a failing server: %v", err)
	}
	if diff := cmp.Diff(got, first); diff != "" {
		t.Errorf("stale doc (-got +want):\n%s", diff)
	}
	if !strings.Contains(logs.String(), "stale") || !strings.Contains(logs.String(), id) {
		t.Errorf("no stale warning logged: %q", logs.String())
	}
	if strings.Contains(logs.String(), "Test Client") {
		t.Errorf("document contents logged: %q", logs.String())
	}
	// It does not retry on every request…
	hits := srv.hits.Load()
	f.Get(t.Context(), id)
	if srv.hits.Load() != hits {
		t.Error("retried immediately after a failed refetch")
	}
	// …but does after a while.
	c.Advance(time.Minute)
	f.Get(t.Context(), id)
	if srv.hits.Load() != hits+1 {
		t.Error("did not retry after the back-off")
	}

	// Past MaxStale the error comes through.
	c.Advance(2 * time.Hour)
	if _, err := f.Get(t.Context(), id); !errors.Is(err, ErrFetch) {
		t.Fatalf("Get past MaxStale = %v, want ErrFetch", err)
	}
}

func TestDefinitiveFailureDropsCache(t *testing.T) {
	for _, tt := range []struct {
		name    string
		h       func(id string) http.HandlerFunc
		wantErr error
	}{
		{name: "gone", wantErr: ErrFetch, h: func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }
		}},
		{name: "invalid now", wantErr: ErrInvalidDocument, h: func(string) http.HandlerFunc {
			return serveDoc("https://evil.example/x", "")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newDocServer(t, false)
			id := srv.URL + "/cimd.json"
			srv.set(serveDoc(id, "max-age=300"))
			c := newClock()
			f := New(Config{AllowLoopbackHTTP: true, Now: c.Now, MinTTL: time.Minute, Logger: testLogger(t)})
			if _, err := f.Get(t.Context(), id); err != nil {
				t.Fatalf("Get: %v", err)
			}
			srv.set(tt.h(id))
			c.Advance(301 * time.Second)
			if _, err := f.Get(t.Context(), id); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get = %v, want %v", err, tt.wantErr)
			}
			f.mu.Lock()
			_, cached := f.cache[id]
			f.mu.Unlock()
			if cached {
				t.Error("cache entry kept after a definitive failure")
			}
		})
	}
}

func TestSingleflight(t *testing.T) {
	srv, id, release := newHeldDocServer(t)
	f := New(Config{AllowLoopbackHTTP: true, Logger: testLogger(t)})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.Get(t.Context(), id)
			errs <- err
		}()
	}
	srv.waitForHit()
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Get: %v", err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("hits = %d, want 1", got)
	}
}

func TestCallerCancelDoesNotAbortSharedFetch(t *testing.T) {
	srv, id, release := newHeldDocServer(t)
	f := New(Config{AllowLoopbackHTTP: true, Logger: testLogger(t)})
	ctx, cancel := context.WithCancel(t.Context())
	impatient := make(chan error, 1)
	go func() {
		_, err := f.Get(ctx, id)
		impatient <- err
	}()
	srv.waitForHit()
	patient := make(chan error, 1)
	go func() {
		_, err := f.Get(t.Context(), id)
		patient <- err
	}()
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Get = %v", err)
	}
	close(release)
	if err := <-patient; err != nil {
		t.Errorf("patient Get = %v", err)
	}
}

func TestMaxEntries(t *testing.T) {
	srv := newDocServer(t, false)
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		serveDoc(srv.URL+r.URL.Path, "")(w, r)
	})
	f := New(Config{AllowLoopbackHTTP: true, MaxEntries: 2, Logger: testLogger(t)})
	for _, p := range []string{"/a", "/b", "/c", "/d"} {
		if _, err := f.Get(t.Context(), srv.URL+p); err != nil {
			t.Fatalf("Get %s: %v", p, err)
		}
	}
	f.mu.Lock()
	n := len(f.cache)
	f.mu.Unlock()
	if n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
}

func TestGetRejectsBadURLWithoutFetching(t *testing.T) {
	f := New(Config{
		LookupIP: func(context.Context, string) ([]netip.Addr, error) {
			t.Error("resolver called for an invalid URL")
			return nil, errors.New("no")
		},
	})
	for _, id := range []string{"client-123", "https://client.example", "https://u@client.example/c", "ftp://client.example/c"} {
		if _, err := f.Get(t.Context(), id); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("Get(%q) = %v, want ErrInvalidURL", id, err)
		}
	}
}

func TestResolveClient(t *testing.T) {
	srv := newDocServer(t, false)
	id := srv.URL + "/cimd.json"
	srv.set(serveDoc(id, ""))
	f := New(Config{AllowLoopbackHTTP: true, Logger: testLogger(t)})
	c, err := f.ResolveClient(t.Context(), id)
	if err != nil {
		t.Fatalf("ResolveClient: %v", err)
	}
	want := store.Client{
		ID:                      id,
		Name:                    "Test Client",
		RedirectURIs:            []string{"http://127.0.0.1:33418/callback"},
		TokenEndpointAuthMethod: "none",
		GrantTypes:              []string{"authorization_code"},
		Source:                  SourceMetadataDocument,
	}
	if diff := cmp.Diff(c, want); diff != "" {
		t.Errorf("ResolveClient (-got +want):\n%s", diff)
	}

	srv.set(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	for _, bad := range []string{srv.URL + "/gone.json", "https://u@x.example/c"} {
		_, err := f.ResolveClient(t.Context(), bad)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ResolveClient(%q) = %v, want store.ErrNotFound", bad, err)
		}
		if errors.Is(err, store.ErrUnavailable) {
			t.Errorf("ResolveClient(%q) = %v, must not be ErrUnavailable", bad, err)
		}
	}
}

// TestResolveClientPublicReason: the reason the authorization page shows
// names the rule a document broke (its content type, a missing
// client_name), and says no more than "could not be fetched" for network
// failures, whose texts may name internal addresses.
func TestResolveClientPublicReason(t *testing.T) {
	srv := newDocServer(t, false)
	id := srv.URL + "/cimd.json"
	f := New(Config{AllowLoopbackHTTP: true, Logger: testLogger(t)})
	tests := []struct {
		name string
		h    http.HandlerFunc
		want string
	}{
		{"text/plain", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, docJSON(id))
		}, "Content-Type must be application/json (or a +json type)"},
		{"no client_name", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"]}`, id)
		}, "client_name is missing"},
		{"404", http.NotFound, "it could not be fetched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.set(tt.h)
			_, err := f.ResolveClient(t.Context(), id)
			var pr interface{ PublicReason() string }
			if !errors.As(err, &pr) {
				t.Fatalf("ResolveClient = %v, without a PublicReason", err)
			}
			if got := pr.PublicReason(); got != tt.want {
				t.Errorf("PublicReason = %q, want %q", got, tt.want)
			}
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ResolveClient = %v, want store.ErrNotFound", err)
			}
		})
	}
}
