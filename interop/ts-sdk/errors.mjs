// How the MCP TypeScript SDK's own OAuth helpers read passgate's error
// answers: each call must throw the SDK error class of the standard OAuth
// error code (a ServerError means the SDK could not parse the answer).
//
// Usage: node errors.mjs MCP_URL
// Run against a freshly started passgate: it makes about 6 token requests
// (passgate's default --token-limit is 10 per 15 minutes per client IP), and
// with --exhaust-token-limit it then keeps going until it gets a 429.

import {
    discoverOAuthServerInfo,
    registerClient,
    exchangeAuthorization,
    refreshAuthorization,
} from '@modelcontextprotocol/sdk/client/auth.js';

const mcpURL = process.argv[2];
const exhaust = process.argv.includes('--exhaust-token-limit');
if (!mcpURL) {
    console.error('usage: node errors.mjs MCP_URL [--exhaust-token-limit]');
    process.exit(2);
}
let failures = 0;
function check(cond, what, detail) {
    console.log(`${cond ? 'PASS' : 'FAIL'}  ${what}${detail !== undefined ? ': ' + detail : ''}`);
    if (!cond) failures++;
}
async function expectError(what, fn, wantClass) {
    try {
        const r = await fn();
        check(false, what, `no error: ${JSON.stringify(r).slice(0, 200)}`);
        return r;
    } catch (e) {
        check(e.constructor.name === wantClass, what, `${e.constructor.name} (${e.errorCode ?? '-'}): ${e.message}`);
    }
}

const info = await discoverOAuthServerInfo(new URL(mcpURL));
const as = info.authorizationServerUrl;
const metadata = info.authorizationServerMetadata;
const resource = new URL(info.resourceMetadata.resource);
console.log(`authorization server ${as}, resource ${resource}`);

const good = {
    client_name: 'errors probe',
    redirect_uris: ['http://127.0.0.1:1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
};

// Registration. The SDK has no class for RFC 7591's invalid_redirect_uri: it
// reads it as a ServerError carrying passgate's description; the raw code is
// checked separately.
for (const uri of ['http://evil.example/cb', 'https://app.example/cb#x', 'https://user@app.example/cb']) {
    const res = await fetch(metadata.registration_endpoint, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ ...good, redirect_uris: [uri] }),
    });
    const body = await res.json();
    check(res.status === 400 && body.error === 'invalid_redirect_uri', `register raw: ${uri} -> 400 invalid_redirect_uri`, JSON.stringify(body));
}
await expectError('register: non-loopback http redirect URI', () =>
    registerClient(as, { metadata, clientMetadata: { ...good, redirect_uris: ['http://evil.example/cb'] } }), 'ServerError');
await expectError('register: redirect URI with a fragment', () =>
    registerClient(as, { metadata, clientMetadata: { ...good, redirect_uris: ['https://app.example/cb#x'] } }), 'ServerError');
await expectError('register: unsupported token_endpoint_auth_method', () =>
    registerClient(as, { metadata, clientMetadata: { ...good, token_endpoint_auth_method: 'private_key_jwt' } }), 'InvalidClientMetadataError');
const extra = await registerClient(as, {
    metadata,
    clientMetadata: {
        ...good,
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        software_id: 'x', logo_uri: 'https://app.example/logo.png', contacts: ['a@app.example'],
        redirect_uris: ['http://127.0.0.1:1/callback', 'http://localhost:9/cb', 'https://app.example/cb'],
    },
});
check(!!extra.client_id, 'register: unknown grant type and extra fields do not fail', JSON.stringify(extra));

const pub = await registerClient(as, { metadata, clientMetadata: good });
check(!!pub.client_id && pub.client_secret === undefined, 'register: public client has no secret', pub.client_id);

// Token endpoint.
await expectError('token: bogus code', () =>
    exchangeAuthorization(as, { metadata, clientInformation: pub, authorizationCode: 'pgc_bogus', codeVerifier: 'a'.repeat(43), redirectUri: good.redirect_uris[0], resource }), 'InvalidGrantError');
await expectError('token: bogus refresh token', () =>
    refreshAuthorization(as, { metadata, clientInformation: pub, refreshToken: 'pgr_bogus', resource }), 'InvalidGrantError');
await expectError('token: unknown client_id', () =>
    refreshAuthorization(as, { metadata, clientInformation: { client_id: 'no-such-client' }, refreshToken: 'pgr_bogus', resource }), 'InvalidClientError');
const conf = await registerClient(as, { metadata, clientMetadata: { ...good, token_endpoint_auth_method: 'client_secret_basic' } });
await expectError('token: wrong client secret (Basic)', () =>
    refreshAuthorization(as, { metadata, clientInformation: { ...conf, client_secret: 'pgcs_wrong' }, refreshToken: 'pgr_bogus', resource }), 'InvalidClientError');
{
    // Raw: the 401 for Basic must carry WWW-Authenticate.
    const res = await fetch(metadata.token_endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: 'Basic ' + btoa(`${conf.client_id}:pgcs_wrong`) },
        body: 'grant_type=refresh_token&refresh_token=pgr_bogus',
    });
    check(res.status === 401 && /^Basic/i.test(res.headers.get('www-authenticate') ?? ''), 'token: Basic failure is 401 with WWW-Authenticate', `${res.status} ${res.headers.get('www-authenticate')}`);
}

if (exhaust) {
    for (let i = 0; i < 20; i++) {
        const res = await fetch(metadata.token_endpoint, {
            method: 'POST',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
            body: `grant_type=refresh_token&refresh_token=pgr_bogus&client_id=${pub.client_id}`,
        });
        if (res.status === 429) {
            const body = await res.text();
            console.log(`  429 after ${i + 1} more requests: Retry-After=${res.headers.get('retry-after')} body=${body}`);
            await expectError('token: rate limited, as the SDK sees it', () =>
                refreshAuthorization(as, { metadata, clientInformation: pub, refreshToken: 'pgr_bogus', resource }), 'TemporarilyUnavailableError');
            break;
        }
    }
}

console.log(failures === 0 ? 'ALL PASSED' : `${failures} FAILED`);
process.exit(failures === 0 ? 0 : 1);
