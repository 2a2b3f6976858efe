// Package deploy holds the files users copy to run passgate in front of an
// MCP server: nginx.conf (an envsubst template for nginx auth_request),
// envoy.yaml (an Envoy v3 bootstrap with the ext_authz filter),
// caddy/Caddyfile (forward_auth), traefik/passgate.yml (a Traefik v3 dynamic
// configuration with ForwardAuth), ingress-nginx/passgate.yaml (Kubernetes
// Ingresses with the auth-url annotations), docker-compose.yml and
// .env.example.
//
// The package has no code of its own, only tests that keep those files
// working as shipped: envoy.yaml is decoded strictly into Envoy's own
// protobuf types and validated; docker-compose.yml is checked against the
// two proxy configurations; nginx.conf is rendered the way the official
// nginx image renders templates and served by a real nginx on loopback;
// the Caddyfile runs in a real Caddy with its variables in the environment;
// the Ingresses and the Traefik file are decoded strictly into mirrors of
// their schemas (Traefik cannot be built from the Go module proxy), and the
// nginx configuration the ingress-nginx controller renders for the
// Ingresses (ingress-nginx/testdata) runs in a real nginx.
//
// A hostile corpus (corpus_test.go) goes through
// each of those proxies, and over gRPC as Envoy would send it, to the real
// passgate binary; an upstream records what reached it, and every request
// that did is checked: the token's audience is the resource the upstream
// served, its scopes satisfy the rules for the path served, and every
// identity header came from passgate.
//
// Every configuration sends passgate's public paths (oauthweb.PublicPaths,
// which a test of oauthweb holds equal to its routes) to passgate
// unchecked, and no look-alike path (routes_test.go); two-step sign-in and
// the account page run through real nginx and real Caddy
// (pages_e2e_test.go).
//
// The tests add the shipped proxy configurations to internal/testing/e2etest's harness
// (which builds and runs the binaries and nginx): startNginx,
// startNginxTemplate, startCaddy and renderNginxConf run a file of this
// directory as shipped; a test that runs passgate and the example MCP server
// behind a shipped proxy configuration uses them.
package deploy
