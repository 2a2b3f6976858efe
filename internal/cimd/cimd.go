// Package cimd fetches, validates and caches OAuth Client ID Metadata
// Documents (draft-ietf-oauth-client-id-metadata-document): a client whose
// client_id is an https URL publishes its metadata at that URL, and
// passgate fetches it instead of requiring registration.
//
// The fetch is built to be safe when the URL comes from an attacker: https
// only, no redirects, a size limit and a total timeout, and a dialer that
// refuses private, loopback, link-local and other special-use addresses
// after DNS resolution and again on the socket actually dialed (defeating
// DNS rebinding). Documents are cached per their HTTP caching headers,
// clamped to [MinTTL, MaxTTL]; errors are never cached, and a stale copy
// is served when a refetch fails transiently.
package cimd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/passgate/passgate/internal/oauth"
)

// Errors returned by Get, wrapped with detail. Every one of them means the
// client is unknown: the authorization endpoint must show an error page
// (never redirect: the redirect URI is unverified) and the token endpoint
// answers invalid_client. Their text never contains document contents.
var (
	// ErrInvalidURL: the client_id is not a valid Client Identifier URL.
	ErrInvalidURL = errors.New("invalid client identifier URL")
	// ErrBlocked: the URL's host resolves to an address passgate must not
	// connect to (SSRF guard).
	ErrBlocked = errors.New("client metadata host is not allowed")
	// ErrFetch: the document could not be retrieved: network error,
	// timeout, a status other than 200 (redirects included), or a body
	// larger than MaxBytes.
	ErrFetch = errors.New("fetch client metadata")
	// ErrInvalidDocument: the document was retrieved but breaks a rule of
	// the draft or of passgate (see Parse).
	ErrInvalidDocument = errors.New("invalid client metadata document")
)

// Config configures a Fetcher. The zero value is a safe production
// configuration.
type Config struct {
	// AllowLoopbackHTTP allows http:// client IDs on loopback hosts and
	// connections to loopback addresses, for local development and tests.
	// Never enable it in production: any client could then make passgate
	// send requests to services on its own host. Default false.
	AllowLoopbackHTTP bool
	// PrivateSchemes is the policy for private-use redirect URI schemes
	// of native apps (RFC 8252 §7.1, e.g. cursor://); use the same setting
	// as dynamic registration. Optional; the zero value is
	// oauth.PrivateSchemesDefault.
	PrivateSchemes oauth.PrivateSchemes
	// MaxBytes is the largest document accepted. Optional; default 5 KiB,
	// the draft's recommendation (§8.7).
	MaxBytes int64
	// Timeout bounds one fetch from dial to the last byte. Optional;
	// default 5s.
	Timeout time.Duration
	// MinTTL and MaxTTL clamp the cache lifetime derived from the
	// response's Cache-Control max-age or Expires. A response that forbids
	// caching (no-store, no-cache, max-age=0) or says nothing is kept for
	// MinTTL: the draft lets the server set its own lower bound (§5.2),
	// and refetching on every request would let anyone make passgate
	// hammer a third party. Optional; defaults 5m and 24h.
	MinTTL, MaxTTL time.Duration
	// MaxStale is how long after expiry a cached document may still be
	// served when a refetch fails transiently (network error, timeout,
	// 5xx, 408, 429). Definitive failures (4xx, redirect, invalid
	// document, blocked address) drop the cached copy instead. Optional;
	// default 24h; negative disables stale serving.
	MaxStale time.Duration
	// MaxEntries bounds the cache; when full, the entry expiring soonest
	// is dropped. Optional; default 1000.
	MaxEntries int
	// Now is the clock for cache lifetimes. Optional; default time.Now.
	Now func() time.Time
	// Logger receives warnings (stale copies served). Optional; default
	// slog.Default(). Client IDs are logged, document contents never.
	Logger *slog.Logger
	// LookupIP resolves a host name. Optional; default
	// net.DefaultResolver.LookupNetIP(ctx, "ip", host). Tests use it to
	// make names resolve to chosen addresses; whatever it returns is
	// still checked, on the dialed socket too.
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// RootCAs verifies servers' TLS certificates. Optional; default the
	// system roots. Tests pass an httptest server's pool.
	RootCAs *x509.CertPool
}

// Fetcher fetches and caches documents. It is safe for concurrent use.
type Fetcher struct {
	cfg    Config
	log    *slog.Logger
	dialer *net.Dialer
	client *http.Client
	group  singleflight.Group

	mu    sync.Mutex
	cache map[string]*entry
}

type entry struct {
	doc     Document
	expires time.Time // fresh until
	retryAt time.Time // after a failed refetch, serve stale until then
}

// New returns a Fetcher, filling in defaults for zero Config fields.
func New(cfg Config) *Fetcher {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 5 << 10
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = 5 * time.Minute
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	if cfg.MaxTTL < cfg.MinTTL {
		cfg.MaxTTL = cfg.MinTTL
	}
	if cfg.MaxStale == 0 {
		cfg.MaxStale = 24 * time.Hour
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LookupIP == nil {
		cfg.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	f := &Fetcher{cfg: cfg, log: cfg.Logger, cache: map[string]*entry{}}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.dialer = &net.Dialer{Timeout: cfg.Timeout, Control: f.control}
	f.client = &http.Client{
		Transport: &http.Transport{
			Proxy:       nil, // a proxy would dial on our behalf, unchecked
			DialContext: f.dialContext,
			TLSClientConfig: &tls.Config{
				RootCAs:    cfg.RootCAs,
				MinVersion: tls.VersionTLS12,
			},
			TLSHandshakeTimeout:    cfg.Timeout,
			ResponseHeaderTimeout:  cfg.Timeout,
			MaxResponseHeaderBytes: 16 << 10,
			// Never ask for compression: documents are tiny, and a
			// small compressed body can inflate enormously.
			DisableCompression: true,
			ForceAttemptHTTP2:  true,
			MaxIdleConns:       16,
			IdleConnTimeout:    30 * time.Second,
		},
		// The draft forbids following redirects (§5): a redirect could
		// point anywhere, and the document must come from the client_id
		// URL itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

func (f *Fetcher) lookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return f.cfg.LookupIP(ctx, host)
}

// IsClientIDURL reports whether s is a Client Identifier URL this Fetcher
// would fetch: https, or loopback http with AllowLoopbackHTTP. Use it to
// decide whether a client_id is a metadata document client rather than a
// registered one (passgate's own client IDs never look like URLs).
func (f *Fetcher) IsClientIDURL(s string) bool {
	return ValidateClientIDURL(s, f.cfg.AllowLoopbackHTTP) == nil
}

// Get returns the validated document for clientID, from the cache when
// fresh. Concurrent calls for one URL share a single fetch. If ctx ends
// first, Get returns ctx.Err() but the shared fetch runs on (bounded by
// Timeout) so other callers still get its result.
func (f *Fetcher) Get(ctx context.Context, clientID string) (Document, error) {
	if err := ValidateClientIDURL(clientID, f.cfg.AllowLoopbackHTTP); err != nil {
		return Document{}, err
	}
	now := f.cfg.Now()
	f.mu.Lock()
	if e, ok := f.cache[clientID]; ok && (now.Before(e.expires) || now.Before(e.retryAt)) {
		doc := e.doc
		f.mu.Unlock()
		return doc, nil
	}
	f.mu.Unlock()

	fetchCtx := context.WithoutCancel(ctx)
	ch := f.group.DoChan(clientID, func() (any, error) {
		return f.refresh(fetchCtx, clientID)
	})
	select {
	case <-ctx.Done():
		return Document{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return Document{}, res.Err
		}
		return res.Val.(Document), nil
	}
}

// refresh fetches clientID and updates the cache, falling back to a stale
// copy on transient failure.
func (f *Fetcher) refresh(ctx context.Context, clientID string) (Document, error) {
	doc, ttl, err := f.fetch(ctx, clientID)
	now := f.cfg.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.store(clientID, &entry{doc: doc, expires: now.Add(ttl)})
		return doc, nil
	}
	e, ok := f.cache[clientID]
	if !ok {
		return Document{}, err
	}
	var te *transientError
	if errors.As(err, &te) && f.cfg.MaxStale > 0 && now.Before(e.expires.Add(f.cfg.MaxStale)) {
		// Do not retry on every request while the client's server is
		// down; each retry could cost a caller the full Timeout.
		e.retryAt = now.Add(min(time.Minute, f.cfg.MinTTL))
		f.log.WarnContext(ctx, "serving stale client metadata document after a failed refetch",
			"client_id", clientID, "expired", e.expires, "err", err)
		return e.doc, nil
	}
	delete(f.cache, clientID)
	return Document{}, err
}

// store inserts e, evicting the entry that expires soonest when full.
// Callers hold f.mu.
func (f *Fetcher) store(clientID string, e *entry) {
	if _, ok := f.cache[clientID]; !ok && len(f.cache) >= f.cfg.MaxEntries {
		var (
			victim string
			soon   time.Time
		)
		for k, v := range f.cache {
			if victim == "" || v.expires.Before(soon) {
				victim, soon = k, v.expires
			}
		}
		delete(f.cache, victim)
	}
	f.cache[clientID] = e
}

// transientError marks failures after which a stale copy may be served.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// fetch does one GET and validates the result.
func (f *Fetcher) fetch(ctx context.Context, clientID string) (Document, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return Document{}, 0, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "passgate")
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrBlocked) {
			return Document{}, 0, fmt.Errorf("fetch %s: %w", clientID, ErrBlocked)
		}
		return Document{}, 0, &transientError{fmt.Errorf("%w %s: %v", ErrFetch, clientID, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("%w %s: status %d", ErrFetch, clientID, resp.StatusCode)
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			err = fmt.Errorf("%w %s: status %d: redirects are not followed", ErrFetch, clientID, resp.StatusCode)
		case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
			return Document{}, 0, &transientError{err}
		}
		return Document{}, 0, err
	}
	if !jsonMediaType(resp.Header.Get("Content-Type")) {
		// The draft's newer revisions make a non-JSON type an error, and
		// a text/html or text/plain answer is a page, not a document
		// (a host that serves whatever it is asked for).
		return Document{}, 0, fmt.Errorf("client %s: %w: Content-Type must be application/json (or a +json type)", clientID, ErrInvalidDocument)
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		return Document{}, 0, fmt.Errorf("%w %s: document larger than %d bytes", ErrFetch, clientID, f.cfg.MaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if err != nil {
		return Document{}, 0, &transientError{fmt.Errorf("%w %s: read body: %v", ErrFetch, clientID, err)}
	}
	if int64(len(body)) > f.cfg.MaxBytes {
		return Document{}, 0, fmt.Errorf("%w %s: document larger than %d bytes", ErrFetch, clientID, f.cfg.MaxBytes)
	}
	doc, err := Parse(clientID, body, f.cfg.PrivateSchemes)
	if err != nil {
		return Document{}, 0, fmt.Errorf("client %s: %w", clientID, err)
	}
	return doc, f.ttl(resp.Header, f.cfg.Now()), nil
}

// jsonMediaType reports whether ct is application/json or a */*+json type,
// with any parameters.
func jsonMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasSuffix(mt, "+json") && strings.Contains(mt, "/"))
}

// ttl derives the cache lifetime from Cache-Control (no-store, no-cache,
// max-age, minus Age) or else Expires (relative to Date, or now), clamped
// to [MinTTL, MaxTTL].
func (f *Fetcher) ttl(h http.Header, now time.Time) time.Duration {
	d, ok := freshness(h, now)
	if !ok {
		d = f.cfg.MinTTL
	}
	return max(f.cfg.MinTTL, min(d, f.cfg.MaxTTL))
}

// freshness is the RFC 9111 §4.2.1 freshness lifetime, minus the current
// age; ok is false when the response says nothing about it.
func freshness(h http.Header, now time.Time) (time.Duration, bool) {
	maxAge, haveMaxAge := time.Duration(0), false
	for _, line := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
				if err != nil || n < 0 {
					return 0, true // malformed: treat as stale (RFC 9111 §4.2.1)
				}
				if !haveMaxAge {
					maxAge, haveMaxAge = time.Duration(min(n, 1<<31))*time.Second, true
				}
			}
		}
	}
	if haveMaxAge {
		if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 {
			maxAge -= time.Duration(min(age, 1<<31)) * time.Second
		}
		return max(maxAge, 0), true
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0, true // invalid Expires means already expired
		}
		base := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			base = d
		}
		return max(t.Sub(base), 0), true
	}
	return 0, false
}
