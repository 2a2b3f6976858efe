package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/testing/validtest"
)

// parseConfig builds a Config from args and env as `passgate serve` does.
func parseConfig(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	return loadServeConfig(args, stdio{out: io.Discard, err: io.Discard, getenv: func(k string) string { return env[k] }})
}

func TestConfigDefaultsAreValid(t *testing.T) {
	c, err := parseConfig(t, nil, nil)
	if err != nil {
		t.Fatalf("default configuration is invalid: %v", err)
	}
	if c.Issuer != "http://localhost:8080" || c.HTTPListen != ":8080" || c.GRPCListen != ":9191" || c.MetricsListen != "127.0.0.1:9464" {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if c.AccessTokenTTL != time.Hour || c.RefreshTokenTTL != 720*time.Hour || c.SessionTTL != 720*time.Hour {
		t.Errorf("unexpected lifetimes: access %v refresh %v session %v", c.AccessTokenTTL, c.RefreshTokenTTL, c.SessionTTL)
	}
	if len(c.TrustedProxies) != 2 {
		t.Errorf("default trusted proxies = %v, want loopback v4 and v6", c.TrustedProxies)
	}
}

func TestConfigEnvironment(t *testing.T) {
	env := map[string]string{
		"SERVER_URL":           "https://auth.example.com",
		"PASSGATE_RESOURCES":   "https://mcp.example.com/mcp, https://mcp.example.com/other",
		"PASSGATE_HTTP_LISTEN": "127.0.0.1:18080",
		"DATABASE_URL":         "postgres://u@db/passgate",
		"OAUTH_CLIENT_ID":      "mcp-a8ff0614d0153f07",
		"OAUTH_CLIENT_SECRET":  "cqlJlRhOpGE3n5ZOeW_PYERAY75-5lDqNoDMr3v1D7Y",
		"API_KEY":              "a-long-enough-api-key",
		"PASSGATE_LOGIN_LIMIT": "3/10m",
	}
	c, err := parseConfig(t, []string{"--http-listen", "127.0.0.1:28080"}, env)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	got := []string{c.Issuer, strings.Join(c.Resources, "|"), c.HTTPListen, c.DatabaseURL, c.SeedClientID, c.SeedAPIKey, c.LoginLimit.String()}
	want := []string{"https://auth.example.com", "https://mcp.example.com/mcp|https://mcp.example.com/other", "127.0.0.1:28080", "postgres://u@db/passgate", "mcp-a8ff0614d0153f07", "a-long-enough-api-key", "3/10m0s"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("config from env (-got +want):\n%s", diff)
	}
	// PASSGATE_ISSUER wins over the seed's SERVER_URL.
	env["PASSGATE_ISSUER"] = "https://new.example.com"
	if c, err = parseConfig(t, nil, env); err != nil || c.Issuer != "https://new.example.com" {
		t.Errorf("PASSGATE_ISSUER over SERVER_URL: issuer %q, err %v", c.Issuer, err)
	}
}

func TestScopeRules(t *testing.T) {
	c, err := parseConfig(t, []string{"--scopes", "mcp admin"}, map[string]string{"PASSGATE_REQUIRE_SCOPES": "/mcp/admin=admin mcp; https://localhost:8080/mcp=mcp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []extauthz.ScopeRule{{Match: "/mcp/admin", Scopes: []string{"admin", "mcp"}}, {Match: "https://localhost:8080/mcp", Scopes: []string{"mcp"}}}
	if diff := cmp.Diff(c.RequireScopes, want); diff != "" {
		t.Errorf("rules (-got +want):\n%s", diff)
	}
}

func TestConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // every substring must appear in the one error
	}{
		{"http issuer off loopback", []string{"--issuer", "http://auth.example.com"}, nil, []string{"--issuer", "https"}},
		{"issuer with query", []string{"--issuer", "https://auth.example.com?x=1"}, nil, []string{"--issuer"}},
		{"relative issuer", []string{"--issuer", "auth.example.com"}, nil, []string{"absolute"}},
		{"http resource off loopback", []string{"--resource", "http://mcp.example.com/mcp"}, nil, []string{"--resource"}},
		{"bad duration env", nil, map[string]string{"PASSGATE_ACCESS_TOKEN_TTL": "forever"}, []string{"$PASSGATE_ACCESS_TOKEN_TTL", "forever"}},
		{"negative ttl", []string{"--access-token-ttl", "-1h"}, nil, []string{"--access-token-ttl"}},
		{"bad registration", []string{"--registration", "sometimes"}, nil, []string{"--registration"}},
		{"token registration without file", []string{"--registration", "token"}, nil, []string{"--registration-token-file"}},
		{"client id without secret", nil, map[string]string{"OAUTH_CLIENT_ID": "x"}, []string{"OAUTH_CLIENT_SECRET"}},
		{"plaintext password hash", nil, map[string]string{"OAUTH_PASSWORD_HASH": "hunter2"}, []string{"OAUTH_PASSWORD_HASH"}},
		{"short api key", nil, map[string]string{"API_KEY": "short"}, []string{"API_KEY"}},
		{"one-character client secret", nil, map[string]string{"OAUTH_CLIENT_ID": "x", "OAUTH_CLIENT_SECRET": "s"}, []string{"OAUTH_CLIENT_SECRET", "16"}},
		{"javascript seed redirect", nil, map[string]string{"OAUTH_CLIENT_ID": "x", "OAUTH_CLIENT_SECRET": "0123456789abcdef", "PASSGATE_CLIENT_REDIRECT_URIS": "javascript:alert(1)"}, []string{"PASSGATE_CLIENT_REDIRECT_URIS"}},
		{"http seed redirect off loopback", nil, map[string]string{"OAUTH_CLIENT_ID": "x", "OAUTH_CLIENT_SECRET": "0123456789abcdef", "PASSGATE_CLIENT_REDIRECT_URIS": "http://evil.example/cb"}, []string{"PASSGATE_CLIENT_REDIRECT_URIS", "loopback"}},
		{"seed client id with control characters", nil, map[string]string{"OAUTH_CLIENT_ID": "x\n", "OAUTH_CLIENT_SECRET": "0123456789abcdef"}, []string{"OAUTH_CLIENT_ID"}},
		{"min password length below 8", []string{"--min-password-length", "4"}, nil, []string{"--min-password-length"}},
		{"bad listen", []string{"--http-listen", "8080"}, nil, []string{"--http-listen"}},
		{"same listeners", []string{"--grpc-listen", ":8080"}, nil, []string{"must differ"}},
		{"not postgres", []string{"--database", "mysql://x"}, nil, []string{"--database"}},
		{"bad trusted proxies", nil, map[string]string{"PASSGATE_TRUSTED_PROXIES": "10.0.0.0/99"}, []string{"PASSGATE_TRUSTED_PROXIES"}},
		{"bad limit", nil, map[string]string{"PASSGATE_LOGIN_LIMIT": "lots"}, []string{"PASSGATE_LOGIN_LIMIT"}},
		{"bad private schemes", nil, map[string]string{"PASSGATE_ALLOW_PRIVATE_SCHEMES": "sometimes"}, []string{"PASSGATE_ALLOW_PRIVATE_SCHEMES", "off, default or any"}},
		{"bad register success limit", nil, map[string]string{"PASSGATE_REGISTER_SUCCESS_LIMIT": "lots"}, []string{"PASSGATE_REGISTER_SUCCESS_LIMIT"}},
		{"seed redirect private scheme when off", []string{"--allow-private-schemes=off"}, map[string]string{"OAUTH_CLIENT_ID": "x", "OAUTH_CLIENT_SECRET": "0123456789abcdef", "PASSGATE_CLIENT_REDIRECT_URIS": "cursor://anysphere.cursor-mcp/oauth/callback"}, []string{"PASSGATE_CLIENT_REDIRECT_URIS"}},
		{"seed redirect unknown private scheme", nil, map[string]string{"OAUTH_CLIENT_ID": "x", "OAUTH_CLIENT_SECRET": "0123456789abcdef", "PASSGATE_CLIENT_REDIRECT_URIS": "myapp://cb"}, []string{"PASSGATE_CLIENT_REDIRECT_URIS"}},
		{"long grace", []string{"--refresh-grace", "1h"}, nil, []string{"--refresh-grace"}},
		{"bad header", []string{"--user-header", "X User"}, nil, []string{"--user-header"}},
		{"bad scope", []string{"--scopes", `a"b`}, nil, []string{"--scopes"}},
		{"bad scope rule", nil, map[string]string{"PASSGATE_REQUIRE_SCOPES": "mcp"}, []string{"PASSGATE_REQUIRE_SCOPES"}},
		{"rule with unknown scope", []string{"--require-scopes", "/mcp/admin=admin"}, nil, []string{"not in --scopes"}},
		{
			"every problem at once",
			[]string{"--issuer", "http://auth.example.com", "--registration", "x", "--log-level", "loud"},
			map[string]string{"PASSGATE_SESSION_TTL": "soon"},
			[]string{"--issuer", "--registration", "--log-level", "$PASSGATE_SESSION_TTL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(t, tt.args, tt.env)
			validtest.Mentions(t, err, tt.want...)
		})
	}
}

// TestRememberPublicConsentSetting: off by default (public clients on
// loopback or private-scheme redirects are asked every time); the flag and
// its environment variable turn it on.
func TestRememberPublicConsentSetting(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default", nil, nil, false},
		{"flag", []string{"--remember-public-consent"}, nil, true},
		{"env", nil, map[string]string{"PASSGATE_REMEMBER_PUBLIC_CONSENT": "true"}, true},
		{"flag over env", []string{"--remember-public-consent=false"}, map[string]string{"PASSGATE_REMEMBER_PUBLIC_CONSENT": "true"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.RememberPublicConsent, tt.want); diff != "" {
				t.Errorf("RememberPublicConsent (-got +want):\n%s", diff)
			}
		})
	}
}

// TestValidateReportsErrorsInStableOrder: Validate used to range over maps,
// so the same bad configuration printed its errors in a different order on
// each start.
func TestValidateReportsErrorsInStableOrder(t *testing.T) {
	bad := Config{
		Issuer:        "ftp://auth.example.com",
		HTTPListen:    "no-port",
		GRPCListen:    "also-no-port",
		MetricsListen: "nor-this",
		RefreshGrace:  -time.Second, StaleClientAge: -time.Second, AuditRetention: -time.Second,
		LockoutWindow: -time.Second, LockoutDuration: -time.Second, ShutdownDelay: -time.Second,
		UserHeader: "X User", ClientIDHeader: "X_Client", ScopeHeader: "",
		Scopes: []string{"ok", "not ok", `"q"`},
	}
	first := bad.Validate()
	if first == nil {
		t.Fatal("Validate accepted a bad configuration")
	}
	for i := range 20 {
		if diff := cmp.Diff(bad.Validate().Error(), first.Error()); diff != "" {
			t.Fatalf("run %d reported errors in another order (-got +want):\n%s", i, diff)
		}
	}
	// Flags come out in the order they are checked.
	want := []string{"--issuer", "--scopes", "--http-listen", "--grpc-listen", "--metrics-listen", "--access-token-ttl", "--refresh-grace", "--user-header", "--client-id-header", "--scope-header"}
	msg, last := first.Error(), -1
	for _, w := range want {
		i := strings.Index(msg, w)
		if i < 0 || i < last {
			t.Errorf("%s: at %d, after the previous at %d, in:\n%s", w, i, last, msg)
		}
		last = i
	}
}

// TestPrivateSchemesSetting: --allow-private-schemes is off, default or
// any, default by default; the boolean values it had still parse (true
// means any, false off) from the flag and the environment. The bare flag
// is refused: as a boolean flag, "--allow-private-schemes off" meant any.
// The pre-registered client's redirect URIs default to Claude's callbacks.
func TestPrivateSchemesSetting(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want oauth.PrivateSchemes
	}{
		{nil, nil, oauth.PrivateSchemesDefault},
		{[]string{"--allow-private-schemes=off"}, nil, oauth.PrivateSchemesOff},
		{[]string{"--allow-private-schemes=any"}, nil, oauth.PrivateSchemesAny},
		{[]string{"--allow-private-schemes", "off"}, nil, oauth.PrivateSchemesOff},
		{[]string{"--allow-private-schemes", "true"}, nil, oauth.PrivateSchemesAny},
		{[]string{"--allow-private-schemes=false"}, nil, oauth.PrivateSchemesOff},
		{nil, map[string]string{"PASSGATE_ALLOW_PRIVATE_SCHEMES": "true"}, oauth.PrivateSchemesAny},
		{nil, map[string]string{"PASSGATE_ALLOW_PRIVATE_SCHEMES": "false"}, oauth.PrivateSchemesOff},
		{nil, map[string]string{"PASSGATE_ALLOW_PRIVATE_SCHEMES": "default"}, oauth.PrivateSchemesDefault},
	} {
		c, err := parseConfig(t, tt.args, tt.env)
		if err != nil || c.PrivateSchemes != tt.want {
			t.Errorf("%v %v: PrivateSchemes %q, err %v; want %q", tt.args, tt.env, c.PrivateSchemes, err, tt.want)
		}
	}
	if _, err := parseConfig(t, []string{"--allow-private-schemes"}, nil); err == nil {
		t.Error("the bare --allow-private-schemes was accepted")
	}
	c, err := parseConfig(t, nil, map[string]string{"OAUTH_CLIENT_ID": "claude", "OAUTH_CLIENT_SECRET": "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"}
	if diff := cmp.Diff(c.SeedRedirectURIs, want); diff != "" {
		t.Errorf("default seed redirect URIs (-got +want):\n%s", diff)
	}
}
