// Package extauthz answers the question every proxy in front of an MCP
// server asks on every request: may this request through? It holds one pure
// core, Checker.Check, and two thin front ends over it: the Envoy ext_authz
// v3 gRPC service (envoy.service.auth.v3.Authorization) and an HTTP check for
// nginx auth_request, Traefik ForwardAuth, Caddy forward_auth, ingress-nginx
// auth-url and Envoy's HTTP ext_authz mode.
//
// A request is allowed when it carries, in "Authorization: Bearer …", an
// access token that exists, is neither expired nor revoked, and whose
// audience (RFC 8707) is the protected resource the request is for; or an
// API key bound to that resource (see apikey.go). Otherwise it is denied with a 401 whose
// WWW-Authenticate header points at the resource's RFC 9728 metadata, which
// is how an MCP client that knows only the server URL finds passgate. A
// malformed Authorization header is 400 invalid_request (RFC 6750 section
// 3.1).
//
// Verified tokens are cached in process, bounded in size and never past
// their expiry; Run consumes the store's invalidations so a revocation on any
// replica reaches the cache. When the store is unreachable, cached tokens
// keep working and uncached ones fail closed: the gRPC front end returns
// codes.Unavailable (Envoy with failure_mode_allow: false denies) and the
// HTTP front end answers 503 (nginx turns it into a 500). The check path
// never writes to the store.
//
// # Which request is judged
//
// The check must judge exactly the request the proxy routes, or a token for
// one resource opens another. Three rules make it so.
//
// The path is canonical: resources and scope rules match only on
// resource.CanonicalPath of the reported target (percent-decoded, dot
// segments resolved, slashes merged), which is how nginx, Envoy (with
// deploy/envoy.yaml's normalize_path and merge_slashes), Caddy, Traefik and
// the upstream route it, so "/mcp/%61dmin" is "/mcp/admin". A target whose
// meaning differs between proxies and upstreams (an encoded "/" or "\",
// %00, an invalid or double encoding, ";" path parameters, a backslash) is
// refused with 400 invalid_request (reason invalid_path), never guessed:
// nginx routes "/other/..%2Fmcp" into "location /mcp" while the upstream
// may see "/other/..%2Fmcp".
//
// The host is the one the proxy routed on, reported by the proxy's own
// configuration, never the client's Host header when they can differ (an
// absolute-form request target "GET http://b.example/mcp" with "Host: a"
// is routed on b by nginx).
//
// The request model is declared by the path the proxy calls, one per proxy
// family; the headers of another family are never read, and each declared
// header must appear exactly once (a second copy means the client sent one
// the proxy did not overwrite):
//
//   - CheckPathNginx, nginx auth_request: X-Original-URI ($request_uri),
//     X-Original-Method ($request_method), X-Forwarded-Host and
//     X-Forwarded-Proto. deploy/nginx.conf sets all four in its internal
//     check location, overwriting the client's copies; it sends the server
//     block's own name and port as the host, and its default server refuses
//     every host it does not serve. The tests run that file.
//   - CheckPathForwardAuth, Traefik ForwardAuth and Caddy forward_auth:
//     X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host and
//     X-Forwarded-Proto, which both proxies set from the request they route
//     (Traefik without trustForwardHeader, Caddy for clients outside
//     trusted_proxies). Both also pass every client header to the check, so
//     an X-Original-URI or X-Original-Method the client adds is ignored.
//     Both route on the host name alone and report the client's Host with
//     its port, so the check URL pins the site's port (?port=443) and a
//     request naming another port is refused.
//   - CheckPathIngressNginx, ingress-nginx auth-url: X-Original-URL
//     ($scheme://$http_host$request_uri, absolute) and X-Original-Method,
//     exactly as the controller's template sends them. The host in that URL
//     is the client's Host header, not the one the controller routed on, so
//     the auth-url must pin it: ?host=mcp.example.com or ?resource=<one of
//     the resource URLs>. Without a pin the check answers 400; a request
//     whose reported host differs from the pin gets 403 access_denied
//     (reason host_mismatch), which nginx passes to the client as is.
//   - CheckPathEnvoy + the original path, Envoy's HTTP ext_authz with
//     path_prefix: the original path and query from the check's request
//     target, the original method and Host (Envoy routes on :authority).
//
// The CORS preflight exemption (Config.AllowPreflight) uses only the
// method the proxy reports: Envoy's attributes, nginx's and ingress-nginx's
// X-Original-Method (set from $request_method), forward auth's
// X-Forwarded-Method.
//
// A request for the HTTP check answers only 200, 400, 401, 403 and, for a
// store outage on an uncached token, 503. nginx auth_request turns 400 and
// 503 into 500: the request fails closed. Allowed answers carry every
// identity header (empty when there is no such identity: a CORS preflight,
// a request outside every resource; an API key's user is
// "apikey:NAME"), so a proxy that copies them overwrites whatever the
// client sent under those names. In Envoy's form they also carry
// X-Envoy-Auth-Headers-To-Remove (Authorization and the identity headers
// without a value), which Envoy's HTTP ext_authz honours; Traefik's
// authResponseHeaders and Caddy's copy_headers must list the three identity
// headers, and the proxy must remove the Authorization header itself.
//
// # In process: the built-in proxy
//
// Checker.CheckReceived decides a request passgate received itself, for
// its built-in reverse proxy (extauthz/proxy, `serve --upstream`): there is
// no proxy to report the request, so the request line's method, the host
// net/http routes on and the target as received are the whole model, and
// no header describes the request. Its decisions count under
// frontend="proxy".
//
// # Wiring the gRPC check
//
// NewGRPCServer returns the *grpc.Server passgate serves: the Authorization
// service, the caller's gRPC health server (grpc.health.v1) and server
// reflection registered, and keepalive MaxConnectionAge set so Envoy's
// long-lived connections spread over replicas. On SIGTERM call
// SetServing(hs, false) (health answers NOT_SERVING), give Envoy a moment to
// notice, then GracefulStop. Envoy reports the
// method, host and path it routes on in the CheckRequest's attributes. The
// path gets the same canonicalization and refusals as over HTTP, although
// deploy/envoy.yaml already has Envoy normalize it and reject escaped
// slashes: passgate does not rely on the proxy's configuration for it.
package extauthz
