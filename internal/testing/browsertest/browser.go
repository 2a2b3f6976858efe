// Package browsertest drives passgate's pages (login, consent, connected
// apps, logout and the error pages) in a real headless Chromium through
// the DevTools protocol (github.com/chromedp/chromedp), against the real
// passgate binary started by internal/testing/e2etest. Its tests check the whole
// browser flow at a phone and a desktop viewport, labels and live regions
// in the page's own DOM, that no request leaves loopback, and that a
// broken template override stops startup, and second factors: TOTP with
// codes computed by the test, recovery codes, and passkeys through the
// DevTools virtual authenticator (WebAuthn.addVirtualAuthenticator), on
// SQLite and PostgreSQL. With PASSGATE_SCREENSHOTS set to
// a directory, TestScreenshots writes a PNG of every page at both
// viewports in light and dark mode (scripts/screenshots.sh).
//
// Chromium is Debian's /usr/bin/chromium, which scripts/test.sh installs.
// When it is missing the tests skip, except with CI=true, where they fail
// (e2etest.NeedTool).
package browsertest

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/testing/e2etest"
)

// Viewport is a browser window size.
type Viewport struct {
	Name          string
	Width, Height int64
	// Mobile emulates a phone: the page's meta viewport applies and touch
	// is on.
	Mobile bool
}

// The viewports every page is tested and photographed at.
var (
	Phone   = Viewport{Name: "phone", Width: 375, Height: 812, Mobile: true}
	Desktop = Viewport{Name: "desktop", Width: 1280, Height: 800}
	// Narrow is the smallest phone still common (iPhone SE, 1st gen).
	Narrow = Viewport{Name: "narrow", Width: 320, Height: 568, Mobile: true}
)

// ChromiumPath returns the Chromium executable, or ends the test like
// e2etest.NeedTool.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	return e2etest.NeedTool(t, "chromium")
}

// Browser is a headless Chromium with a fresh profile, one tab, a
// viewport, a colour scheme, and a record of every URL the tab requested.
type Browser struct {
	// Ctx runs actions in the tab: chromedp.Do(b.Ctx, …). Derive
	// per-step timeouts from it, never set one on it.
	Ctx context.Context

	mu   sync.Mutex
	urls []string
}

// NewBrowser starts Chromium for the test; it stops when the test ends.
// dark selects prefers-color-scheme: dark.
func NewBrowser(t testing.TB, vp Viewport, dark bool) *Browser {
	t.Helper()
	exe := ChromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container has no user namespaces
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(vp.Width), int(vp.Height)),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &Browser{}
	// chromedp may log from its reader goroutine while the browser shuts
	// down; t.Logf after the test ended would panic.
	var logMu sync.Mutex
	ended := false
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !ended {
			t.Logf(format, args...)
		}
	}
	ctx, cancel := chromedp.NewContext(actx,
		chromedp.WithLogf(logf), chromedp.WithErrorf(logf),
		chromedp.WithListener(func(ev any) {
			switch e := ev.(type) {
			case *network.EventRequestWillBeSent:
				b.record(e.Request.URL)
			case network.EventRequestWillBeSent:
				b.record(e.Request.URL)
			}
		}))
	t.Cleanup(func() {
		cancel()
		acancel()
		logMu.Lock()
		ended = true
		logMu.Unlock()
	})
	b.Ctx = ctx

	var vpOpts []chromedp.EmulateViewportOption
	if vp.Mobile {
		vpOpts = append(vpOpts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(vp.Width, vp.Height, vpOpts...),
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return chromedp.Void{}, err
		},
	)
	if err != nil {
		t.Fatalf("browsertest: start chromium: %v", err)
	}
	return b
}

func (b *Browser) record(u string) {
	b.mu.Lock()
	b.urls = append(b.urls, u)
	b.mu.Unlock()
}

// Requests returns every URL the tab has requested so far.
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.urls...)
}

// NonLoopback returns the requested URLs that are neither data: URLs nor
// addressed to 127.0.0.1, ::1 or localhost.
func (b *Browser) NonLoopback() []string {
	var out []string
	for _, raw := range b.Requests() {
		if strings.HasPrefix(raw, "data:") || raw == "about:blank" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			out = append(out, raw)
			continue
		}
		if resource.IsLoopbackHost(u.Hostname()) {
			continue
		}
		out = append(out, raw)
	}
	return out
}
