package extauthz

import (
	"net/http"
	"time"
)

// CheckReceived decides r as passgate itself received it, for a front end
// in passgate's own process (the built-in reverse proxy, extauthz/proxy):
// the method of r's request line, r.Host (the authority of an
// absolute-form target, else the Host header, as net/http routes it) and
// target, r's request target in origin form as received (escaped, query
// included), with r's Authorization, Origin and Access-Control-Request-
// Method headers. There is no proxy in front to report the request, so
// nothing else about r is read: no X-Forwarded-* or X-Original-* header a
// client could add. Check then applies the same canonical path, refusals,
// resource match and credential rules as every other front end.
//
// The decision is counted in passgate_checks_total and
// passgate_check_duration_seconds under frontend="proxy", and a denial
// is logged at debug level like every front end's (Checker.record). The error is
// Check's (a store outage on an uncached credential).
func (c *Checker) CheckReceived(r *http.Request, target string) (Decision, error) {
	start := time.Now()
	// The map lives on this stack frame (Check does not keep it).
	hm := make(map[string]string, 3)
	readCheckHeaders(r, hm)
	req := Request{
		Method:        r.Method,
		Host:          r.Host,
		Path:          target,
		Headers:       hm,
		SourceAddress: r.RemoteAddr,
	}
	d, err := c.Check(r.Context(), req)
	c.record(r.Context(), frontendProxy, proxyLogName, req, d, start)
	return d, err
}
