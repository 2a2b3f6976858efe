package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
)

// freePort returns a loopback port nobody listens on right now.
func freePort() (int, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}

// newLog keeps the last few kilobytes a child wrote, for error messages.
func newLog() *proc.Buffer { return &proc.Buffer{Max: 4096} }

// passgateProc is a running `passgate serve`.
type passgateProc struct {
	*proc.Process
	httpAddr, grpcAddr, metricsAt string
	logs                          *proc.Buffer
	startup                       time.Duration // exec to /readyz answering 200
}

// passgateOpts are the per-instance settings.
type passgateOpts struct {
	bin         string
	httpPort    int      // fixed so nginx's upstream stays valid across instances
	backendArgs []string // --data-dir D or --database URL
	resourceURL string
	cacheSize   int
	upstream    string // --upstream for resourceURL; empty: none
	policyFile  string // --policy, or ""
	extra       []string
	pin         string // CPU list for taskset, or ""
}

func startPassgate(ctx context.Context, o passgateOpts) (*passgateProc, error) {
	gp, err := freePort()
	if err != nil {
		return nil, err
	}
	mp, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &passgateProc{
		httpAddr:  "127.0.0.1:" + strconv.Itoa(o.httpPort),
		grpcAddr:  "127.0.0.1:" + strconv.Itoa(gp),
		metricsAt: "http://127.0.0.1:" + strconv.Itoa(mp) + "/metrics",
		logs:      newLog(),
	}
	args := []string{"serve",
		"--http-listen", p.httpAddr,
		"--grpc-listen", p.grpcAddr,
		"--metrics-listen", "127.0.0.1:" + strconv.Itoa(mp),
		"--issuer", "http://" + p.httpAddr,
		"--resource", o.resourceURL,
		// The flood must cost password verifications, not rate-limit
		// answers or lockouts.
		"--login-limit", "off",
		"--lockout-threshold", "0",
		"--check-cache-size", strconv.Itoa(o.cacheSize),
		"--log-level", "warn",
		"--log-format", "json",
		// Nothing routes to it: stopping needs no grace period.
		"--shutdown-delay", "0s",
	}
	if o.upstream != "" {
		args = append(args, "--upstream", o.upstream)
	}
	args = append(args, o.backendArgs...)
	args = append(args, o.extra...)
	if o.policyFile != "" {
		args = append(args, "--policy", o.policyFile)
	}
	cmd := exec.Command(o.bin, args...)
	if o.pin != "" {
		// taskset execs passgate in place: the pid stays passgate's.
		cmd = exec.Command("taskset", append([]string{"-c", o.pin, o.bin}, args...)...)
	}
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	start := time.Now()
	var err2 error
	if p.Process, err2 = proc.Start(ctx, cmd, p.httpAddr, 30*time.Second); err2 != nil {
		return nil, fmt.Errorf("start passgate: %w: %s", err2, p.logs)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.startup = time.Since(start)
				return p, nil
			}
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("passgate exited at start: %s", p.logs)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("passgate not ready after 30s: %s", p.logs)
		}
	}
}

func (p *passgateProc) pid() int { return p.Cmd.Process.Pid }

// stop sends SIGTERM and waits, killing after 15s.
func (p *passgateProc) stop() { p.Stop(syscall.SIGTERM, 15*time.Second) }

// metric returns the value of an unlabelled metric.
func (p *passgateProc) metric(name string) (float64, error) {
	resp, err := http.Get(p.metricsAt)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// memStatus is a process's memory from /proc/PID/status, in bytes.
type memStatus struct{ rss, hwm int64 }

func readMem(pid int) (memStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memStatus{}, err
	}
	var m memStatus
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.hwm = kb << 10
		}
	}
	if m.rss == 0 {
		return m, errors.New("no VmRSS in /proc status")
	}
	return m, nil
}

// nginxConf is a minimal nginx in front of passgate and of the reference:
// the auth_request wiring of extauthz's package documentation (and of
// deploy/nginx.conf, minus TLS and the OAuth routes), with keepalive
// connections to the check and to the upstream. The upstream is nginx
// itself answering 200, the cheapest MCP server there is. Both front
// servers are identical except for the check they ask.
var nginxConf = template.Must(template.New("nginx").Parse(`
worker_processes {{.Workers}};
error_log {{.Dir}}/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/tmp/body;
    proxy_temp_path {{.Dir}}/tmp/proxy;
    fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
    uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
    scgi_temp_path {{.Dir}}/tmp/scgi;

    upstream check_passgate  { server {{.Passgate}};  keepalive 16; }
    upstream check_reference { server {{.Reference}}; keepalive 16; }
    upstream app             { server 127.0.0.1:{{.AppPort}}; keepalive 16; }

    server {
        listen 127.0.0.1:{{.AppPort}};
        location / { return 200 "ok\n"; }
    }
{{range .Fronts}}
    server {
        listen 127.0.0.1:{{.Port}};
        location = /_passgate/check/nginx {
            internal;
            proxy_pass http://{{.Upstream}};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Host $host:$server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
        location /mcp {
            auth_request /_passgate/check/nginx;
            auth_request_set $pg_user   $upstream_http_x_passgate_user;
            auth_request_set $pg_client $upstream_http_x_passgate_client_id;
            auth_request_set $pg_scope  $upstream_http_x_passgate_scope;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Passgate-User      $pg_user;
            proxy_set_header X-Passgate-Client-Id $pg_client;
            proxy_set_header X-Passgate-Scope     $pg_scope;
            proxy_set_header Authorization "";
        }
    }
{{end}}
}
`))

// nginxProc is a running nginx.
type nginxProc struct {
	*proc.Process
	appPort int // the upstream: nginx answering 200
}

type nginxFront struct {
	Port     int
	Upstream string
}

// startNginx runs nginx with two front servers: passgatePort checks with
// passgate at passgateAddr, refPort with the reference at refAddr.
func startNginx(ctx context.Context, bin, dir string, passgatePort, refPort int, passgateAddr, refAddr string) (*nginxProc, error) {
	appPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var conf bytes.Buffer
	err = nginxConf.Execute(&conf, map[string]any{
		"Workers": 2, "Dir": dir, "Passgate": passgateAddr, "Reference": refAddr, "AppPort": appPort,
		"Fronts": []nginxFront{{passgatePort, "check_passgate"}, {refPort, "check_reference"}},
	})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, conf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	p, err := proc.Nginx(ctx, bin, dir, path, "127.0.0.1:"+strconv.Itoa(refPort), nil)
	if err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	return &nginxProc{Process: p, appPort: appPort}, nil
}

// stop asks nginx for a graceful stop (SIGQUIT), killing after 5s.
func (n *nginxProc) stop() { n.Stop(syscall.SIGQUIT, 5*time.Second) }
