package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/internal/cimd"
	"github.com/passgate/passgate/internal/clientip"
	"github.com/passgate/passgate/internal/httplog"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/ratelimit"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/oauthweb"
	"github.com/passgate/passgate/store"
)

func cmdServe(ctx context.Context, args []string, std stdio) error {
	c, err := loadServeConfig(args, std)
	if err != nil {
		return err
	}
	return serve(ctx, c, newLogger(c, std.err), std)
}

// loadServeConfig parses flags, applies the environment and validates,
// reporting every problem at once.
func loadServeConfig(args []string, std stdio) (*Config, error) {
	var c Config
	fs := newFlagSet("serve", "serve [flags]", std)
	settings := c.bindFlags(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return nil, err
	}
	var errs []error
	if err := c.applyEnv(fs, settings, std.getenv); err != nil {
		errs = append(errs, err)
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{"invalid configuration:\n  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")}
	}
	return &c, nil
}

// newLogger logs JSON unless the output is a terminal (or the format is
// forced).
func newLogger(c *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	format := c.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve wires the store, the authorization server, the checks and the
// listeners, and runs until ctx ends (SIGTERM), then shuts down gracefully.
func serve(ctx context.Context, c *Config, logger *slog.Logger, std stdio) error {
	// Every line logged with a request's context carries its request ID.
	logger = slog.New(httplog.ContextHandler(logger.Handler()))
	st, err := openStore(ctx, c, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := bootstrap(ctx, st, c, std.err, logger); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "passgate_build_info", Help: "passgate's version; always 1.",
	}, []string{"version", "goversion", "backend"})
	reg.MustRegister(buildInfo)
	backend := "sqlite"
	if c.DatabaseURL != "" {
		backend = "postgres"
	}
	buildInfo.WithLabelValues(buildVersion(), goVersion(), backend).Set(1)

	rec, err := audit.New(st, reg, time.Now)
	if err != nil {
		return err
	}
	hasher, err := passwd.NewHasher(0, passwd.DefaultCost)
	if err != nil {
		return err
	}
	resources, err := resource.ParseAll(c.Resources)
	if err != nil {
		return err
	}
	ips := clientip.New(c.TrustedProxies)
	apiKey := c.SeedAPIKey
	if c.APIKeyFile != "" {
		if apiKey, err = readSecretFile(c.APIKeyFile); err != nil {
			return fmt.Errorf("api key: %w", err)
		}
	}
	if apiKey != "" {
		logger.Warn("the static API key (API_KEY or --api-key-file) is deprecated: it is accepted for every configured resource as user apikey:legacy, with no scopes; "+
			"replace it with named keys bound to resources and scopes: passgate apikey add NAME --resource URL [--scope SCOPE]",
			"resources", c.Resources)
	}
	regToken := ""
	if c.RegistrationTokenFile != "" {
		if regToken, err = readSecretFile(c.RegistrationTokenFile); err != nil {
			return fmt.Errorf("registration token: %w", err)
		}
	}

	var resolveClient func(context.Context, string) (store.Client, error)
	if c.CIMD {
		fetcher := cimd.New(cimd.Config{
			AllowLoopbackHTTP:           c.CIMDAllowLoopbackHTTP,
			AllowPrivateSchemeRedirects: c.AllowPrivateSchemes,
			Logger:                      logger.With("component", "cimd"),
		})
		resolveClient = fetcher.ResolveClient
	}
	limits := ratelimit.Set{
		oauthweb.LimitLogin:      ratelimit.New(c.LoginLimit, nil, 0),
		oauthweb.LimitToken:      ratelimit.New(c.TokenLimit, nil, 0),
		oauthweb.LimitAuthorize:  ratelimit.New(c.AuthorizeLimit, nil, 0),
		oauthweb.LimitRegister:   ratelimit.New(c.RegisterLimit, nil, 0),
		oauthweb.LimitRevoke:     ratelimit.New(c.RevokeLimit, nil, 0),
		oauthweb.LimitIntrospect: ratelimit.New(c.RevokeLimit, nil, 0),
	}
	refreshGrace := c.RefreshGrace
	if refreshGrace == 0 {
		refreshGrace = -1 // oauthweb: negative disables, zero means the default
	}
	lockout := c.LockoutThreshold
	if lockout == 0 {
		lockout = -1 // oauthweb: negative disables
	}

	web, err := oauthweb.New(oauthweb.Config{
		Issuer:                      c.Issuer,
		Resources:                   resources,
		Store:                       st,
		Audit:                       rec,
		Hasher:                      hasher,
		Logger:                      logger.With("component", "oauthweb"),
		Metrics:                     reg,
		ClientIP:                    ips.ClientIP,
		Scopes:                      c.Scopes,
		AccessTokenTTL:              c.AccessTokenTTL,
		RefreshTokenTTL:             c.RefreshTokenTTL,
		RefreshIdleTTL:              c.RefreshIdleTTL,
		RefreshGrace:                refreshGrace,
		SessionTTL:                  c.SessionTTL,
		Registration:                c.Registration,
		RegistrationToken:           regToken,
		AllowPrivateSchemeRedirects: c.AllowPrivateSchemes,
		TemplateDir:                 c.TemplateDir,
		PrefillSingleUser:           c.PrefillSingleUser,
		RememberPublicConsent:       c.RememberPublicConsent,
		Branding:                    c.branding(),
		ResolveClient:               resolveClient,
		// Keys are client IPs or "client_id …" keys; RateKey leaves the
		// latter alone (they never parse as an IP).
		RateLimit: func(endpoint, key string) (bool, time.Duration, func()) {
			return limits.Reserve(endpoint, clientip.RateKey(key))
		},
		LockoutThreshold: lockout,
		LockoutWindow:    c.LockoutWindow,
		LockoutDuration:  c.LockoutDuration,
	})
	if err != nil {
		return fmt.Errorf("authorization server: %w", err)
	}
	checker, err := extauthz.NewChecker(extauthz.Config{
		Resources:         resources,
		Store:             st,
		APIKey:            apiKey,
		Scopes:            c.Scopes,
		Logger:            logger.With("component", "extauthz"),
		Metrics:           reg,
		UserHeader:        c.UserHeader,
		ClientIDHeader:    c.ClientIDHeader,
		ScopeHeader:       c.ScopeHeader,
		KeepAuthorization: c.KeepAuthorization,
		AllowPreflight:    c.AllowPreflight,
		RequiredScopes:    c.RequireScopes,
		CacheSize:         c.CheckCacheSize,
		StoreTimeout:      c.StoreTimeout,
	})
	if err != nil {
		return fmt.Errorf("checks: %w", err)
	}

	// Readiness: the store answers and we are not shutting down. gRPC
	// health mirrors it so Envoy stops sending checks to a draining replica.
	var ready atomic.Bool
	healthSrv := health.NewServer()
	setReady := func(ok bool) {
		ready.Store(ok)
		status := healthpb.HealthCheckResponse_NOT_SERVING
		if ok {
			status = healthpb.HealthCheckResponse_SERVING
		}
		healthSrv.SetServingStatus("", status)
		healthSrv.SetServingStatus("envoy.service.auth.v3.Authorization", status)
	}
	pingStore := func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return st.Ping(ctx) == nil
	}
	setReady(pingStore(ctx))

	mux := http.NewServeMux()
	mux.Handle("/", withTimeout(web.Handler(), c.RequestTimeout))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})

	// Bind every listener before serving anything, so a taken port fails
	// the start instead of leaving half a server running.
	httpLn, err := net.Listen("tcp", c.HTTPListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.HTTPListen, err)
	}
	var grpcLn, metricsLn net.Listener
	if c.GRPCListen != "" {
		if grpcLn, err = net.Listen("tcp", c.GRPCListen); err != nil {
			httpLn.Close()
			return fmt.Errorf("listen %s: %w", c.GRPCListen, err)
		}
	}
	if c.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", c.MetricsListen); err != nil {
			httpLn.Close()
			if grpcLn != nil {
				grpcLn.Close()
			}
			return fmt.Errorf("listen %s: %w", c.MetricsListen, err)
		}
	}

	httpSrv := &http.Server{
		// One log line per request (request ID, route, status, duration,
		// client IP; never queries, bodies or credentials). The checks and
		// health probes are logged at debug: proxies call them constantly.
		Handler: httplog.Handler(httplog.Config{
			Logger:        logger.With("component", "http"),
			ClientIP:      ips.ClientIP,
			QuietPrefixes: []string{extauthz.CheckPathPrefix, "/healthz", "/readyz"},
			// The checks are routed before the mux (see HTTPHandler).
		}, checker.HTTPHandler(mux)),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		// Proxies keep connections to the check open; reuse them for a while.
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	grpcSrv := grpc.NewServer(
		// Rotate connections now and then so Envoy rebalances across
		// replicas after a rolling restart.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 10 * time.Minute, MaxConnectionAgeGrace: 30 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	checker.RegisterGRPC(grpcSrv)
	healthpb.RegisterHealthServer(grpcSrv, healthSrv)
	reflection.Register(grpcSrv)

	logger.Info("passgate listening", "version", buildVersion(), "issuer", c.Issuer, "resources", c.Resources,
		"http", httpLn.Addr().String(), "grpc", addrOf(grpcLn), "metrics", addrOf(metricsLn), "backend", backend)

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error {
		if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if grpcLn != nil {
		g.Go(func() error {
			if err := grpcSrv.Serve(grpcLn); err != nil {
				return fmt.Errorf("grpc server: %w", err)
			}
			return nil
		})
	}
	var metricsSrv *http.Server
	if metricsLn != nil {
		mm := http.NewServeMux()
		mm.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		metricsSrv = &http.Server{Handler: mm, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		g.Go(func() error {
			if err := metricsSrv.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		if err := checker.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("token cache invalidation: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if ctx.Err() == nil {
					setReady(pingStore(gctx))
				}
			}
		}
	})
	g.Go(func() error {
		cleanupLoop(gctx, st, c, rec, logger)
		return nil
	})
	g.Go(func() error {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
		case <-gctx.Done():
		}
		// Go NOT_SERVING first so proxies move away, then drain.
		setReady(false)
		healthSrv.Shutdown()
		if c.ShutdownDelay > 0 {
			logger.Info("draining: not ready, still serving", "delay", c.ShutdownDelay)
			time.Sleep(c.ShutdownDelay)
		}
		sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
		defer cancel()
		if err := httpSrv.Shutdown(sctx); err != nil {
			logger.Warn("http shutdown", "err", err)
		}
		stopped := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			grpcSrv.Stop()
		}
		if metricsSrv != nil {
			metricsSrv.Shutdown(sctx)
		}
		cancelRun()
		return nil
	})
	return g.Wait()
}

// withTimeout bounds each request's context: every store call of the
// authorization server then has a deadline, which the handlers answer with
// 503 temporarily_unavailable instead of hanging on a stuck database.
func withTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		r2 := r.WithContext(ctx)
		h.ServeHTTP(w, r2)
		// The authorization server's own mux set the pattern that served
		// the request on r2; hand it back so the request log names the
		// route ("POST /oauth/token") rather than the outer mux's "/".
		if r2.Pattern != "" {
			r.Pattern = r2.Pattern
		}
	})
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// cleanupLoop deletes expired rows and stale dynamic clients periodically.
func cleanupLoop(ctx context.Context, st store.Store, c *Config, rec *audit.Recorder, logger *slog.Logger) {
	t := time.NewTicker(c.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var auditBefore time.Time
		if c.AuditRetention > 0 {
			auditBefore = now.Add(-c.AuditRetention)
		}
		n, err := st.DeleteExpired(ctx, now, auditBefore)
		if err != nil {
			logger.Warn("cleanup: delete expired rows", "err", err)
		} else if n > 0 {
			logger.Info("cleanup: deleted expired rows", "count", n)
		}
		if c.StaleClientAge > 0 {
			ids, err := st.DeleteStaleClients(ctx, now.Add(-c.StaleClientAge))
			if err != nil {
				logger.Warn("cleanup: delete stale clients", "err", err)
			}
			for _, id := range ids {
				if err := rec.Record(ctx, store.AuditEvent{Event: store.EventClientDeleted, Success: true, ClientID: id, Error: "stale"}); err != nil {
					logger.Warn("cleanup: audit", "err", err)
				}
			}
		}
	}
}

// bootstrap applies the seed's environment (admin password hash, the
// pre-registered client) and, when there is no user at all, creates user
// admin with a random password that it prints once.
// seedPasswordSetting names the setting that holds the SHA-256 of the
// $OAUTH_PASSWORD_HASH passgate last applied (a digest, so the settings
// table holds no password hash).
const seedPasswordSetting = "seed_password_hash_sha256"

// applySeedPassword makes $OAUTH_PASSWORD_HASH the password of user admin,
// but only when the hash changed since passgate last applied it: a
// password set since with `passgate user passwd admin` survives restarts
// (the seed reverted it at every start, bringing a leaked old password
// back). Applying a changed hash ends admin's sessions and revokes their
// tokens like any password change, and says so in the log.
func applySeedPassword(ctx context.Context, st store.Store, hash string, now time.Time, logger *slog.Logger) error {
	sum := sha256.Sum256([]byte(hash))
	digest := hex.EncodeToString(sum[:])
	applied, err := st.GetSetting(ctx, seedPasswordSetting)
	switch {
	case err == nil && applied == digest:
		return nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("read the applied $OAUTH_PASSWORD_HASH: %w", err)
	}
	neverApplied := err != nil
	u, err := st.GetUser(ctx, "admin")
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := st.CreateUser(ctx, store.User{Username: "admin", PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return fmt.Errorf("create admin from $OAUTH_PASSWORD_HASH: %w", err)
		}
		logger.Info("created user admin from $OAUTH_PASSWORD_HASH")
	case err != nil:
		return fmt.Errorf("get admin: %w", err)
	case u.PasswordHash == hash:
		// Already in place (applied by a passgate that did not record
		// it): record it, change nothing.
	case neverApplied:
		// Upgrading from a passgate that re-applied the hash at every
		// start without recording it: admin's password differs, so it
		// was changed after the last start, and reverting it is the bug
		// this function exists to stop.
		logger.Warn("kept the current password of user admin: it differs from $OAUTH_PASSWORD_HASH and passgate has no record of applying that hash; to apply it, set a freshly made hash (passgate hash-password) or use passgate user passwd admin")
	default:
		ev := store.AuditEvent{Event: store.EventPasswordChanged, Success: true, IP: "config", Username: "admin", Error: "OAUTH_PASSWORD_HASH", CreatedAt: now}
		revoked, err := st.SetPassword(ctx, "admin", hash, now, &ev)
		if err != nil {
			return fmt.Errorf("update admin from $OAUTH_PASSWORD_HASH: %w", err)
		}
		logger.Warn("applied a changed $OAUTH_PASSWORD_HASH to user admin: ended their sessions and revoked their tokens", "revoked_tokens", len(revoked))
	}
	if err := st.PutSetting(ctx, seedPasswordSetting, digest, now); err != nil {
		return fmt.Errorf("record the applied $OAUTH_PASSWORD_HASH: %w", err)
	}
	return nil
}

func bootstrap(ctx context.Context, st store.Store, c *Config, out io.Writer, logger *slog.Logger) error {
	now := time.Now()
	if c.SeedPasswordHash != "" {
		if err := applySeedPassword(ctx, st, c.SeedPasswordHash, now, logger); err != nil {
			return err
		}
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	if len(users) == 0 {
		pw := token.New("")[:24]
		hash, err := passwd.Hash(pw, passwd.DefaultCost)
		if err != nil {
			return err
		}
		err = st.CreateUser(ctx, store.User{Username: "admin", PasswordHash: hash, CreatedAt: now, UpdatedAt: now})
		switch {
		case errors.Is(err, store.ErrAlreadyExists):
			// Another replica bootstrapped at the same moment.
		case err != nil:
			return fmt.Errorf("create admin: %w", err)
		default:
			// Printed, never logged: logs are shipped and kept.
			fmt.Fprintf(out, "\n  passgate created user \"admin\" with password: %s\n  It is shown only this once; change it with `passgate user passwd admin`.\n\n", pw)
		}
	}
	if c.SeedClientID != "" {
		secretHash, err := passwd.Hash(c.SeedClientSecret, passwd.DefaultCost)
		if err != nil {
			return fmt.Errorf("hash $OAUTH_CLIENT_SECRET: %w", err)
		}
		want := store.Client{
			ID: c.SeedClientID, Name: c.SeedClientID, SecretHash: secretHash,
			RedirectURIs: c.SeedRedirectURIs, TokenEndpointAuthMethod: "client_secret_basic",
			GrantTypes: []string{"authorization_code", "refresh_token"}, Source: store.ClientStatic, CreatedAt: now,
		}
		cur, err := st.GetClient(ctx, c.SeedClientID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("get seed client: %w", err)
		case passwd.Verify(cur.SecretHash, c.SeedClientSecret) == nil && slices.Equal(cur.RedirectURIs, want.RedirectURIs):
			return nil
		default:
			if err := st.DeleteClient(ctx, c.SeedClientID, now); err != nil {
				return fmt.Errorf("replace seed client: %w", err)
			}
		}
		if err := st.CreateClient(ctx, want); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return fmt.Errorf("create seed client: %w", err)
		}
		logger.Info("pre-registered client from $OAUTH_CLIENT_ID", "client_id", c.SeedClientID, "redirect_uris", c.SeedRedirectURIs)
	}
	return nil
}
