// Step-up with the official MCP TypeScript client 2.x
// (@modelcontextprotocol/client, pinned in package.json) against passgate
// behind a proxy: connect with the base scope, call a tool a passgate policy
// rule reserves for scope admin, and let the client answer the 403
// insufficient_scope by re-authorizing for the union of scopes through the
// registration it already has; then the call succeeds.
//
// Usage: node stepup-client-v2.mjs MCP_URL USER PASSWORD TOOL
// Prints one JSON line {"ok":true,...} and exits 0, or prints the error and
// exits 1. Driven by deploy's TestStepUpWithTypeScriptClient.
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';

import { Browser } from './browser.mjs';

const [mcpURL, username, password, tool] = process.argv.slice(2);
const REDIRECT = 'http://127.0.0.1:1/callback';

// ---- a browser that logs in and approves consent (browser.mjs) ----
const browser = new Browser({ redirect: REDIRECT, username, password });
const consents = browser.consents;

// ---- the OAuthClientProvider, in memory ----
const authorizeScopes = [];
let pendingCode;
class Provider {
    get redirectUrl() { return REDIRECT; }
    get clientMetadata() {
        // scope as the SDK would take it from scopes_supported: the base.
        return { client_name: 'passgate step-up (MCP TS client 2.x)', redirect_uris: [REDIRECT], scope: 'mcp',
            grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
    }
    clientInformation() { return this.info; }
    saveClientInformation(i) { this.info = i; }
    tokens() { return this.tok; }
    saveTokens(t) { this.tok = t; }
    saveCodeVerifier(v) { this.verifier = v; }
    codeVerifier() { return this.verifier; }
    discoveryState() { return this.discovery; }
    saveDiscoveryState(s) { this.discovery = s; browser.issuer = s.authorizationServerMetadata?.issuer ?? s.authorizationServerUrl; }
    invalidateCredentials(scope) { if (scope === 'all' || scope === 'tokens') this.tok = undefined; }
    async redirectToAuthorization(url) {
        browser.issuer ??= url.origin;
        authorizeScopes.push(url.searchParams.get('scope'));
        pendingCode = await browser.playUser(url.href);
    }
}

const provider = new Provider();
let transport;
let client;
async function connect() {
    transport = new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider });
    client = new Client({ name: 'passgate-stepup', version: '1.0.0' });
    await client.connect(transport);
}
// withAuth runs fn; when the client had to send the user to the
// authorization page, it hands the code over (finishAuth) and runs fn again.
async function withAuth(fn) {
    for (let i = 0; i < 3; i++) {
        try {
            return await fn();
        } catch (err) {
            if (!(err instanceof UnauthorizedError) && !pendingCode) throw err;
            if (!pendingCode) throw err;
            const { code, iss } = pendingCode;
            pendingCode = undefined;
            await transport.finishAuth(code, iss); // RFC 9207: the 2.x client checks iss
        }
    }
    throw new Error('authorization did not settle in 3 rounds');
}
const scopeOf = r => (r.structuredContent ?? JSON.parse(r.content?.[0]?.text ?? '{}')).scope;

try {
    await withAuth(connect);
    const before = await withAuth(() => client.callTool({ name: 'whoami', arguments: {} }));
    const stepped = await withAuth(() => client.callTool({ name: tool, arguments: {} }));
    if (stepped.isError) throw new Error(`${tool} answered an error: ${JSON.stringify(stepped.content)}`);
    const after = await withAuth(() => client.callTool({ name: 'whoami', arguments: {} }));
    console.log(JSON.stringify({ ok: true, authorizeScopes, consents, scopeBefore: scopeOf(before), scopeAfter: scopeOf(after),
        clientID: provider.info?.client_id }));
    await client.close().catch(() => {});
    process.exit(0);
} catch (err) {
    console.log(JSON.stringify({ ok: false, error: String(err?.stack ?? err), authorizeScopes, consents }));
    process.exit(1);
}
