package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/extauthz/proxy"
	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/internal/cimd"
	"github.com/passgate/passgate/internal/clientip"
	"github.com/passgate/passgate/internal/httplog"
	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/ratelimit"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/tracing"
	"github.com/passgate/passgate/oauthweb"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/tracestore"
)

// app is one `passgate serve`: the store, the authorization server, the
// checks and the servers that expose them. newApp builds it and binds every
// listener; run serves until its context ends, then drains and stops each
// server; close releases the store.
type app struct {
	cfg     *Config
	logger  *slog.Logger
	backend string // "sqlite" or "postgres"
	// hashCost is the bcrypt cost of the hashes the app makes.
	hashCost int
	store    store.Store
	audit    *audit.Recorder
	checker  *extauthz.Checker
	// tracing is nil unless --tracing; then store is traced too.
	tracing *tracing.Tracing
	// proxy is the built-in reverse proxy (--upstream); nil without one.
	proxy *proxy.Proxy
	// policy is the access policy in force; reloader, when a policy file
	// is configured, keeps it in step with the file.
	policy   *policy.Holder
	reloader *policy.Reloader

	// health is the gRPC health service; ready mirrors it for /readyz.
	// mu serializes their writers, so that nothing makes a draining
	// replica ready again.
	health *health.Server
	ready  atomic.Bool
	// storeUp is the result of the last store ping, draining or not
	// (passgate_store_up).
	storeUp  atomic.Bool
	mu       sync.Mutex
	draining bool

	servers []server // bound, in the order they stop
}

// server is one listener and the server that owns it.
type server struct {
	name  string
	addr  string // empty: disabled
	ln    net.Listener
	serve func(net.Listener) error // returns nil once stopped
	stop  func(context.Context) error
}

// newApp opens the store, applies the bootstrap, builds the authorization
// server and the checks, and binds every listener. The caller runs it and
// then closes it.
func newApp(ctx context.Context, c *Config, logger *slog.Logger, std stdio) (_ *app, err error) {
	// Every line logged with a request's context carries its request ID.
	logger = slog.New(httplog.ContextHandler(logger.Handler()))
	st, err := openStore(ctx, c, logger)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: c, logger: logger, backend: "sqlite", hashCost: std.cost(), store: st, health: health.NewServer()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if c.DatabaseURL != "" {
		a.backend = "postgres"
	}
	if c.Tracing {
		if a.tracing, err = tracing.New(ctx, buildVersion(), std.getenv); err != nil {
			return nil, err
		}
		a.store = tracestore.New(st, a.tracing.TracerProvider())
		st = a.store
	}
	if err := bootstrap(ctx, st, c, a.hashCost, std.err, logger); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	reg := newRegistry(a.backend)
	if a.audit, err = audit.New(st, reg, time.Now); err != nil {
		return nil, err
	}
	resources, err := resource.ParseAll(c.Resources)
	if err != nil {
		return nil, err
	}
	if err := a.loadPolicy(reg); err != nil {
		return nil, err
	}
	ips := clientip.New(c.TrustedProxies)
	web, err := a.newAuthServer(reg, resources, ips)
	if err != nil {
		return nil, fmt.Errorf("authorization server: %w", err)
	}
	if a.checker, err = a.newChecker(reg, resources); err != nil {
		return nil, fmt.Errorf("checks: %w", err)
	}
	if err := a.registerHealthMetrics(reg); err != nil {
		return nil, err
	}
	if len(c.Upstreams) > 0 {
		if a.proxy, err = newProxy(a.checker, resources, c.Upstreams, ips, logger); err != nil {
			return nil, err
		}
	}
	a.setReady(a.pingStore(ctx))
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.servers = []server{
		httpServer("http", c.HTTPListen, a.newHTTPServer(web, ips)),
		grpcServer("grpc", c.GRPCListen, extauthz.NewGRPCServer(a.checker, a.health, a.grpcOptions()...)),
		httpServer("metrics", c.MetricsListen, &http.Server{Handler: metrics, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}),
	}
	if err := a.bind(); err != nil {
		return nil, err
	}
	return a, nil
}

// loadPolicy compiles the access policy (the policy file, if any, and the
// --require-scopes rules) and, with a file, prepares its reloader.
func (a *app) loadPolicy(reg prometheus.Registerer) error {
	c := a.cfg
	p, err := c.loadPolicy()
	if err != nil {
		return fmt.Errorf("access policy: %w", err)
	}
	a.policy = policy.NewHolder(p)
	if c.PolicyFile == "" {
		return nil
	}
	if a.reloader, err = policy.NewReloader(c.PolicyFile, c.compilePolicy, a.policy, a.logger.With("component", "policy"), reg); err != nil {
		return err
	}
	// The reloader remembers what is in force, so an unchanged file is not
	// reloaded again.
	if err := a.reloader.Load(); err != nil {
		return fmt.Errorf("access policy: %w", err)
	}
	a.logger.Info("access policy loaded", "file", c.PolicyFile)
	return nil
}

// newRegistry returns the registry every component registers its metrics
// in, with the Go and process collectors and passgate_build_info.
func newRegistry(backend string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "passgate_build_info", Help: "passgate's version; always 1.",
	}, []string{"version", "goversion", "backend"})
	reg.MustRegister(buildInfo)
	buildInfo.WithLabelValues(buildVersion(), goVersion(), backend).Set(1)
	return reg
}

// newAuthServer builds the OAuth authorization server from the
// configuration.
func (a *app) newAuthServer(reg prometheus.Registerer, resources []resource.Resource, ips *clientip.Resolver) (*oauthweb.Server, error) {
	c := a.cfg
	prio, err := passwd.ParsePriority(c.HashPriority)
	if err != nil {
		return nil, err
	}
	hasher, err := passwd.New(passwd.Options{Concurrency: c.HashConcurrency, Cost: a.hashCost, Priority: prio})
	if err != nil {
		return nil, err
	}
	a.reserveSchedulerSlot(hasher.Concurrency())
	regToken := ""
	if c.RegistrationTokenFile != "" {
		if regToken, err = readSecretFile(c.RegistrationTokenFile); err != nil {
			return nil, fmt.Errorf("registration token: %w", err)
		}
	}
	var resolveClient func(context.Context, string) (store.Client, error)
	if c.CIMD {
		fetcher := cimd.New(cimd.Config{
			AllowLoopbackHTTP: c.CIMDAllowLoopbackHTTP,
			PrivateSchemes:    c.PrivateSchemes,
			Logger:            a.logger.With("component", "cimd"),
		})
		resolveClient = fetcher.ResolveClient
	}
	limits := ratelimit.Set{
		oauthweb.LimitLogin:           ratelimit.New(c.LoginLimit, nil, 0),
		oauthweb.LimitToken:           ratelimit.New(c.TokenLimit, nil, 0),
		oauthweb.LimitAuthorize:       ratelimit.New(c.AuthorizeLimit, nil, 0),
		oauthweb.LimitRegister:        ratelimit.New(c.RegisterLimit, nil, 0),
		oauthweb.LimitRegisterSuccess: ratelimit.New(c.RegisterSuccessLimit, nil, 0),
		oauthweb.LimitRevoke:          ratelimit.New(c.RevokeLimit, nil, 0),
		oauthweb.LimitClientSecret:    ratelimit.New(c.ClientSecretLimit, nil, 0),
		oauthweb.LimitIntrospect:      ratelimit.New(c.RevokeLimit, nil, 0),
	}
	refreshGrace := c.RefreshGrace
	if refreshGrace == 0 {
		refreshGrace = -1 // oauthweb: negative disables, zero means the default
	}
	lockout := c.LockoutThreshold
	if lockout == 0 {
		lockout = -1 // oauthweb: negative disables
	}
	policy, err := mfa.ParsePolicy(c.RequireSecondFactor)
	if err != nil {
		return nil, err
	}
	sealer, err := a.sealer()
	if err != nil {
		return nil, err
	}
	return oauthweb.New(oauthweb.Config{
		Issuer:                c.Issuer,
		Resources:             resources,
		Store:                 a.store,
		Audit:                 a.audit,
		Hasher:                hasher,
		Logger:                a.logger.With("component", "oauthweb"),
		Metrics:               reg,
		ClientIP:              ips.ClientIP,
		Scopes:                c.Scopes,
		BaseScopes:            c.baseScopes(),
		ClientScopeCap:        c.ClientScopeCap,
		AccessTokenTTL:        c.AccessTokenTTL,
		RefreshTokenTTL:       c.RefreshTokenTTL,
		RefreshIdleTTL:        c.RefreshIdleTTL,
		RefreshGrace:          refreshGrace,
		SessionTTL:            c.SessionTTL,
		Registration:          c.Registration,
		RegistrationToken:     regToken,
		PrivateSchemes:        c.PrivateSchemes,
		TemplateDir:           c.TemplateDir,
		PrefillSingleUser:     c.PrefillSingleUser,
		RememberPublicConsent: c.RememberPublicConsent,
		Branding:              c.branding(),
		ResolveClient:         resolveClient,
		// Keys are client IPs or "client_id …" keys; RateKey leaves the
		// latter alone (they never parse as an IP).
		RateLimit: func(endpoint, key string) (bool, time.Duration, func()) {
			return limits.Reserve(endpoint, clientip.RateKey(key))
		},
		Policy:           a.policy,
		LockoutThreshold: lockout,
		LockoutWindow:    c.LockoutWindow,
		LockoutDuration:  c.LockoutDuration,
		SecondFactor:     policy,
		InGroup:          a.inGroup,
		Sealer:           sealer,
		PasswordPolicy:   c.passwordPolicy(),
	})
}

// sealer loads the key that seals TOTP secrets: --secret-key-file, or
// with SQLite secret.key in the data directory (created on first use).
// With PostgreSQL and no key file, second factors are unavailable: each
// replica would make its own key and read no one else's secrets.
func (a *app) sealer() (*mfa.Sealer, error) {
	c := a.cfg
	var key []byte
	var err error
	switch {
	case c.SecretKeyFile != "":
		key, err = mfa.LoadKey(c.SecretKeyFile)
	case c.DatabaseURL == "":
		key, err = mfa.LoadOrCreateKey(filepath.Join(c.DataDir, "secret.key"))
	default:
		if c.RequireSecondFactor != mfa.PolicyOff {
			a.logger.Warn("second factors are unavailable: with --database they need --secret-key-file")
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("second factors: %w", err)
	}
	return mfa.NewSealer(key)
}

// newChecker builds the checks the proxies ask, over gRPC and HTTP.
func (a *app) newChecker(reg prometheus.Registerer, resources []resource.Resource) (*extauthz.Checker, error) {
	c := a.cfg
	apiKey := c.SeedAPIKey
	if c.APIKeyFile != "" {
		var err error
		if apiKey, err = readSecretFile(c.APIKeyFile); err != nil {
			return nil, fmt.Errorf("api key: %w", err)
		}
	}
	if apiKey != "" {
		a.logger.Warn("the static API key (API_KEY or --api-key-file) is deprecated: it is accepted for every configured resource as user apikey:legacy, with no scopes; "+
			"replace it with named keys bound to resources and scopes: passgate apikey add NAME --resource URL [--scope SCOPE]",
			"resources", c.Resources)
	}
	return extauthz.NewChecker(extauthz.Config{
		Resources: resources,
		Store:     a.store,
		APIKey:    apiKey,
		// The 401 challenge names the base scopes; a rule that needs more
		// names it in its 403 (step-up).
		Scopes:            c.baseScopes(),
		Logger:            a.logger.With("component", "extauthz"),
		Metrics:           reg,
		UserHeader:        c.UserHeader,
		ClientIDHeader:    c.ClientIDHeader,
		ScopeHeader:       c.ScopeHeader,
		KeepAuthorization: c.KeepAuthorization,
		AllowPreflight:    c.AllowPreflight,
		Policy:            a.policy,
		CacheSize:         c.CheckCacheSize,
		StoreTimeout:      c.StoreTimeout,
		BatchWait:         a.batchWait(c.CheckBatchWait),
		TracerProvider:    a.tracerProvider(),
	})
}

// reserveSchedulerSlot makes GOMAXPROCS exceed the password hashes that
// may run at once. A hash holds a Go scheduler slot (P) for its whole run,
// bcrypt never yields, and Go sets GOMAXPROCS to the CPUs passgate may use
// (its cgroup limit or CPU affinity): with one CPU, one hash took the only
// P and a login flood stalled every proxy check for seconds (measured
// under taskset -c 1: check p50 3.7 s). With a P to spare, the checks'
// thread and the hash's thread compete in the kernel instead, where the
// hash's lowered priority (--hash-priority) lets the checks win. An
// explicit GOMAXPROCS in the environment is the operator's and is kept.
func (a *app) reserveSchedulerSlot(hashes int) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		return
	}
	if n := runtime.GOMAXPROCS(0); n <= hashes {
		runtime.GOMAXPROCS(hashes + 1)
		a.logger.Info("raised GOMAXPROCS so that password hashes leave a scheduler slot to the checks", "from", n, "to", hashes+1)
	}
}

// maxCheckBatchWait bounds --check-batch-wait: the wait delays every miss
// that arrives while another is being read, so it stays in microseconds.
const maxCheckBatchWait = 10 * time.Millisecond

// batchWait maps --check-batch-wait onto extauthz.Config.BatchWait, where
// 0 means the default and a negative wait no batching. Batching shares
// PostgreSQL round trips between concurrent misses; a SQLite read never
// leaves the process, so there is nothing to share, and alternating runs
// showed no gain there: SQLite misses are read one by one, as before.
func (a *app) batchWait(d time.Duration) time.Duration {
	if d == 0 || a.backend != "postgres" {
		return -1
	}
	return d
}

// tracerProvider is the provider of the checks' spans: nil (no spans, no
// cost) unless --tracing.
func (a *app) tracerProvider() trace.TracerProvider {
	if a.tracing == nil {
		return nil
	}
	return a.tracing.TracerProvider()
}

// grpcOptions traces the gRPC calls with --tracing.
func (a *app) grpcOptions() []grpc.ServerOption {
	if a.tracing == nil {
		return nil
	}
	return []grpc.ServerOption{a.tracing.GRPCServerOption()}
}

// traceHTTP traces the public listener's requests with --tracing, outside
// the request log so its context carries the span.
func (a *app) traceHTTP(h http.Handler) http.Handler {
	if a.tracing == nil {
		return h
	}
	return a.tracing.HTTPHandler(h, checkSpanName)
}

// checkSpanName names the spans of requests no ServeMux routes: the HTTP
// checks by their check path (Envoy's form without the client's path),
// anything else by its method alone.
func checkSpanName(r *http.Request) string {
	switch p := r.URL.Path; {
	case p == extauthz.CheckPathNginx, p == extauthz.CheckPathForwardAuth, p == extauthz.CheckPathIngressNginx:
		return tracing.Method(r) + " " + p
	case strings.HasPrefix(p, extauthz.CheckPathEnvoy+"/"):
		return tracing.Method(r) + " " + extauthz.CheckPathEnvoy
	}
	return tracing.Method(r)
}

// newProxy builds the built-in reverse proxy for the --upstream resources.
func newProxy(checker *extauthz.Checker, resources []resource.Resource, specs []string, ips *clientip.Resolver, logger *slog.Logger) (*proxy.Proxy, error) {
	ups, err := proxy.ParseUpstreams(resources, specs)
	if err != nil {
		return nil, fmt.Errorf("--upstream: %w", err)
	}
	return proxy.New(proxy.Config{
		Checker:   checker,
		Resources: resources,
		Upstreams: ups,
		ClientIP:  ips.ClientIP,
		Logger:    logger.With("component", "proxy"),
	})
}

// newHTTPServer serves the checks, the built-in proxy, the authorization
// server and the health endpoints on the public listener.
func (a *app) newHTTPServer(web *oauthweb.Server, ips *clientip.Resolver) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/", withTimeout(web.Handler(), a.cfg.RequestTimeout))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	var h http.Handler = mux
	if a.proxy != nil {
		// Requests for a proxied resource go upstream once the check allows
		// them; passgate's own routes never match a resource's path.
		h = a.proxy.Handler(mux)
	}
	srv := &http.Server{
		// One log line per request (request ID, route, status, duration,
		// client IP; never queries, bodies or credentials). The checks and
		// health probes are logged at debug: proxies call them constantly.
		Handler: a.traceHTTP(httplog.Handler(httplog.Config{
			Logger:        a.logger.With("component", "http"),
			ClientIP:      ips.ClientIP,
			QuietPrefixes: []string{extauthz.CheckPathPrefix, "/healthz", "/readyz"},
			// The checks are routed before the mux (see HTTPHandler).
		}, a.checker.HTTPHandler(h))),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		// Proxies keep connections to the check open; reuse them for a while.
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	if a.proxy != nil {
		// Shutdown waits for open requests: end the proxied event streams,
		// which would otherwise hold it until --shutdown-timeout.
		srv.RegisterOnShutdown(a.proxy.Close)
	}
	return srv
}

func httpServer(name, addr string, s *http.Server) server {
	return server{
		name: name, addr: addr,
		serve: func(ln net.Listener) error {
			if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		stop: s.Shutdown,
	}
}

func grpcServer(name, addr string, s *grpc.Server) server {
	return server{
		name: name, addr: addr, serve: s.Serve,
		stop: func(ctx context.Context) error {
			stopped := make(chan struct{})
			go func() { s.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
				return nil
			case <-ctx.Done():
				s.Stop()
				return ctx.Err()
			}
		},
	}
}

// bind listens on every enabled server's address before anything is
// served, so a taken port fails the start instead of leaving half a server
// running. Disabled servers are dropped.
func (a *app) bind() error {
	var bound []server
	for _, s := range a.servers {
		if s.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, b := range bound {
				b.ln.Close()
			}
			return fmt.Errorf("listen %s: %w", s.addr, err)
		}
		s.ln = ln
		bound = append(bound, s)
	}
	a.servers = bound
	return nil
}

// addr returns the address server name listens on, or "" when disabled.
func (a *app) addr(name string) string {
	for _, s := range a.servers {
		if s.name == name {
			return s.ln.Addr().String()
		}
	}
	return ""
}

// run serves until ctx ends (SIGTERM) or a server fails, then shuts down:
// not ready first, so proxies move away, then each server stops
// gracefully.
func (a *app) run(ctx context.Context) error {
	c := a.cfg
	a.logger.Info("passgate listening", "version", buildVersion(), "issuer", c.Issuer, "resources", c.Resources,
		"http", a.addr("http"), "grpc", a.addr("grpc"), "metrics", a.addr("metrics"), "backend", a.backend, "upstreams", c.Upstreams)

	// The background work outlives ctx: the servers still answer checks
	// while draining, so the token cache must still hear revocations.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	for _, s := range a.servers {
		g.Go(func() error {
			if err := s.serve(s.ln); err != nil {
				return fmt.Errorf("%s server: %w", s.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		if err := a.checker.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("token cache invalidation: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		every(gctx, time.Second, func() { a.setReady(a.pingStore(gctx)) })
		return nil
	})
	if a.reloader != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		g.Go(func() error { return a.reloader.Run(gctx, hup, policy.DefaultPollInterval) })
	}
	g.Go(func() error {
		every(gctx, c.CleanupInterval, func() { cleanup(gctx, a.store, c, a.audit, time.Now(), a.logger) })
		return nil
	})
	g.Go(func() error {
		select {
		case <-ctx.Done():
			a.logger.Info("shutting down")
		case <-gctx.Done():
		}
		a.shutdown()
		stopRun()
		return nil
	})
	return g.Wait()
}

// shutdown goes NOT_SERVING, waits ShutdownDelay for the proxies to move
// away, then stops every server within ShutdownTimeout.
func (a *app) shutdown() {
	a.drain()
	if d := a.cfg.ShutdownDelay; d > 0 {
		a.logger.Info("draining: not ready, still serving", "delay", d)
		time.Sleep(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	for _, s := range a.servers {
		if err := s.stop(ctx); err != nil {
			a.logger.Warn(s.name+" shutdown", "err", err)
		}
	}
}

// close releases what newApp opened; the servers are stopped by run. The
// spans not yet exported are flushed first, for at most 5s.
func (a *app) close() error {
	if a.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.tracing.Shutdown(ctx); err != nil {
			a.logger.Warn("tracing shutdown", "err", err)
		}
	}
	return a.store.Close()
}

// pingStore reports whether the store answers within a second. Readiness
// is that, while not shutting down: run pings every second; gRPC health
// mirrors it so Envoy stops sending checks to a draining replica.
func (a *app) pingStore(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ok := a.store.Ping(ctx) == nil
	a.storeUp.Store(ok)
	return ok
}

// registerHealthMetrics exposes the last store ping and readiness as
// gauges. They read what run's one-second ping left, so a scrape never
// waits for the store.
func (a *app) registerHealthMetrics(reg prometheus.Registerer) error {
	gauge := func(b *atomic.Bool) func() float64 {
		return func() float64 {
			if b.Load() {
				return 1
			}
			return 0
		}
	}
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "passgate_store_up",
			Help: "1 when the store answered the last ping (every second, 1s timeout), else 0.",
		}, gauge(&a.storeUp)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "passgate_ready",
			Help: "1 when /readyz answers 200 and gRPC health is SERVING, else 0 (store down or shutting down).",
		}, gauge(&a.ready)),
	} {
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// setReady sets /readyz and gRPC health, unless the app is draining: a ping
// that started before the drain must not make the replica ready again.
func (a *app) setReady(ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining {
		return
	}
	a.ready.Store(ok)
	extauthz.SetServing(a.health, ok)
}

// drain makes the app not ready for good: /readyz answers 503 and gRPC
// health NOT_SERVING for every service.
func (a *app) drain() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.draining = true
	a.ready.Store(false)
	a.health.Shutdown()
}

// inGroup reports whether username is in group (the access-policy groups
// kept in the store), for --require-second-factor group:NAME. An unknown
// user is in no group.
func (a *app) inGroup(ctx context.Context, group, username string) (bool, error) {
	u, err := a.store.GetUser(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get user: %w", err)
	}
	return slices.Contains(u.Groups, group), nil
}
