// Serves a Client ID Metadata Document over HTTPS on loopback.
// Usage: node cimd-server.mjs PORT CERT KEY
import https from 'node:https';
import { readFileSync } from 'node:fs';
const [port, cert, key] = process.argv.slice(2);
const id = `https://127.0.0.1:${port}/client.json`;
const doc = {
    client_id: id,
    client_name: 'passgate interop CIMD (MCP TS SDK)',
    client_uri: `https://127.0.0.1:${port}/`,
    redirect_uris: ['http://127.0.0.1:1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
};
https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    console.log(`cimd-server: ${req.method} ${req.url} ua=${req.headers['user-agent']} accept=${req.headers.accept}`);
    if (req.url !== '/client.json') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'max-age=300' });
    res.end(JSON.stringify(doc));
}).listen(Number(port), '127.0.0.1', () => console.log(`cimd-server: ${id}`));
