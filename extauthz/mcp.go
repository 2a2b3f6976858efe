package extauthz

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/passgate/passgate/internal/policy"
)

// mcpCall returns the MCP method and name of r, as far as the check can
// tell, for a resource whose policy has rules. It reads the Streamable
// HTTP headers Mcp-Method and Mcp-Name (protocol 2026-07-28) and, when the
// proxy sent the body (Envoy's with_request_body), the JSON-RPC request
// itself: the body wins, and a header that disagrees with it is refused
// (ReasonHeaderMismatch), as the specification requires of servers, so
// that a client cannot show the proxy one tool and call another. A body
// that is not one JSON-RPC request object (a batch, truncated, not JSON)
// is refused (ReasonUnreadableBody): padding a request past Envoy's body
// limit must not hide its method. reason is ReasonToken when usable.
func mcpCall(r Request) (method, name string, fromBody bool, reason Reason) {
	method, name = r.Headers["mcp-method"], r.Headers["mcp-name"]
	// A repeated header (joined with "," by the proxy, or marked by the
	// HTTP front end) has no one value to judge. MCP method names never
	// hold a comma.
	if strings.ContainsAny(method, ",\n") || strings.Contains(name, "\n") {
		return "", "", false, ReasonHeaderMismatch
	}
	// SEP-2243 lets a client wrap a header value that is not plain ASCII
	// as =?base64?…?=. A rule must see the name the server will see, so
	// the wrapper is undone here (and a broken one refused) rather than
	// matched as text: "=?base64?c2hlbGw=?=" is the tool shell.
	if n, ok := strings.CutPrefix(name, "=?base64?"); ok {
		n, ok = strings.CutSuffix(n, "?=")
		b, err := base64.StdEncoding.DecodeString(n)
		if !ok || err != nil {
			return "", "", false, ReasonHeaderMismatch
		}
		name = string(b)
	}
	if r.Body == "" {
		return method, name, false, ReasonToken
	}
	bodyMethod, hasMethod, params, ok := readJSONRPC(r.Body)
	if !ok {
		return "", "", false, ReasonUnreadableBody
	}
	if !hasMethod {
		// A JSON-RPC response (the client answering a server request):
		// no method to judge, and a header claiming one is a lie.
		if method != "" || name != "" {
			return "", "", false, ReasonHeaderMismatch
		}
		return "", "", true, ReasonToken
	}
	bodyName := params.name
	if bodyMethod == "resources/read" {
		bodyName = params.uri
	}
	if !policy.NameBearing(bodyMethod) {
		bodyName = ""
	}
	if method != "" && method != bodyMethod || name != "" && name != bodyName {
		return "", "", false, ReasonHeaderMismatch
	}
	return bodyMethod, bodyName, true, ReasonToken
}

type rpcParams struct{ name, uri string }

// readJSONRPC reads the method and params.name / params.uri of one
// JSON-RPC request object. Unlike encoding/json's Unmarshal it matches keys
// exactly and refuses a repeated key, so that it cannot read a different
// method than the MCP server does ({"method":…,"METHOD":…}, or two
// "method" keys, which parsers resolve differently).
func readJSONRPC(body string) (method string, hasMethod bool, p rpcParams, ok bool) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false, p, false
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", false, p, false
		}
		key := k.(string)
		if seen[key] {
			return "", false, p, false
		}
		seen[key] = true
		switch key {
		case "method":
			t, err := dec.Token()
			s, isStr := t.(string)
			if err != nil || !isStr {
				return "", false, p, false
			}
			method, hasMethod = s, true
		case "params":
			if p, ok = readParams(dec); !ok {
				return "", false, p, false
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", false, p, false
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return "", false, p, false
	}
	if _, err := dec.Token(); err == nil { // anything after the object
		return "", false, p, false
	}
	return method, hasMethod, p, true
}

// readParams reads name and uri from a params object (anything else, an
// array for instance, carries neither).
func readParams(dec *json.Decoder) (rpcParams, bool) {
	var p rpcParams
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return p, false
	}
	inner := json.NewDecoder(strings.NewReader(string(raw)))
	if t, err := inner.Token(); err != nil || t != json.Delim('{') {
		return p, true
	}
	seen := map[string]bool{}
	for inner.More() {
		k, err := inner.Token()
		if err != nil {
			return p, false
		}
		key := k.(string)
		if seen[key] {
			return p, false
		}
		seen[key] = true
		if key == "name" || key == "uri" {
			t, err := inner.Token()
			s, isStr := t.(string)
			if err != nil || !isStr {
				return p, false
			}
			if key == "name" {
				p.name = s
			} else {
				p.uri = s
			}
			continue
		}
		var skip json.RawMessage
		if err := inner.Decode(&skip); err != nil {
			return p, false
		}
	}
	return p, true
}
