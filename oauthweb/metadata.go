package oauthweb

import (
	"net/http"
	"strings"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
)

// asMetadata is RFC 8414 authorization server metadata. It advertises only
// what passgate implements.
type asMetadata struct {
	Issuer                                 string   `json:"issuer"`
	AuthorizationEndpoint                  string   `json:"authorization_endpoint"`
	TokenEndpoint                          string   `json:"token_endpoint"`
	RegistrationEndpoint                   string   `json:"registration_endpoint,omitempty"`
	RevocationEndpoint                     string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                  string   `json:"introspection_endpoint"`
	ScopesSupported                        []string `json:"scopes_supported"`
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	ResponseModesSupported                 []string `json:"response_modes_supported"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported          []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethods       []string `json:"introspection_endpoint_auth_methods_supported"`
	AuthorizationResponseISSParameter      bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported      bool     `json:"client_id_metadata_document_supported,omitempty"`
}

var clientAuthMethods = []string{"none", "client_secret_basic", "client_secret_post"}

func (s *Server) asMetadata() asMetadata {
	m := asMetadata{
		Issuer:                                 s.cfg.Issuer,
		AuthorizationEndpoint:                  s.endpoints.authorize,
		TokenEndpoint:                          s.endpoints.token,
		RevocationEndpoint:                     s.endpoints.revoke,
		IntrospectionEndpoint:                  s.endpoints.introspect,
		ScopesSupported:                        s.cfg.Scopes,
		ResponseTypesSupported:                 []string{"code"},
		ResponseModesSupported:                 []string{"query"},
		GrantTypesSupported:                    []string{"authorization_code", "refresh_token"},
		CodeChallengeMethodsSupported:          []string{oauth.MethodS256},
		TokenEndpointAuthMethodsSupported:      clientAuthMethods,
		RevocationEndpointAuthMethodsSupported: clientAuthMethods,
		IntrospectionEndpointAuthMethods:       []string{"client_secret_basic", "client_secret_post"},
		AuthorizationResponseISSParameter:      true,
		ClientIDMetadataDocumentSupported:      s.cfg.ResolveClient != nil,
	}
	if s.cfg.Registration != RegistrationClosed {
		m.RegistrationEndpoint = s.endpoints.register
	}
	return m
}

func (s *Server) serveASMetadata(w http.ResponseWriter, r *http.Request) {
	writeMetadata(w, s.asMetadata())
}

// writeMetadata sends public, cacheable JSON (metadata changes only with
// configuration).
func writeMetadata(w http.ResponseWriter, v any) {
	oauth.WriteJSON(w, http.StatusOK, v)
}

// prMetadata is RFC 9728 protected resource metadata.
type prMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name"`
}

func (s *Server) resourceMetadataPaths() []string {
	var out []string
	for _, r := range s.cfg.Resources {
		out = append(out, r.MetadataPath())
	}
	return out
}

// serveResourceMetadata answers for the resource whose metadata path this
// is: its document names the resource exactly (RFC 9728 §3.3), in
// canonical form. The bare well-known path describes an origin
// (serveOriginMetadata). When two resources on different hosts share a
// path, the request's host picks one; the Host header only selects among
// configured documents, it never builds a URL.
func (s *Server) serveResourceMetadata(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/.well-known/oauth-protected-resource" {
		s.serveOriginMetadata(w, r)
		return
	}
	var candidates []resource.Resource
	for _, res := range s.cfg.Resources {
		if res.MetadataPath() == r.URL.Path {
			candidates = append(candidates, res)
		}
	}
	if len(candidates) == 0 {
		oauth.WriteError(w, &oauth.Error{Code: oauth.CodeInvalidRequest, Description: "unknown resource", Status: http.StatusNotFound})
		return
	}
	chosen := pickByHost(candidates, r.Host)
	s.writeResourceMetadata(w, chosen.URL, chosen.Host+strings.TrimSuffix(chosen.Path, "/"))
}

// serveOriginMetadata answers the root well-known path. RFC 9728 §3.3:
// the resource in a document must be the identifier its URL was built
// from, and for /.well-known/oauth-protected-resource that is the origin,
// so the document describes the origin of the configured resource whose
// host the request names (the first resource's when none does). Clients
// that find only this document (no resource_metadata in the challenge)
// send the origin as their resource indicator; resource.Lookup maps it to
// the origin's only resource, and refuses it with invalid_target when
// several resources share the origin, so such a client must be given the
// resource's URL. The checks' challenges point at the path-suffixed
// documents, which stay exact.
func (s *Server) serveOriginMetadata(w http.ResponseWriter, r *http.Request) {
	chosen := pickByHost(s.cfg.Resources, r.Host)
	s.writeResourceMetadata(w, chosen.Origin(), chosen.Host)
}

// pickByHost returns the first of rs (not empty) whose host is host,
// compared as origins are, or rs[0].
func pickByHost(rs []resource.Resource, host string) resource.Resource {
	for _, c := range rs {
		if c.Host == resource.CanonicalHost(c.Scheme, host) {
			return c
		}
	}
	return rs[0]
}

func (s *Server) writeResourceMetadata(w http.ResponseWriter, id, name string) {
	writeMetadata(w, prMetadata{
		Resource:             id,
		AuthorizationServers: []string{s.cfg.Issuer},
		// The minimal scopes (MCP authorization, scope selection): a
		// client asks for these first and steps up when a check names
		// another.
		ScopesSupported:        s.cfg.BaseScopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           name,
	})
}
