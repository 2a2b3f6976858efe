package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirectKeptConnections sends requests one after another through the
// direct path: they share one upstream connection, and when the upstream
// closes its idle connections the next POST (which cannot be sent twice)
// goes out on a new one instead of failing on the dead one.
func TestDirectKeptConnections(t *testing.T) {
	var conns atomic.Int32
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok\n")
	}))
	upstream.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	upstream.Start()
	t.Cleanup(upstream.Close)
	resURL, secret := startProxy(t, upstream.URL)
	client := &http.Client{Timeout: 10 * time.Second}
	send := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, resURL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Fatalf("status %d body %q, want 200 ok", resp.StatusCode, body)
		}
	}
	for range 5 {
		send()
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 requests in turn opened %d upstream connections, want 1", n)
	}
	upstream.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // the FIN reaches passgate's side
	send()
	if n := conns.Load(); n != 2 {
		t.Errorf("after the upstream closed its connections: %d opened in all, want 2", n)
	}
}

// TestDirectResponses checks what the direct path makes of upstream
// answers that ReverseProxy handles: trailers, hop-by-hop headers, a
// protocol switch nobody asked for, and a body cut short.
func TestDirectResponses(t *testing.T) {
	tests := []struct {
		name     string
		upstream http.HandlerFunc
		check    func(t *testing.T, resp *http.Response, body string, err error)
	}{
		{"trailers forwarded",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Checksum")
				io.WriteString(w, "body")
				w.Header().Set("X-Checksum", "abc")
			},
			func(t *testing.T, resp *http.Response, body string, err error) {
				if resp == nil {
					t.Fatal(err)
				}
				if err != nil || body != "body" || resp.Trailer.Get("X-Checksum") != "abc" {
					t.Errorf("body %q trailer %v err %v, want the body and X-Checksum: abc", body, resp.Trailer, err)
				}
			}},
		{"hop-by-hop response headers dropped",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "X-Hop")
				w.Header().Set("X-Hop", "1")
				w.Header().Set("Keep-Alive", "timeout=5")
				w.Header().Set("X-End", "2")
				io.WriteString(w, "ok")
			},
			func(t *testing.T, resp *http.Response, body string, err error) {
				if resp == nil {
					t.Fatal(err)
				}
				if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-End") != "2" {
					t.Errorf("headers %v, want X-End only", resp.Header)
				}
			}},
		{"protocol switch refused",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "Upgrade")
				w.Header().Set("Upgrade", "websocket")
				w.WriteHeader(http.StatusSwitchingProtocols)
			},
			func(t *testing.T, resp *http.Response, body string, err error) {
				if resp == nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("status %d, want 502", resp.StatusCode)
				}
			}},
		{"body cut short is no complete answer",
			func(w http.ResponseWriter, r *http.Request) {
				c, bw, _ := http.NewResponseController(w).Hijack()
				bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
				bw.Flush()
				c.Close()
			},
			func(t *testing.T, resp *http.Response, body string, err error) {
				if err == nil {
					t.Errorf("read %q in full, want an error for the cut body", body)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := httptest.NewServer(tt.upstream)
			t.Cleanup(upstream.Close)
			resURL, secret := startProxy(t, upstream.URL)
			req, _ := http.NewRequest(http.MethodPost, resURL, strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+secret)
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				// Only a cut answer may fail before its header (what was
				// written of it never left passgate's buffer).
				tt.check(t, nil, "", err)
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			tt.check(t, resp, string(body), err)
		})
	}
}
