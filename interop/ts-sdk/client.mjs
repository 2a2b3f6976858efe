// Interop check: the official MCP TypeScript SDK client completes the MCP
// authorization flow against passgate behind nginx, playing the user with a
// scripted browser (cookie jar, login form, consent form).
//
// Usage: node client.mjs MCP_URL USERNAME PASSWORD [--cimd CLIENT_METADATA_URL]
//            [--auth none|client_secret_basic|client_secret_post] [--stepup CMD]
// Prints PASS/FAIL per check; exits non-zero if any check failed (at once if
// a step cannot go on). run.sh runs every scenario; see README.md.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { Browser } from './browser.mjs';

const args = process.argv.slice(2);
const cimdIdx = args.indexOf('--cimd');
const cimdURL = cimdIdx >= 0 ? args[cimdIdx + 1] : undefined;
if (cimdIdx >= 0) args.splice(cimdIdx, 2);
const stepIdx = args.indexOf('--stepup');
const stepupCmd = stepIdx >= 0 ? args[stepIdx + 1] : undefined;
if (stepIdx >= 0) args.splice(stepIdx, 2);
const authIdx = args.indexOf('--auth');
const authMethod = authIdx >= 0 ? args[authIdx + 1] : 'none';
if (authIdx >= 0) args.splice(authIdx, 2);
const [mcpURL, username, password] = args;
if (!mcpURL || !username || password === undefined) {
    console.error('usage: node client.mjs MCP_URL USERNAME PASSWORD [--cimd CLIENT_METADATA_URL] [--auth none|client_secret_basic|client_secret_post]');
    process.exit(2);
}
const REDIRECT = 'http://127.0.0.1:1/callback';

const sdkVersion = JSON.parse(
    readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/@modelcontextprotocol/sdk/package.json'), 'utf8')
).version;
console.log(`@modelcontextprotocol/sdk ${sdkVersion}, node ${process.version}`);

let failures = 0;
function check(cond, what, detail) {
    console.log(`${cond ? 'PASS' : 'FAIL'}  ${what}${detail !== undefined ? ': ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)) : ''}`);
    if (!cond) failures++;
    return cond;
}
function fatal(what, err) {
    console.log(`FAIL  ${what}: ${err?.stack ?? err}`);
    process.exit(1);
}

// Hide secrets in the transcript.
function redact(s) {
    return String(s)
        .replace(/pg[acrs]s?_[A-Za-z0-9_-]+/g, m => m.slice(0, m.indexOf('_') + 1) + '…')
        .replace(/(code_verifier=)[^&]+/g, '$1…')
        .replace(/(password=)[^&]+/g, '$1…');
}

// fetch used by the SDK (discovery, registration, token, MCP): logs each exchange.
const transcript = [];
async function loggingFetch(input, init = {}) {
    const url = typeof input === 'string' ? input : input.url ?? String(input);
    const method = init.method ?? 'GET';
    const res = await fetch(input, init);
    let line = `  sdk ${method} ${url} -> ${res.status}`;
    const isMCP = url.startsWith(mcpURL);
    if (!isMCP && init.body) line += `\n      request body: ${redact(typeof init.body === 'string' ? init.body : init.body.toString())}`;
    if (!isMCP || res.status >= 400) {
        const body = await res.clone().text();
        if (body) line += `\n      response: ${redact(body.slice(0, 600))}`;
        const wa = res.headers.get('www-authenticate');
        if (wa) line += `\n      www-authenticate: ${wa}`;
    }
    transcript.push(line);
    console.log(line);
    return res;
}

// ---------- the scripted user: a browser with a cookie jar (browser.mjs) ----------
const browser = new Browser({ redirect: REDIRECT, username, password, check, log: console.log, redact });
const browse = (url, opts) => browser.browse(url, opts);

// ---------- the OAuthClientProvider, in memory ----------
class Provider {
    constructor() {
        this.info = undefined;
        this.tok = undefined;
        this.verifier = undefined;
        this.discovery = undefined;
        this.lastState = undefined;
        this.savedTokens = [];
        if (cimdURL) this.clientMetadataUrl = cimdURL;
    }
    get redirectUrl() { return REDIRECT; }
    get clientMetadata() {
        return {
            client_name: 'passgate interop (MCP TS SDK)',
            redirect_uris: [REDIRECT],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: authMethod,
        };
    }
    state() {
        this.lastState = 'st-' + Math.random().toString(36).slice(2);
        return this.lastState;
    }
    clientInformation() { return this.info; }
    saveClientInformation(i) { this.info = i; }
    tokens() { return this.tok; }
    saveTokens(t) { this.tok = t; this.savedTokens.push(t); }
    saveCodeVerifier(v) { this.verifier = v; }
    codeVerifier() { return this.verifier; }
    discoveryState() { return this.discovery; }
    saveDiscoveryState(s) { this.discovery = s; browser.issuer = s.authorizationServerMetadata?.issuer ?? s.authorizationServerUrl; }
    invalidateCredentials(scope) { console.log(`    provider: invalidateCredentials(${scope})`); if (scope === 'all' || scope === 'tokens') this.tok = undefined; if (scope === 'all' || scope === 'client') this.info = undefined; if (scope === 'all' || scope === 'verifier') this.verifier = undefined; }
    async redirectToAuthorization(url) {
        console.log(`  provider: redirectToAuthorization ${redact(url.href)}`);
        const q = url.searchParams;
        check(q.get('code_challenge_method') === 'S256' && !!q.get('code_challenge'), 'SDK sends PKCE S256');
        check(q.get('resource') === mcpURL, 'SDK sends resource = MCP URL', q.get('resource'));
        console.log(`    authorize params: ${[...q.keys()].join(', ')}; scope=${q.get('scope')}`);
        await browser.playUser(url.href);
    }
}

async function connect(provider) {
    const transport = new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider, fetch: loggingFetch });
    const client = new Client({ name: 'passgate-interop', version: '1.0.0' });
    await client.connect(transport);
    return { client, transport };
}

async function exercise(client, provider, label) {
    const tools = await client.listTools();
    const names = tools.tools.map(t => t.name).sort();
    check(['countdown', 'echo', 'whoami'].every(n => names.includes(n)), `${label}: tools/list`, names);
    const who = await client.callTool({ name: 'whoami', arguments: {} });
    const w = who.structuredContent ?? JSON.parse(who.content?.[0]?.text ?? '{}');
    check(w.user === username, `${label}: whoami user`, w.user);
    check(w.client_id === provider.info.client_id, `${label}: whoami client_id = registered client_id`, w.client_id);
    check(w.scope === provider.tok.scope, `${label}: whoami scope = granted scope`, w.scope);
    check(w.authorization_received === false, `${label}: whoami authorization_received false`, String(w.authorization_received));
    const progress = [];
    const cd = await client.callTool({ name: 'countdown', arguments: { steps: 3, interval_ms: 50 } }, undefined, {
        onprogress: p => progress.push(p),
    });
    check(progress.length === 3, `${label}: countdown progress notifications`, progress);
    check(!cd.isError, `${label}: countdown result`, cd.structuredContent ?? cd.content);
}

async function tokenRequest(form) {
    const headers = { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' };
    const { client_id, client_secret } = provider.info;
    if (authMethod === 'client_secret_basic') {
        delete form.client_id;
        headers.Authorization = 'Basic ' + btoa(`${encodeURIComponent(client_id)}:${encodeURIComponent(client_secret)}`);
    } else if (authMethod === 'client_secret_post') {
        form.client_secret = client_secret;
    }
    const res = await fetch(provider.discovery.authorizationServerMetadata.token_endpoint, {
        method: 'POST',
        headers,
        body: new URLSearchParams(form).toString(),
    });
    return { status: res.status, body: await res.json().catch(() => undefined), headers: res.headers };
}

const provider = new Provider();

// 1. Unauthenticated connect: 401 -> discovery -> registration (or CIMD) -> authorize -> user.
console.log('\n== step 1: connect without a token (discovery, registration, authorization) ==');
let first;
try {
    first = await connect(provider);
    fatal('first connect', 'connected without authorization');
} catch (e) {
    if (!(e instanceof UnauthorizedError)) fatal('first connect should end in UnauthorizedError after the redirect', e);
    check(true, 'first connect ends in UnauthorizedError (redirect started)');
}
check(!!provider.info?.client_id, 'client_id obtained', provider.info?.client_id);
if (authMethod !== 'none' && !cimdURL) {
    check(provider.info.client_secret?.startsWith('pgcs_'), 'client_secret issued (pgcs_)');
    check(provider.info.token_endpoint_auth_method === authMethod, 'registered token_endpoint_auth_method', provider.info.token_endpoint_auth_method);
}
if (cimdURL) check(provider.info.client_id === cimdURL, 'client_id is the metadata document URL');
check(browser.steps.includes('login') && browser.steps.includes('consent'), 'user logged in and approved', browser.steps);
check(!!browser.code && browser.code.startsWith('pgc_'), 'authorization code received');
check(browser.iss === browser.issuer, 'iss in the redirect equals the issuer', browser.iss);
check(browser.state === provider.lastState, 'state returned unchanged', browser.state);

// 2. finishAuth exchanges the code.
console.log('\n== step 2: finishAuth (code exchange) ==');
{
    // The transport from the failed connect is gone with its client; a fresh one has finishAuth too.
    const t = new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider, fetch: loggingFetch });
    try {
        await t.finishAuth(browser.code);
    } catch (e) {
        fatal('finishAuth', e);
    }
    const tk = provider.tok;
    check(tk?.access_token?.startsWith('pga_'), 'access token (pga_)');
    check(tk?.refresh_token?.startsWith('pgr_'), 'refresh token (pgr_)');
    check(tk?.token_type?.toLowerCase() === 'bearer', 'token_type', tk?.token_type);
    check(typeof tk?.expires_in === 'number' && tk.expires_in > 0, 'expires_in', tk?.expires_in);
    check(tk?.scope?.split(' ').includes('mcp'), 'scope includes mcp', tk?.scope);
}

// 3. Reconnect with the token and use the server.
console.log('\n== step 3: connect with the token, initialize, tools ==');
let c;
try {
    c = await connect(provider);
    check(true, 'initialize', c.client.getServerVersion());
    await exercise(c.client, provider, 'first token');
} catch (e) {
    fatal('authorized session', e);
}

// 4. Refresh through the SDK's own path (auth() with a stored refresh token).
console.log('\n== step 4: refresh via the SDK (auth() with the stored refresh token) ==');
const before = provider.tok;
try {
    const r = await auth(provider, { serverUrl: new URL(mcpURL), fetchFn: loggingFetch });
    check(r === 'AUTHORIZED', 'auth() refreshed without a redirect', r);
} catch (e) {
    fatal('refresh via auth()', e);
}
const after = provider.tok;
check(after.access_token !== before.access_token, 'new access token after refresh');
check(after.refresh_token && after.refresh_token !== before.refresh_token, 'refresh token rotated');
check(after.scope === before.scope, 'refreshed scope unchanged', after.scope);
try {
    await c.client.close();
    c = await connect(provider);
    await exercise(c.client, provider, 'refreshed token');
} catch (e) {
    fatal('session with refreshed token', e);
}

// 5. Replay the rotated (old) refresh token after the grace window.
console.log('\n== step 5: replay the old refresh token after the grace window (6 s) ==');
await new Promise(r => setTimeout(r, 6000));
{
    const r = await tokenRequest({ grant_type: 'refresh_token', refresh_token: before.refresh_token, client_id: provider.info.client_id });
    check(r.status === 400 && r.body?.error === 'invalid_grant', 'old refresh token rejected with invalid_grant', { status: r.status, body: r.body });
    const r2 = await tokenRequest({ grant_type: 'refresh_token', refresh_token: after.refresh_token, client_id: provider.info.client_id });
    console.log(`  current refresh token after the replay: ${r2.status} ${r2.body?.error ?? 'ok (still valid)'}`);
    // The revocation reaches the check's cache within a second (README);
    // allow 3 s on a loaded machine. Step 7 relies on it.
    let status;
    for (const deadline = Date.now() + 3000; ;) {
        const probe = await fetch(mcpURL, {
            method: 'POST',
            headers: { Authorization: `Bearer ${after.access_token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
            body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
        });
        await probe.body?.cancel();
        status = probe.status;
        if (status === 401 || Date.now() > deadline) break;
        await new Promise(r => setTimeout(r, 100));
    }
    check(status === 401, 'the revoked family\'s access token is refused through nginx', `MCP answers ${status}`);
}

// 6. The SDK's reaction to a revoked token: the transport should re-run auth().
console.log('\n== step 6: error format of a bad token through nginx ==');
{
    const res = await fetch(mcpURL, {
        method: 'POST',
        headers: { Authorization: 'Bearer pga_bogus', 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    check(res.status === 401, 'bogus token -> 401', String(res.status));
    console.log(`  www-authenticate: ${res.headers.get('www-authenticate')}`);
}

// 7. The live session's token family is now revoked: the SDK must recover by itself
// (401 -> refresh fails with invalid_grant -> new authorization). The browser still
// has its session, so no login page. A confidential client's consent is remembered;
// a public client on a loopback redirect (dynamic or metadata document) can be any
// program, so passgate asks again (RFC 8252 §8.6) unless --remember-public-consent.
console.log('\n== step 7: SDK recovery on the live session after the family was revoked ==');
{
    browser.steps = [];
    browser.code = undefined;
    try {
        await c.client.callTool({ name: 'whoami', arguments: {} });
        check(false, 'call with a revoked token should need a new authorization');
    } catch (e) {
        check(e instanceof UnauthorizedError, 'call with revoked token ends in UnauthorizedError after a new redirect', e.message);
    }
    const wantSteps = authMethod === 'none' ? ['consent'] : [];
    check(JSON.stringify(browser.steps) === JSON.stringify(wantSteps),
        `no login the second time (session); consent page ${authMethod === 'none' ? 'again (public loopback client)' : 'not again (remembered)'}`, browser.steps);
    check(!!browser.code && browser.iss === browser.issuer && browser.state === provider.lastState, 'new code with iss and state');
    try {
        await c.transport.finishAuth(browser.code);
        const who = await c.client.callTool({ name: 'whoami', arguments: {} });
        const w = who.structuredContent ?? JSON.parse(who.content?.[0]?.text ?? '{}');
        check(w.user === username, 'same MCP session continues after re-authorization', w);
    } catch (e) {
        check(false, 'finishAuth + retry on the live session', e.stack ?? String(e));
    }
}

// 8. Tampered requests with a live session and live tokens get the standard errors.
console.log('\n== step 8: tampered requests (resource, PKCE, redirect URI) ==');
{
    const live = provider.tok;
    const other = new URL('/other', mcpURL).href;
    const r = await tokenRequest({ grant_type: 'refresh_token', refresh_token: live.refresh_token, client_id: provider.info.client_id, resource: other });
    check(r.status === 400 && r.body?.error === 'invalid_target', 'refresh with a foreign resource -> invalid_target', { status: r.status, body: r.body });
    const r2 = await tokenRequest({ grant_type: 'refresh_token', refresh_token: live.refresh_token, client_id: provider.info.client_id, resource: mcpURL });
    check(r2.status === 200 && r2.body?.refresh_token, 'the refresh token survives the rejected request', String(r2.status));

    const as = provider.discovery.authorizationServerMetadata;
    const base = {
        response_type: 'code', client_id: provider.info.client_id, redirect_uri: REDIRECT, state: 'tamper-1', scope: 'mcp',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: mcpURL,
    };
    async function authorize(over, want, what) {
        const q = new URLSearchParams({ ...base, ...over });
        for (const [k, v] of Object.entries(over)) if (v === undefined) q.delete(k);
        const res = await browse(`${as.authorization_endpoint}?${q}`);
        const loc = res.headers.get('location');
        if (want === 'page') {
            check(res.status === 400 && !loc, `${what} -> error page, no redirect`, String(res.status));
            return;
        }
        const u = loc && new URL(loc, as.authorization_endpoint);
        check(!!u && u.href.startsWith(REDIRECT) && u.searchParams.get('error') === want && u.searchParams.get('state') === 'tamper-1' && u.searchParams.get('iss') === browser.issuer,
            `${what} -> redirect with error=${want}, state, iss`, loc ?? String(res.status));
    }
    await authorize({ resource: other }, 'invalid_target', 'authorize with a foreign resource');
    await authorize({ code_challenge_method: 'plain' }, 'invalid_request', 'authorize with PKCE plain');
    await authorize({ code_challenge: undefined, code_challenge_method: undefined }, 'invalid_request', 'authorize without PKCE');
    await authorize({ scope: 'admin' }, 'invalid_scope', 'authorize with an unknown scope');
    await authorize({ redirect_uri: 'http://127.0.0.1:1/other' }, 'page', 'authorize with an unregistered redirect URI');
    await authorize({ client_id: 'no-such-client' }, 'page', 'authorize with an unknown client');
}

// 9. Optional: the operator requires a new scope (stepupCmd restarts passgate
// with --require-scopes); the SDK gets 403 insufficient_scope on its live session.
if (stepupCmd) {
    console.log(`\n== step 9: step-up after: ${stepupCmd} ==`);
    const { execSync } = await import('node:child_process');
    execSync(stepupCmd, { stdio: 'inherit' });
    browser.steps = [];
    browser.code = undefined;
    try {
        const who = await c.client.callTool({ name: 'whoami', arguments: {} });
        console.log(`  whoami after step-up: ${JSON.stringify(who.structuredContent)}`);
    } catch (e) {
        console.log(`  whoami after step-up threw ${e.constructor.name}: ${e.message}; browser steps ${JSON.stringify(browser.steps)}, code ${browser.code ? 'received' : 'none'}`);
        if (e instanceof UnauthorizedError && browser.code) {
            await c.transport.finishAuth(browser.code);
            const who = await c.client.callTool({ name: 'whoami', arguments: {} });
            console.log(`  whoami after finishAuth: ${JSON.stringify(who.structuredContent)}`);
        }
    }
}

await c.client.close().catch(() => {});
console.log(`\n${failures === 0 ? 'ALL PASSED' : failures + ' FAILED'}`);
process.exit(failures === 0 ? 0 : 1);
