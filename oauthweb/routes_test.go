package oauthweb

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestPublicPathsAreHandlersRoutes: PublicPaths names exactly the paths
// Handler serves (with passkeys on), apart from the path-suffixed forms
// of the discovery documents, and each of them is answered by passgate,
// not the mux's 404. The shipped proxy configurations are tested against
// PublicPaths (deploy/routes_test.go), so a page added to Handler without
// it fails here.
func TestPublicPathsAreHandlersRoutes(t *testing.T) {
	e := newEnv(t, withSealer(""), withLocalhostIssuer)
	if !e.s.passkeysOn() {
		t.Fatal("passkeys are off: the test would miss the WebAuthn routes")
	}
	public := PublicPaths()
	var served []string
	for _, pattern := range e.s.handler().patterns {
		path := pattern
		if _, p, ok := strings.Cut(pattern, " "); ok {
			path = p
		}
		if strings.ContainsAny(path, "{}") || !strings.HasPrefix(path, "/") {
			t.Errorf("pattern %q: the test models literal paths only", pattern)
		}
		suffixed := false
		for _, p := range public {
			if strings.HasPrefix(p, "/.well-known/") && strings.HasPrefix(path, p+"/") {
				suffixed = true
			}
		}
		if !suffixed && !slices.Contains(served, path) {
			served = append(served, path)
		}
	}
	for _, p := range served {
		if !slices.Contains(public, p) {
			t.Errorf("Handler serves %s, which PublicPaths does not list (add it there and route it in every deploy/ configuration)", p)
		}
	}
	for _, p := range public {
		if !slices.Contains(served, p) {
			t.Errorf("PublicPaths lists %s, which Handler does not serve", p)
		}
	}
	// And the mux answers each one itself: GET and POST, one of which is
	// the route's method, never both 404.
	for _, p := range public {
		get, _ := e.srv.Client().Get(e.issuer + p)
		post, _ := e.srv.Client().Post(e.issuer+p, "application/x-www-form-urlencoded", nil)
		if get == nil || post == nil {
			t.Fatalf("%s: request failed", p)
		}
		get.Body.Close()
		post.Body.Close()
		if get.StatusCode == http.StatusNotFound && post.StatusCode == http.StatusNotFound {
			t.Errorf("%s: 404 for GET and POST", p)
		}
	}
}
