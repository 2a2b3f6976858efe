package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPollInterval is how often a Reloader looks at its file.
const DefaultPollInterval = time.Second

// Reloader keeps a Holder in step with the policy file: it reloads on a
// signal (SIGHUP) and when the file's content changes. A file that does
// not parse or compile leaves the current policy in force: the errors are
// logged, passgate_policy_reloads_total{result="error"} counts it and
// passgate_policy_last_reload_ok drops to 0 until a good reload.
type Reloader struct {
	path    string
	compile func(*File) (*Policy, error)
	holder  *Holder
	logger  *slog.Logger
	sum     [sha256.Size]byte // of the content in force

	reloads *prometheus.CounterVec
	ok      prometheus.Gauge
}

// NewReloader returns a Reloader of the file at path into holder, which
// compile validates (every problem at once) and turns into a Policy (with the configured resources and
// --require-scopes rules). It registers its metrics in reg.
func NewReloader(path string, compile func(*File) (*Policy, error), holder *Holder, logger *slog.Logger, reg prometheus.Registerer) (*Reloader, error) {
	r := &Reloader{path: path, compile: compile, holder: holder, logger: logger,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passgate_policy_reloads_total",
			Help: "Policy file reloads by result (ok, error); an error keeps the previous policy.",
		}, []string{"result"}),
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "passgate_policy_last_reload_ok",
			Help: "1 if the last policy reload succeeded (or none failed since start), 0 if the file in place is invalid and an older policy is in force.",
		}),
	}
	for _, c := range []prometheus.Collector{r.reloads, r.ok} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("policy: register metrics: %w", err)
		}
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	r.ok.Set(1)
	return r, nil
}

// Load reads, compiles and installs the file, returning every problem
// (and installing nothing) if it is invalid.
func (r *Reloader) Load() error {
	b, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return r.install(b)
}

func (r *Reloader) install(b []byte) error {
	f, err := Decode(b)
	if err != nil {
		return err
	}
	p, err := r.compile(f)
	if err != nil {
		return err
	}
	r.holder.Store(p)
	r.sum = sha256.Sum256(b)
	return nil
}

// Reload reloads the file now, keeping the current policy if it is
// invalid. It reports whether the new file is in force.
func (r *Reloader) Reload(ctx context.Context, why string) bool {
	b, err := os.ReadFile(r.path)
	if err == nil {
		if sha256.Sum256(b) == r.sum {
			r.ok.Set(1)
			return true
		}
		err = r.install(b)
	} else {
		err = fmt.Errorf("policy: %w", err)
	}
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.ok.Set(0)
		r.logger.ErrorContext(ctx, "policy reload failed; the previous policy stays in force", "file", r.path, "trigger", why,
			"errors", errorList(err))
		return false
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.ok.Set(1)
	r.logger.InfoContext(ctx, "policy reloaded", "file", r.path, "trigger", why)
	return true
}

// Run reloads on every value from hup and whenever the file's content
// changes (polled every interval: a rename into place, a Kubernetes
// ConfigMap update and an edit in place all show), until ctx ends.
func (r *Reloader) Run(ctx context.Context, hup <-chan os.Signal, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var failed [sha256.Size]byte // content of the last invalid file, not retried until it changes
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			r.Reload(ctx, "signal")
		case <-t.C:
			b, err := os.ReadFile(r.path)
			if err != nil {
				if failed != ([sha256.Size]byte{}) {
					continue
				}
				failed = [sha256.Size]byte{1}
				r.Reload(ctx, "file change")
				continue
			}
			sum := sha256.Sum256(b)
			if sum == r.sum || sum == failed {
				continue
			}
			if !r.Reload(ctx, "file change") {
				failed = sum
			} else {
				failed = [sha256.Size]byte{}
			}
		}
	}
}

// errorList splits a joined error into its lines for a log attribute.
func errorList(err error) []string { return strings.Split(err.Error(), "\n") }
