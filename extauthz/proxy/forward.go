package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The direct path forwards a request whose body is already in memory (or
// absent: every JSON-RPC POST and GET of Streamable HTTP) to a plain-HTTP
// upstream on the handler's own goroutine: the request line and headers
// are written straight onto a kept HTTP/1.1 connection, and the answer is
// read back with http.ReadResponse. net/http's Transport, which
// ReverseProxy drives, hands every request to a writer and a reader
// goroutine per connection and clones the request and its headers; on
// two cores those wake-ups and copies were the larger part of what the
// proxy cost beyond the check. What ReverseProxy does besides is done
// here too, tested against the same e2e cases: hop-by-hop headers in both
// directions, response trailers, 1xx answers forwarded, a protocol switch
// refused, unparsable query parameters dropped, a response cut mid-body
// aborted (never ended as if complete), the upstream request ended when
// the client goes away. Streamed request bodies and https upstreams still
// go through ReverseProxy, where writing the body while the answer
// arrives needs a second goroutine anyway.

const (
	// maxIdlePerUpstream bounds the idle connections kept per upstream:
	// more than the clients a busy single-binary setup has at once, so
	// they do not churn connections.
	maxIdlePerUpstream = 128
	// idleTimeout closes connections idle this long (net/http's
	// Transport default).
	idleTimeout = 90 * time.Second
	// maxResponseHeaderBytes bounds an upstream's response header, 1xx
	// answers included (net/http's Transport default).
	maxResponseHeaderBytes = 10 << 20
	// max1xx bounds the informational answers forwarded before the final
	// one: an upstream that sends them forever does not hold the
	// request forever.
	max1xx = 16
)

// pool keeps idle HTTP/1.1 connections to one plain-HTTP upstream.
type pool struct {
	addr   string // host:port
	host   string // the Host header: the upstream's own address
	dialer *net.Dialer
	conns  *connSet
	now    func() time.Time

	mu   sync.Mutex
	idle []*upConn // most recently used last
}

// upConn is one kept connection to an upstream.
type upConn struct {
	tc   *trackedConn
	lim  limitedReader // under br: bounds response headers
	br   *bufio.Reader
	bw   *bufio.Writer
	raw  syscall.RawConn // nil: liveness unknown, assumed
	peek func(fd uintptr) bool
	// peekErr is what the last peek saw; EAGAIN means idle and open.
	peekErr  error
	idleFrom time.Time
}

func newPool(u *url.URL, conns *connSet, now func() time.Time) *pool {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return &pool{
		addr:   net.JoinHostPort(u.Hostname(), port),
		host:   u.Host,
		dialer: &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		conns:  conns,
		now:    now,
	}
}

// get returns an idle connection that is still open, or a new one;
// reused says which.
func (p *pool) get(ctx context.Context) (c *upConn, reused bool, err error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if p.now().Sub(c.idleFrom) < idleTimeout && c.alive() {
			return c, true, nil
		}
		c.close()
	}
	nc, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	c = &upConn{tc: p.conns.add(nc)}
	c.lim.r = c.tc
	c.br = bufio.NewReader(&c.lim)
	c.bw = bufio.NewWriter(c.tc)
	if sc, ok := nc.(syscall.Conn); ok && canPeek {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.peek = c.peekFD // bound once: no allocation per peek
		}
	}
	return c, false, nil
}

// put keeps c for the next request, and closes the oldest idle
// connection if it has idled past idleTimeout (there is no timer).
func (p *pool) put(c *upConn) {
	now := p.now()
	c.idleFrom = now
	var stale *upConn
	p.mu.Lock()
	if len(p.idle) >= maxIdlePerUpstream {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	if old := p.idle[0]; now.Sub(old.idleFrom) >= idleTimeout {
		stale = old
		p.idle = append(p.idle[:0], p.idle[1:]...)
	}
	p.mu.Unlock()
	if stale != nil {
		stale.close()
	}
}

func (c *upConn) close() { c.tc.Close() }

// alive reports whether an idle connection is still open and silent: an
// upstream that closed it (its own idle timeout, a restart) must not be
// handed a request that cannot be retried. Transport learns this from
// the reader goroutine it keeps per connection; here it costs one
// non-blocking peek.
func (c *upConn) alive() bool {
	if c.raw == nil {
		return true
	}
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return errors.Is(c.peekErr, syscall.EAGAIN)
}

// limitedReader fails a read once n bytes have been read, for as long as
// n is set (n < 0: no limit).
type limitedReader struct {
	r io.Reader
	n int64
}

var errHeaderTooLarge = errors.New("upstream response header too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// forwardDirect sends rt (body in rt.body, or none) to its upstream over
// pl and copies the answer to w.
func (p *Proxy) forwardDirect(w http.ResponseWriter, r *http.Request, rt *route, pl *pool) {
	ctx := r.Context()
	var (
		c    *upConn
		res  *http.Response
		stop func() bool
	)
	for attempt := 0; ; attempt++ {
		var (
			reused bool
			err    error
		)
		c, reused, err = pl.get(ctx)
		if err != nil {
			p.upstreamError(w, r, rt.upstream, err)
			return
		}
		// Close the upstream connection when the client goes away (or
		// passgate shuts down its request), so that neither a slow answer
		// nor a long event stream holds it.
		stop = context.AfterFunc(ctx, c.close)
		res, err = p.roundTrip(w, r, rt, pl, c)
		if err == nil {
			break
		}
		stop()
		c.close()
		// A kept connection the upstream closed as the request went out
		// (the peek cannot see that far): Transport's rule, a request
		// without a body and a safe method is sent again, once, on a new
		// connection; anything else could run twice.
		if reused && attempt == 0 && ctx.Err() == nil && rt.body == nil && safeMethod(r.Method) && !errors.Is(err, errHeaderTooLarge) {
			continue
		}
		p.upstreamError(w, r, rt.upstream, err)
		return
	}
	// The connection goes back to the pool only once the whole answer was
	// read and nothing else followed it.
	keep := false
	defer func() {
		if keep {
			pl.put(c)
		} else {
			c.close()
		}
	}()
	defer func() {
		if !stop() {
			keep = false
		}
	}()

	h := w.Header()
	removeHopByHop(res.Header)
	for k, vv := range res.Header {
		// The response is this request's own: its value slices can be
		// shared instead of copied. Values already set (the request ID)
		// are kept before the upstream's, as ReverseProxy does.
		if old, ok := h[k]; ok {
			vv = append(old[:len(old):len(old)], vv...)
		}
		h[k] = vv
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(res.StatusCode)
	if err := copyBody(w, res.Body, streams(res)); err != nil {
		// Headers are out: abort the client's response rather than end it
		// as if it were complete (ReverseProxy does the same).
		p.logger.DebugContext(ctx, "upstream response cut", "upstream", rt.upstream.String(), "err", err)
		panic(http.ErrAbortHandler)
	}
	if len(res.Trailer) > 0 {
		_ = http.NewResponseController(w).Flush()
		for k, vv := range res.Trailer {
			if announced == 0 || len(res.Trailer) != announced {
				k = http.TrailerPrefix + k
			}
			h[k] = vv
		}
	}
	keep = !res.Close && c.br.Buffered() == 0 && (res.ContentLength >= 0 || isChunked(res))
}

// roundTrip writes the request on c and reads the answer's header,
// forwarding 1xx answers to w.
func (p *Proxy) roundTrip(w http.ResponseWriter, r *http.Request, rt *route, pl *pool, c *upConn) (*http.Response, error) {
	if err := p.writeRequest(c.bw, r, rt, pl.host); err != nil {
		return nil, err
	}
	var req *http.Request // ReadResponse needs the method for HEAD only
	if r.Method == http.MethodHead {
		req = &http.Request{Method: http.MethodHead}
	}
	c.lim.n = maxResponseHeaderBytes
	for n := 0; ; n++ {
		res, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		switch code := res.StatusCode; {
		case code == http.StatusSwitchingProtocols:
			// No upgrade was forwarded: the check judged a request, not
			// a tunnel.
			return nil, errors.New("upstream switched protocols unasked")
		case code >= 100 && code < 200:
			if n == max1xx {
				return nil, errors.New("too many 1xx answers from the upstream")
			}
			h := w.Header()
			for k, vv := range res.Header {
				h[k] = vv
			}
			w.WriteHeader(code)
			clear(h)
			c.lim.n = maxResponseHeaderBytes
			continue
		}
		c.lim.n = -1
		return res, nil
	}
}

// writeRequest writes the upstream request: the canonical path and the
// client's query, Host the upstream's, the client's headers that
// forwardable allows, then passgate's own, and the in-memory body.
func (p *Proxy) writeRequest(bw *bufio.Writer, r *http.Request, rt *route, host string) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(rt.path)
	if q := cleanQuery(r.URL.RawQuery); q != "" {
		bw.WriteByte('?')
		bw.WriteString(q)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		// net/http's server refused any name or value that would not be
		// valid here.
		if !forwardable(k, conn, &rt.decision) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if wantsTrailers(r.Header) {
		writeField(bw, "Te", "trailers")
	}
	for _, hd := range rt.decision.Headers {
		if hd.Value == "" {
			continue
		}
		if !validFieldValue(hd.Value) {
			return fmt.Errorf("invalid value for header %s", hd.Name)
		}
		writeField(bw, hd.Name, hd.Value)
	}
	ip := p.clientIP(r)
	if !validFieldValue(ip) {
		return errors.New("invalid client address")
	}
	writeField(bw, "X-Forwarded-For", ip)
	writeField(bw, "X-Real-Ip", ip)
	fw := p.forwarded[rt.res.URL]
	writeField(bw, "X-Forwarded-Host", fw.host[0])
	writeField(bw, "X-Forwarded-Proto", fw.proto[0])
	switch {
	case rt.body != nil:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(rt.body)), 10))
		bw.WriteString("\r\n\r\n")
		bw.Write(rt.body)
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n\r\n")
	default:
		bw.WriteString("\r\n")
	}
	return bw.Flush()
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// validFieldValue reports whether v can be sent as a header value: no
// control character but tab (httpguts.ValidHeaderFieldValue, which
// Transport applies).
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// streams reports whether every write of res's body is flushed at once:
// an event stream, or a body of unknown length (ReverseProxy's rule).
func streams(res *http.Response) bool {
	if res.ContentLength < 0 {
		return true
	}
	ct := res.Header.Get("Content-Type")
	const es = "text/event-stream"
	if len(ct) < len(es) || !strings.EqualFold(ct[:len(es)], es) {
		return false
	}
	rest := strings.TrimLeft(ct[len(es):], " \t")
	return rest == "" || rest[0] == ';'
}

// copyBody copies the answer's body to w with a pooled buffer, flushing
// after every write when flush is set.
func copyBody(w http.ResponseWriter, body io.Reader, flush bool) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if rc != nil {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func isChunked(res *http.Response) bool {
	return len(res.TransferEncoding) > 0 && res.TransferEncoding[0] == "chunked"
}

// safeMethod reports whether a request can be sent again after a kept
// connection failed under it.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// cleanQuery is ReverseProxy's handling of the query: one it cannot parse
// the way every upstream would (";" as a separator, a bad escape, too many
// parameters) is sent re-encoded from what parses, so that passgate and
// the upstream do not read different parameters.
func cleanQuery(q string) string {
	reencode := func() string {
		v, _ := url.ParseQuery(q)
		return v.Encode()
	}
	if strings.Count(q, "&")+1 > 10000 {
		return reencode()
	}
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return reencode()
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return reencode()
			}
			i += 3
		default:
			i++
		}
	}
	return q
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
