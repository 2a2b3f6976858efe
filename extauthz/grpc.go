package extauthz

import (
	"context"
	"runtime"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// AuthorizationService is the gRPC service name Envoy calls, also the
// service whose health NewGRPCServer reports.
const AuthorizationService = "envoy.service.auth.v3.Authorization"

// grpcServer adapts a Checker to envoy.service.auth.v3.Authorization.
type grpcServer struct {
	authv3.UnimplementedAuthorizationServer
	c *Checker
}

var (
	statusOK               = &rpcstatus.Status{Code: int32(codes.OK)}
	statusUnauthenticated  = &rpcstatus.Status{Code: int32(codes.Unauthenticated)}
	statusPermissionDenied = &rpcstatus.Status{Code: int32(codes.PermissionDenied)}
	statusInvalidArgument  = &rpcstatus.Status{Code: int32(codes.InvalidArgument)}
)

// Check implements the Envoy ext_authz v3 service. A bad token is a
// DeniedHttpResponse; a store outage on an uncached token is a gRPC
// Unavailable error, which Envoy (failure_mode_allow: false) turns into a
// denial.
func (s grpcServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	r := envoyRequest(req)
	var (
		d   Decision
		err error
	)
	if reason := s.c.routePins(r, req.GetAttributes().GetContextExtensions()); reason != ReasonToken {
		d = s.c.refuse(reason)
	} else {
		d, err = s.c.Check(ctx, r)
	}
	s.c.record(ctx, frontendGRPC, grpcLogName, r, d, start)
	if err != nil {
		return nil, status.Error(codes.Unavailable, "token store unavailable")
	}
	return envoyResponse(d), nil
}

// routePins checks r against what the Envoy route pins in its ext_authz
// per-route check_settings.context_extensions, the gRPC counterpart of the
// HTTP checks' ?port=, ?host= and ?resource=. Envoy reports the client's
// :authority, port included, whatever virtual host routed the request, so
// with domains: ["*"] a client could name another resource's host or port
// and have its token judged against that resource while the request goes
// to this route's MCP server. "port" (the port clients use for this route)
// refuses an authority naming another port; "resource" (a configured
// resource URL) refuses one naming another host or port (403
// host_mismatch). Without either, nothing is pinned; other keys are
// ignored (they may be another filter's). A pin that cannot be read is
// refused (400), so a typo fails closed.
func (c *Checker) routePins(r Request, ext map[string]string) Reason {
	if len(ext) == 0 {
		return ReasonToken
	}
	if p, ok := ext["port"]; ok {
		if reason := pinnedPort(r, []string{p}); reason != ReasonToken {
			return reason
		}
	}
	if u, ok := ext["resource"]; ok {
		return c.pinnedResource(r, u)
	}
	return ReasonToken
}

// envoyRequest reads a CheckRequest with nil-safe getters. Envoy sends
// lowercase header keys, either in headers or, with encode_raw_headers, in
// header_map (where a repeated header appears once per value).
func envoyRequest(req *authv3.CheckRequest) Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	r := Request{
		Method:        h.GetMethod(),
		Scheme:        h.GetScheme(),
		Host:          h.GetHost(),
		Path:          h.GetPath(),
		Headers:       h.GetHeaders(),
		SourceAddress: attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
	if hm := h.GetHeaderMap().GetHeaders(); len(r.Headers) == 0 && len(hm) > 0 {
		r.Headers = make(map[string]string, 4)
		for _, hv := range hm {
			k := strings.ToLower(hv.GetKey())
			switch k {
			case "authorization", "origin", "access-control-request-method", "mcp-method", "mcp-name", "mcp-protocol-version":
			default:
				continue
			}
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			if old, dup := r.Headers[k]; dup {
				v = old + "," + v // as Envoy joins them in headers
				if k == "mcp-name" {
					v = "\n" // a resource URI may hold a comma: mark the repetition (mcpCall refuses it)
				}
			}
			r.Headers[k] = v
		}
	}
	// with_request_body: the body as Envoy buffered it (pack_as_bytes
	// puts it in raw_body). A partial body (allow_partial_message) fails
	// to parse and is refused where the policy needs it.
	if b := h.GetRawBody(); len(b) > 0 {
		r.Body = string(b)
	} else {
		r.Body = h.GetBody()
	}
	if r.Host == "" {
		r.Host = r.Headers[":authority"]
	}
	if r.Path == "" {
		r.Path = r.Headers[":path"]
	}
	return r
}

// okResponse is every message of an allowed answer, with room for the three
// identity headers, so that building it is one allocation instead of six.
// gRPC marshals the response after Check returns, so it cannot be pooled.
type okResponse struct {
	resp authv3.CheckResponse
	wrap authv3.CheckResponse_OkResponse
	ok   authv3.OkHttpResponse
	ptrs [3]*corev3.HeaderValueOption
	opts [3]corev3.HeaderValueOption
	hvs  [3]corev3.HeaderValue
}

func envoyResponse(d Decision) *authv3.CheckResponse {
	if d.Allow {
		r := new(okResponse)
		r.ok.HeadersToRemove = d.RemoveHeaders
		// Identity headers without a value are in RemoveHeaders: Envoy
		// would drop an empty header rather than overwrite the client's
		// copy with it.
		n := 0
		for _, h := range d.Headers {
			if h.Value == "" {
				continue
			}
			if n == len(r.ptrs) {
				r.ok.Headers = headerOptions(d.Headers)
				n = -1
				break
			}
			r.hvs[n].Key, r.hvs[n].Value = h.Name, h.Value
			r.opts[n].Header = &r.hvs[n]
			r.opts[n].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			r.ptrs[n] = &r.opts[n]
			n++
		}
		if n > 0 {
			r.ok.Headers = r.ptrs[:n:n]
		}
		r.wrap.OkResponse = &r.ok
		r.resp.Status = statusOK
		r.resp.HttpResponse = &r.wrap
		return &r.resp
	}
	st := statusUnauthenticated
	switch d.Status {
	case 403:
		st = statusPermissionDenied
	case 400:
		st = statusInvalidArgument
	}
	return &authv3.CheckResponse{
		Status: st,
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
			Headers: headerOptions(d.Headers),
			Body:    d.Body,
		}},
	}
}

// headerOptions overwrites: identity headers replace any copy the client
// sent, rather than being appended to it. Empty values are skipped (see
// envoyResponse).
func headerOptions(hs []Header) []*corev3.HeaderValueOption {
	opts := make([]*corev3.HeaderValueOption, 0, len(hs))
	vals := make([]corev3.HeaderValueOption, len(hs))
	hvs := make([]corev3.HeaderValue, len(hs))
	for i, h := range hs {
		if h.Value == "" {
			continue
		}
		hvs[i].Key, hvs[i].Value = h.Name, h.Value
		vals[i].Header = &hvs[i]
		vals[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		opts = append(opts, &vals[i])
	}
	return opts
}

// maxConnectionAge makes Envoy reconnect now and then, so its long-lived
// connections spread over replicas after a scale-out or a rolling restart.
const maxConnectionAge = 10 * time.Minute

// NewGRPCServer returns the gRPC server passgate serves: the Authorization
// service, hs as grpc.health.v1 (none when nil) and server reflection, with
// keepalive MaxConnectionAge. opts are applied after passgate's own, so a
// caller may override them. The caller owns hs: it sets the serving status
// with SetServing, and on shutdown sets NOT_SERVING before GracefulStop.
func NewGRPCServer(c *Checker, hs *health.Server, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: 30 * time.Second,
		}),
		// Envoy pings idle HTTP/2 connections when configured to; accept
		// that rather than answering GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		// Without workers gRPC starts a goroutine per check, whose stack
		// grows anew through the handler every time (runtime.newstack and
		// copystack were 5 to 6 % of passgate's CPU on cache misses). A
		// worker is held for a whole check, a miss's store read included;
		// when all are busy gRPC falls back to a goroutine per check.
		grpc.NumStreamWorkers(uint32(max(16, 4*runtime.GOMAXPROCS(0)))),
	}, opts...)
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, grpcServer{c: c})
	if hs != nil {
		healthpb.RegisterHealthServer(s, hs)
	}
	reflection.Register(s)
	return s
}

// SetServing sets hs, the health service of a server from NewGRPCServer,
// for the whole server ("") and AuthorizationService: SERVING, or
// NOT_SERVING while shutting down or while the store is not ready.
func SetServing(hs *health.Server, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(AuthorizationService, st)
}
