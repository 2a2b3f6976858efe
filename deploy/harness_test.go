package deploy

// The end-to-end harness: render deploy/nginx.conf, run nginx, build and run
// Go binaries, all on loopback and stopped when the test ends.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// nginxTemplatePath is deploy/nginx.conf, relative to this package.
const nginxTemplatePath = "nginx.conf"

// nginxVarPrefix is the prefix of every variable deploy/nginx.conf uses;
// docker-compose.yml sets NGINX_ENVSUBST_FILTER to it.
const nginxVarPrefix = "NGINX_"

// envsubstRef matches what GNU envsubst treats as a variable reference:
// $NAME or ${NAME}.
var envsubstRef = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))`)

// templateVars returns the sorted, distinct NGINX_* variables tmpl refers to.
func templateVars(tmpl string) []string {
	var names []string
	for _, m := range envsubstRef.FindAllStringSubmatch(tmpl, -1) {
		name := m[1] + m[2]
		if strings.HasPrefix(name, nginxVarPrefix) && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// envsubst replaces $NAME and ${NAME} for each NAME in vars and leaves every
// other $ untouched, like `envsubst '${A} ${B}'` with A and B exported, which
// is what the official nginx image runs on /etc/nginx/templates/*.template.
func envsubst(tmpl string, vars map[string]string) string {
	return envsubstRef.ReplaceAllStringFunc(tmpl, func(ref string) string {
		m := envsubstRef.FindStringSubmatch(ref)
		if v, ok := vars[m[1]+m[2]]; ok {
			return v
		}
		return ref
	})
}

// renderTemplate renders tmpl with vars, which must give exactly the NGINX_*
// variables tmpl uses: a missing one would render as written (and nginx
// would choke on it, or worse, not), an extra one is a typo.
func renderTemplate(tmpl string, vars map[string]string) (string, error) {
	used := templateVars(tmpl)
	var errs []error
	for _, name := range used {
		if _, ok := vars[name]; !ok {
			errs = append(errs, fmt.Errorf("variable %s is used but not given", name))
		}
	}
	for name := range vars {
		if !slices.Contains(used, name) {
			errs = append(errs, fmt.Errorf("variable %s is given but not used", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("render nginx template: %w", err)
	}
	return envsubst(tmpl, vars), nil
}

// renderNginxConf renders deploy/nginx.conf with vars (see renderTemplate).
func renderNginxConf(t testing.TB, vars map[string]string) string {
	t.Helper()
	tmpl, err := os.ReadFile(nginxTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := renderTemplate(string(tmpl), vars)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nginxOptions configures startNginx.
type nginxOptions struct {
	// PassgateAddr is host:port of passgate's HTTP listener. Required.
	PassgateAddr string
	// MCPAddr is host:port of the MCP server. Required.
	MCPAddr string
	// PlainHTTP makes nginx listen without TLS. Optional: by default it
	// serves HTTPS with a self-signed certificate for 127.0.0.1 and
	// localhost, which nginx.Client trusts.
	PlainHTTP bool
	// ServerName is NGINX_SERVER_NAME. Optional: defaults to "127.0.0.1",
	// the host of nginx.URL.
	ServerName string
}

// nginx is a running nginx serving the rendered deploy/nginx.conf.
type nginx struct {
	// Dir is the nginx prefix directory (inside t.TempDir()) holding the
	// configuration, certificate, logs and temporary files.
	Dir string
	// Addr is the 127.0.0.1:port nginx listens on.
	Addr string
	// URL is "https://" + Addr, or "http://" + Addr with PlainHTTP.
	URL string
	// Vars are the variables deploy/nginx.conf was rendered with.
	Vars map[string]string
	// Client trusts nginx's certificate and does not follow redirects.
	Client *http.Client
	// Transport is Client's transport, for clients that need their own
	// http.Client (such as one adding an Authorization header).
	Transport *http.Transport
}

// ErrorLog returns nginx's error log so far.
func (n *nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "error.log"))
	return string(b)
}

// startNginx renders deploy/nginx.conf for loopback, starts nginx in the
// foreground (e2etest.NeedTool: never installing it), waits until
// it accepts connections, and stops it when the test ends. On failure the
// test's output gets nginx's error log.
func startNginx(t testing.TB, opts nginxOptions) *nginx {
	t.Helper()
	if opts.PassgateAddr == "" || opts.MCPAddr == "" {
		t.Fatal("startNginx: PassgateAddr and MCPAddr are required")
	}
	if opts.ServerName == "" {
		opts.ServerName = "127.0.0.1"
	}
	dir := t.TempDir()
	cert, key, pool := writeSelfSignedCert(t, dir)

	var vars map[string]string
	scheme := "https"
	if opts.PlainHTTP {
		scheme = "http"
	}
	addr := runNginx(t, dir, func(addr string) string {
		listen := addr + " ssl"
		if opts.PlainHTTP {
			listen = addr
		}
		vars = map[string]string{
			"NGINX_SERVER_NAME":   opts.ServerName,
			"NGINX_LISTEN":        listen,
			"NGINX_TLS_CERT":      cert,
			"NGINX_TLS_KEY":       key,
			"NGINX_PASSGATE_ADDR": opts.PassgateAddr,
			"NGINX_MCP_ADDR":      opts.MCPAddr,
		}
		return renderNginxConf(t, vars)
	})
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		MaxIdleConnsPerHost: 4,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &nginx{Dir: dir, Addr: addr, URL: scheme + "://" + addr, Vars: vars, Transport: tr, Client: &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// runNginx runs nginx with prefix directory dir and the site
// configuration site returns for a free 127.0.0.1:port (wrapped in
// nginxMainConf), and returns that address. A port picked by listening
// and closing can be taken by someone else before nginx binds it: then it
// tries again with another one.
func runNginx(t testing.TB, dir string, site func(addr string) string) string {
	t.Helper()
	var lastErr error
	for range 3 {
		addr := e2etest.FreeAddr(t)
		confPath := filepath.Join(dir, "site.conf")
		if err := os.WriteFile(confPath, []byte(site(addr)), 0o644); err != nil {
			t.Fatal(err)
		}
		mainPath := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(mainPath, []byte(nginxMainConf(dir, confPath)), 0o644); err != nil {
			t.Fatal(err)
		}
		n := &nginx{Dir: dir, Addr: addr}
		if lastErr = n.start(t, mainPath); lastErr == nil {
			return addr
		}
		if !strings.Contains(n.ErrorLog(), "Address already in use") {
			break
		}
	}
	t.Fatalf("start nginx: %v", lastErr)
	return ""
}

// nginxMainConf is the main configuration wrapped around the rendered
// template, the counterpart of the official image's /etc/nginx/nginx.conf,
// with every path inside dir. daemon and pid are given with -g.
func nginxMainConf(dir, include string) string {
	var b strings.Builder
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot enter the 0700 test
		// directory.
		b.WriteString("user root;\n")
	}
	fmt.Fprintf(&b, `worker_processes 1;
error_log %[1]s/error.log info;
events {
    worker_connections 512;
}
http {
    default_type application/octet-stream;
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[2]s;
}
`, dir, include)
	return b.String()
}

// start runs nginx with mainPath and waits until it listens on n.Addr.
func (n *nginx) start(t testing.TB, mainPath string) error {
	return e2etest.StartNginx(t, n.Dir, mainPath, n.Addr)
}

// writeSelfSignedCert writes a certificate for 127.0.0.1 and localhost and
// its key into dir and returns their paths and a pool trusting it.
func writeSelfSignedCert(t testing.TB, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "passgate test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

func TestMain(m *testing.M) { e2etest.RunMain(m) }

// startExampleMCPServer builds and runs examples/mcp-server on a free
// loopback port and returns its address.
func startExampleMCPServer(t testing.TB) string {
	t.Helper()
	bin := e2etest.BuildPackage(t, "./examples/mcp-server")
	addr := e2etest.FreeAddr(t)
	e2etest.StartProcess(t, addr, bin, []string{"--listen", addr}, nil)
	return addr
}

// caddyfilePath is deploy/caddy/Caddyfile, relative to this package.
const caddyfilePath = "caddy/Caddyfile"

// caddyEnvRef matches a Caddyfile environment placeholder, {$NAME} or
// {$NAME:default}, which Caddy replaces when it reads the file.
var caddyEnvRef = regexp.MustCompile(`\{\$([A-Za-z_][A-Za-z0-9_]*)(:[^}]*)?\}`)

// caddyfileVars returns the sorted, distinct variables of the Caddyfile
// text outside comments, and which of them have a default.
func caddyfileVars(text string) (names []string, withDefault map[string]bool) {
	withDefault = map[string]bool{}
	var code strings.Builder
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			code.WriteString(line)
		}
	}
	for _, m := range caddyEnvRef.FindAllStringSubmatch(code.String(), -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
		if m[2] != "" {
			withDefault[m[1]] = true
		}
	}
	slices.Sort(names)
	return names, withDefault
}

// checkCaddyfileEnv reports a variable the Caddyfile uses without a
// default that env does not give, and one env gives that it does not use.
func checkCaddyfileEnv(text string, env map[string]string) error {
	names, withDefault := caddyfileVars(text)
	var errs []error
	for _, name := range names {
		if _, ok := env[name]; !ok && !withDefault[name] {
			errs = append(errs, fmt.Errorf("variable %s is used but not given", name))
		}
	}
	for name := range env {
		if !slices.Contains(names, name) {
			errs = append(errs, fmt.Errorf("variable %s is given but not used", name))
		}
	}
	return errors.Join(errs...)
}

// caddyOptions configures startCaddy.
type caddyOptions struct {
	// Hosts are the host names of PASSGATE_SITE, each served on plain HTTP
	// at the port startCaddy picks. Required.
	Hosts []string
	// PassgateAddr is host:port of passgate's HTTP listener. Required.
	PassgateAddr string
	// UpstreamAddr is host:port of the MCP server. Required.
	UpstreamAddr string
}

// startCaddy runs caddy with the shipped deploy/caddy/Caddyfile, whose
// variables it gives in the environment (Caddy's own substitution, so the
// file runs as shipped), on a free loopback port, with its admin API off
// and its state in a temporary directory. It returns the 127.0.0.1:port
// Caddy listens on and stops Caddy when the test ends.
func startCaddy(t testing.TB, opts caddyOptions) string {
	t.Helper()
	if len(opts.Hosts) == 0 || opts.PassgateAddr == "" || opts.UpstreamAddr == "" {
		t.Fatal("startCaddy: Hosts, PassgateAddr and UpstreamAddr are required")
	}
	bin := e2etest.NeedTool(t, "caddy")
	text, err := os.ReadFile(caddyfilePath)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs(caddyfilePath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := e2etest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	var sites []string
	for _, h := range opts.Hosts {
		sites = append(sites, "http://"+net.JoinHostPort(h, port))
	}
	vars := map[string]string{
		"PASSGATE_SITE":     strings.Join(sites, ", "),
		"PASSGATE_ADDR":     opts.PassgateAddr,
		"PASSGATE_UPSTREAM": opts.UpstreamAddr,
		"PASSGATE_PORT":     port,
		"CADDY_ADMIN":       "off",
	}
	if err := checkCaddyfileEnv(string(text), vars); err != nil {
		t.Fatalf("render %s: %v", caddyfilePath, err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	e2etest.StartProcess(t, addr, bin, []string{"run", "--adapter", "caddyfile", "--config", conf}, env)
	return addr
}

// ingressNginxFixture is the controller-rendered nginx configuration for
// deploy/ingress-nginx/passgate.yaml (see its header).
const ingressNginxFixture = "ingress-nginx/testdata/nginx.conf"

// startNginxTemplate renders the NGINX_* template at path with the
// variables vars returns for a listen address (plain HTTP on a free
// loopback port) and runs nginx with it, like startNginx. It returns the
// 127.0.0.1:port nginx listens on.
func startNginxTemplate(t testing.TB, path string, vars func(listen string) map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	tmpl, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return runNginx(t, dir, func(addr string) string {
		conf, err := renderTemplate(string(tmpl), vars(addr))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return conf
	})
}

// upstreamSaw is what the upstream received.
type upstreamSaw struct {
	Method, RequestURI, Host string
	Header                   http.Header
}

// recorder stands in for the MCP server: it answers 200 and records every
// request it receives, so a test can tell what reached it. A request with
// exactly one X-Corpus-Id header is also filed under its value (saw); one
// without is an orphan.
type recorder struct {
	mu   sync.Mutex
	all  []upstreamSaw // in the order they arrived
	byID map[string][]upstreamSaw
	srv  *httptest.Server
}

func startRecorder(t *testing.T) *recorder {
	rec := &recorder{byID: map[string][]upstreamSaw{}}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := upstreamSaw{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()}
		rec.mu.Lock()
		rec.all = append(rec.all, s)
		if ids := r.Header.Values("X-Corpus-Id"); len(ids) == 1 {
			rec.byID[ids[0]] = append(rec.byID[ids[0]], s)
		}
		rec.mu.Unlock()
		w.Write([]byte("upstream\n"))
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// received returns every request received so far, in arrival order.
func (r *recorder) received() []upstreamSaw {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// saw returns the requests received with the X-Corpus-Id id.
func (r *recorder) saw(id string) []upstreamSaw {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.byID[id])
}

// orphans returns the requests received without exactly one X-Corpus-Id.
func (r *recorder) orphans() []upstreamSaw {
	return slices.DeleteFunc(r.received(), func(s upstreamSaw) bool { return len(s.Header.Values("X-Corpus-Id")) == 1 })
}

// decodeShipped reads the shipped file at path (relative to deploy/) and
// decodes it with decode, failing the test, with the path, when either
// fails.
func decodeShipped[T any](t testing.TB, path string, decode func([]byte) (T, error)) T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := decode(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// wantDecodeErrors fails the test for each doc decode accepts: a strict
// decoder must be able to fail, or what the tests read through it proves
// nothing.
func wantDecodeErrors[T any](t *testing.T, decode func([]byte) (T, error), docs ...string) {
	t.Helper()
	for _, doc := range docs {
		if _, err := decode([]byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}
