package oauthweb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

const maxRedirectURIs = 20

// registration is the RFC 7591 response; omitempty keeps null and empty
// optional fields out (some clients choke on "client_name": null).
type registration struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
}

func metadataError(code, desc string) *oauth.Error { return oauth.NewError(code, desc) }

func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ev := s.event(r, store.EventClientRegistration, true)
	// Two limits per client IP, both spent before any work so a burst
	// cannot overrun them: LimitRegister counts failures (refunded on
	// success), LimitRegisterSuccess counts successes (refunded on
	// failure). Hosted clients such as claude.ai and ChatGPT register one
	// client per user from a few shared addresses, so successes get a
	// much higher limit than failures; the stale-client sweep removes
	// the ones never used.
	ip := s.clientIP(r)
	ok, refundFailure := s.reserve(w, r, LimitRegister, ip, "")
	if !ok {
		writeTooManyRequests(w)
		return
	}
	ok, refundSuccess := s.reserve(w, r, LimitRegisterSuccess, ip, "")
	if !ok {
		refundFailure()
		writeTooManyRequests(w)
		return
	}
	fail := func(oe *oauth.Error) {
		refundSuccess()
		if oe.Status == http.StatusServiceUnavailable {
			refundFailure() // our outage is not the client's failure
		}
		ev.Success, ev.Error = false, oe.Code
		s.record(ctx, ev)
		oauth.WriteError(w, oe)
	}
	switch s.cfg.Registration {
	case RegistrationClosed:
		fail(&oauth.Error{Code: oauth.CodeAccessDenied, Description: "dynamic client registration is disabled", Status: http.StatusForbidden})
		return
	case RegistrationToken:
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !token.Equal(strings.TrimSpace(got), s.cfg.RegistrationToken) {
			fail(&oauth.Error{Code: oauth.CodeInvalidToken, Description: "a valid initial access token is required", Status: http.StatusUnauthorized, WWWAuthenticate: `Bearer error="invalid_token"`})
			return
		}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		// RFC 7591 §3.2.2: every registration error is a 400 with its
		// code; only a body over the size limit gets its own status.
		fail(metadataError(oauth.CodeInvalidClientMetadata, "content type must be application/json"))
		return
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(&oauth.Error{Code: oauth.CodeInvalidClientMetadata, Description: "request body too large", Status: http.StatusRequestEntityTooLarge})
			return
		}
		fail(metadataError(oauth.CodeInvalidClientMetadata, "could not read the request body"))
		return
	}
	client, oe := s.parseRegistration(buf.Bytes())
	if oe != nil {
		fail(oe)
		return
	}
	now := s.now()
	client.ID = token.New("")[:32]
	client.Source = store.ClientDynamic
	client.CreatedAt = now
	ev.ClientID = client.ID
	var secret string
	if client.TokenEndpointAuthMethod != "none" {
		secret = token.New(token.PrefixClientSecret)
		h, err := s.cfg.Hasher.Hash(ctx, secret)
		if err != nil {
			s.log.ErrorContext(ctx, "hash client secret", "err", err)
			fail(oauth.ServerError())
			return
		}
		client.SecretHash = h
	}
	if err := s.cfg.Store.CreateClient(ctx, client); err != nil {
		fail(s.storeError(ctx, "create client", err))
		return
	}
	refundFailure()
	s.record(ctx, ev)
	resp := registration{
		ClientID:                client.ID,
		ClientSecret:            secret,
		ClientIDIssuedAt:        now.Unix(),
		RedirectURIs:            client.RedirectURIs,
		TokenEndpointAuthMethod: client.TokenEndpointAuthMethod,
		GrantTypes:              client.GrantTypes,
		ResponseTypes:           []string{"code"},
		ClientName:              client.Name,
		ClientURI:               client.ClientURI,
		LogoURI:                 client.LogoURI,
		Scope:                   client.Scope,
	}
	if secret != "" {
		zero := int64(0)
		resp.ClientSecretExpiresAt = &zero
	}
	oauth.WriteJSON(w, http.StatusCreated, resp)
}

// parseRegistration validates RFC 7591 client metadata. Unknown fields are
// ignored; known fields of the wrong type are invalid_client_metadata.
func (s *Server) parseRegistration(body []byte) (store.Client, *oauth.Error) {
	var c store.Client
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return c, metadataError(oauth.CodeInvalidClientMetadata, "the body must be a JSON object")
	}
	field := func(name string, dst any) *oauth.Error {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return metadataError(oauth.CodeInvalidClientMetadata, name+" has the wrong type")
		}
		return nil
	}
	var (
		redirects     []string
		method        string
		grants        []string
		responseTypes []string
		name          string
		clientURI     string
		logoURI       string
		scope         string
	)
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"redirect_uris", &redirects}, {"token_endpoint_auth_method", &method}, {"grant_types", &grants},
		{"response_types", &responseTypes}, {"client_name", &name}, {"client_uri", &clientURI},
		{"logo_uri", &logoURI}, {"scope", &scope},
	} {
		if oe := field(f.name, f.dst); oe != nil {
			return c, oe
		}
	}
	if len(redirects) == 0 {
		return c, metadataError(oauth.CodeInvalidRedirectURI, "redirect_uris is required")
	}
	if len(redirects) > maxRedirectURIs {
		return c, metadataError(oauth.CodeInvalidRedirectURI, fmt.Sprintf("at most %d redirect URIs", maxRedirectURIs))
	}
	for _, u := range redirects {
		if err := oauth.ValidateRedirectURI(u, s.cfg.PrivateSchemes); err != nil {
			return c, metadataError(oauth.CodeInvalidRedirectURI, err.Error())
		}
	}
	// Echo them in the order given, without duplicates.
	var uniq []string
	for _, u := range redirects {
		if !slices.Contains(uniq, u) {
			uniq = append(uniq, u)
		}
	}
	redirects = uniq

	switch method {
	case "":
		// RFC 7591 §2: the default is client_secret_basic.
		method = "client_secret_basic"
	case "none", "client_secret_basic", "client_secret_post":
	default:
		return c, metadataError(oauth.CodeInvalidClientMetadata, "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
	}
	// Unknown grant types are dropped rather than failing the whole
	// registration; without authorization_code the client is useless.
	if len(grants) == 0 {
		grants = []string{"authorization_code"}
	}
	if !slices.Contains(grants, "authorization_code") {
		return c, metadataError(oauth.CodeInvalidClientMetadata, "grant_types must include authorization_code")
	}
	// Refresh tokens come with every code grant, so the client gets both.
	grants = []string{"authorization_code", "refresh_token"}
	if len(responseTypes) > 0 && !slices.Contains(responseTypes, "code") {
		return c, metadataError(oauth.CodeInvalidClientMetadata, "response_types must include code")
	}
	name = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf) {
			return -1
		}
		return r
	}, name))
	if len([]rune(name)) > 100 {
		name = string([]rune(name)[:100])
	}
	for _, u := range []*string{&clientURI, &logoURI} {
		if *u == "" {
			continue
		}
		p, err := url.Parse(*u)
		if err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil || len(*u) > 2000 {
			// Informational metadata: drop what is not a plain https URL.
			*u = ""
		}
	}
	if scope != "" {
		sc, err := oauth.ParseScope(scope)
		if err != nil {
			return c, metadataError(oauth.CodeInvalidClientMetadata, "scope is malformed")
		}
		sc = slices.DeleteFunc(sc, func(x string) bool { return !slices.Contains(s.cfg.Scopes, x) })
		scope = oauth.JoinScope(sc)
	}
	return store.Client{
		Name:                    name,
		RedirectURIs:            redirects,
		TokenEndpointAuthMethod: method,
		GrantTypes:              grants,
		Scope:                   scope,
		ClientURI:               clientURI,
		LogoURI:                 logoURI,
	}, nil
}
