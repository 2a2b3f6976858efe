package e2etest

import "net/http"

// HeaderTransport sets fixed headers on every request before Base sends
// it, to play a proxy (X-Forwarded-For, X-Passgate-*) or a client that
// always sends a header.
type HeaderTransport struct {
	Base   http.RoundTripper
	Header http.Header
}

func (h HeaderTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range h.Header {
		req.Header[k] = v
	}
	return h.Base.RoundTrip(req)
}
