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

const [mcpURL, username, password, tool] = process.argv.slice(2);
const REDIRECT = 'http://127.0.0.1:1/callback';

// ---- a browser that logs in and approves consent ----
const jar = new Map();
let issuer;
function cookies(res) {
    for (const c of res.headers.getSetCookie?.() ?? []) {
        const [kv] = c.split(';');
        const i = kv.indexOf('=');
        jar.set(kv.slice(0, i).trim(), kv.slice(i + 1).trim());
    }
}
async function browse(url, form) {
    const headers = { Accept: 'text/html' };
    if (jar.size) headers.Cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body;
    if (form) {
        headers['Content-Type'] = 'application/x-www-form-urlencoded';
        headers.Origin = new URL(issuer).origin;
        body = new URLSearchParams(form).toString();
    }
    const res = await fetch(url, { method: form ? 'POST' : 'GET', headers, body, redirect: 'manual' });
    cookies(res);
    return res;
}
const unescape = s => s.replace(/&#34;|&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
function parseForm(html, pageURL) {
    const m = html.match(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/);
    if (!m) return undefined;
    const fields = {};
    for (const inp of m[2].matchAll(/<input\b[^>]*>/g)) {
        const name = inp[0].match(/name="([^"]*)"/);
        const value = inp[0].match(/value="([^"]*)"/);
        if (name) fields[name[1]] = value ? unescape(value[1]) : '';
    }
    return { action: new URL(unescape(m[1]), pageURL).href, fields };
}
const consents = [];
async function playUser(authURL) {
    let url = authURL;
    let res = await browse(url);
    for (let i = 0; i < 12; i++) {
        if ([302, 303].includes(res.status)) {
            const loc = new URL(res.headers.get('location'), url).href;
            if (loc.startsWith(REDIRECT)) {
                const q = new URL(loc).searchParams;
                if (q.get('error')) throw new Error(`authorization error: ${q.get('error')}: ${q.get('error_description')}`);
                return { code: q.get('code'), iss: q.get('iss') };
            }
            url = loc;
            res = await browse(url);
            continue;
        }
        const html = await res.text();
        if (res.status !== 200) throw new Error(`page ${url} answered ${res.status}: ${html.slice(0, 300)}`);
        const form = parseForm(html, url);
        if (!form) throw new Error(`no form on ${url}`);
        if ('password' in form.fields || html.includes('name="password"')) {
            res = await browse(form.action, { ...form.fields, username, password });
        } else {
            consents.push([...html.matchAll(/<code class="scope">([^<]*)<\/code>/g)].map(m => m[1]));
            res = await browse(form.action, { ...form.fields, decision: 'approve' });
        }
        url = form.action;
    }
    throw new Error('too many steps');
}

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
    saveDiscoveryState(s) { this.discovery = s; issuer = s.authorizationServerMetadata?.issuer ?? s.authorizationServerUrl; }
    invalidateCredentials(scope) { if (scope === 'all' || scope === 'tokens') this.tok = undefined; }
    async redirectToAuthorization(url) {
        issuer ??= url.origin;
        authorizeScopes.push(url.searchParams.get('scope'));
        pendingCode = await playUser(url.href);
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
