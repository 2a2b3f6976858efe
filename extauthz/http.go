package extauthz

import (
	"net/http"
	"strings"
	"time"
)

// HTTPHandler returns the HTTP check, to be mounted at CheckPath and
// CheckPath+"/" (see the package documentation for the headers it reads).
// It answers 200 (allowed, identity in the response headers), 401 or 403
// (denied, with WWW-Authenticate and a JSON body), or 503 when the store
// cannot be asked about an uncached token.
func (c *Checker) HTTPHandler() http.Handler {
	return http.HandlerFunc(c.serveHTTP)
}

func (c *Checker) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// The map lives on this stack frame (Check does not keep it).
	req, envoy := httpRequest(r, make(map[string]string, 3))
	d, _ := c.Check(r.Context(), req)
	c.metrics.observe(frontendHTTP, d.Reason, time.Since(start).Seconds())
	h := w.Header()
	// One backing array for all values: fewer allocations per check.
	vals := make([]string, len(d.Headers))
	for i, hd := range d.Headers {
		vals[i] = hd.Value
		h[hd.Name] = vals[i : i+1 : i+1]
	}
	if d.Allow {
		if envoy && d.removeJoined != nil {
			// Envoy's HTTP ext_authz removes these from the upstream
			// request. nginx, Traefik and Caddy ignore the header (their
			// own configuration removes Authorization), so they are not
			// sent it: every byte of a check answer is paid twice, by
			// passgate writing it and by the proxy parsing it.
			h["X-Envoy-Auth-Headers-To-Remove"] = d.removeJoined
		}
		h["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write([]byte(d.Body))
}

// httpRequest reconstructs the original request from what the proxy sent.
// Headers go into hm. envoy reports Envoy's HTTP ext_authz form (the
// original path appended to CheckPath, no X-Original-Uri or
// X-Forwarded-Uri).
func httpRequest(r *http.Request, hm map[string]string) (req Request, envoy bool) {
	req = Request{
		Method:        r.Method,
		Host:          r.Host,
		SourceAddress: r.RemoteAddr,
	}
	switch {
	case hdr(r, "X-Original-Uri") != "": // nginx auth_request
		req.Path = hdr(r, "X-Original-Uri")
		if m := hdr(r, "X-Original-Method"); m != "" {
			req.Method = m
		}
	case hdr(r, "X-Forwarded-Uri") != "": // Traefik, Caddy
		req.Path = hdr(r, "X-Forwarded-Uri")
		if m := hdr(r, "X-Forwarded-Method"); m != "" {
			req.Method = m
		}
	default: // Envoy HTTP ext_authz: CheckPath + original path
		envoy = true
		if rest, ok := strings.CutPrefix(r.RequestURI, CheckPath); ok && rest != "" && rest[0] == '/' {
			req.Path = rest
		}
	}
	if fh := hdr(r, "X-Forwarded-Host"); fh != "" {
		req.Host = fh
	}
	req.Scheme = hdr(r, "X-Forwarded-Proto")
	req.Headers = hm
	if v, ok := r.Header["Authorization"]; ok {
		// Repeated headers are joined as a proxy would, which makes them
		// malformed Bearer credentials.
		req.Headers["authorization"] = strings.Join(v, ",")
	}
	if v := hdr(r, "Origin"); v != "" {
		req.Headers["origin"] = v
	}
	if v := hdr(r, "Access-Control-Request-Method"); v != "" {
		req.Headers["access-control-request-method"] = v
	}
	return req, envoy
}

// noStore is shared by every response; net/http never modifies header
// value slices.
var noStore = []string{"no-store"}

// hdr reads a header by canonical key without canonicalising again.
func hdr(r *http.Request, canonical string) string {
	if v := r.Header[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}
