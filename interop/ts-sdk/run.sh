#!/usr/bin/env bash
# Runs the MCP TypeScript SDK interop check: builds passgate and the example
# MCP server from this checkout, renders deploy/nginx.conf (plain HTTP on
# loopback), and drives the SDK client through every scenario in README.md.
# Needs go, node >= 20, npm, nginx, openssl and envsubst. Everything runs in
# a temporary directory on 127.0.0.1 and is stopped on exit (KEEP=1 keeps the
# directory with the logs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${PASSGATE_ROOT:-$(cd "$here/../.." && pwd)}
work=$(mktemp -d /tmp/passgate-ts-sdk.XXXXXX)
passgate_pid= nginx_pid= mcp_pid= cimd_pid=

stop() { [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; }
cleanup() {
	stop "$passgate_pid"; stop "$mcp_pid"; stop "$cimd_pid"; stop "$nginx_pid"
	if [ -n "${KEEP:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

freeport() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
wait_http() { # URL
	for _ in $(seq 1 50); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "timed out waiting for $1" >&2; return 1
}

[ -d "$here/node_modules" ] || (cd "$here" && npm ci --no-audit --no-fund)
echo "building passgate and the example MCP server"
(cd "$root" && go build -o "$work/passgate" ./cmd/passgate && go build -o "$work/mcp-server" ./examples/mcp-server)

ngx_port=$(freeport) pg_port=$(freeport) mcp_port=$(freeport) cimd_port=$(freeport)
base="http://127.0.0.1:$ngx_port"

# nginx with the shipped template, rendered as its header says.
mkdir -p "$work/nginx/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
export NGINX_SERVER_NAME=127.0.0.1 NGINX_LISTEN="127.0.0.1:$ngx_port" \
	NGINX_TLS_CERT="$work/cert.pem" NGINX_TLS_KEY="$work/key.pem" \
	NGINX_PASSGATE_ADDR="127.0.0.1:$pg_port" NGINX_MCP_ADDR="127.0.0.1:$mcp_port"
envsubst "$(env | sed -n 's/^\(NGINX_[A-Z_]*\)=.*/${\1}/p')" <"$root/deploy/nginx.conf" >"$work/nginx/passgate.conf"
{
	[ "$(id -u)" = 0 ] && echo 'user root;'
	cat <<EOF
worker_processes 1;
error_log $work/nginx/error.log info;
events { worker_connections 512; }
http {
    default_type application/octet-stream;
    access_log $work/nginx/access.log;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    include $work/nginx/passgate.conf;
}
EOF
} >"$work/nginx/nginx.conf"
nginx -t -q -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" \
	-g "daemon off; pid $work/nginx/nginx.pid;" >"$work/nginx/stdout.log" 2>&1 &
nginx_pid=$!

"$work/mcp-server" --listen "127.0.0.1:$mcp_port" >"$work/mcp-server.log" 2>&1 &
mcp_pid=$!

# The Client ID Metadata Document, over https: the SDK accepts only https
# clientMetadataUrl values. passgate trusts the self-signed certificate
# through SSL_CERT_FILE and may fetch from loopback with
# --cimd-allow-loopback-http.
node "$here/cimd-server.mjs" "$cimd_port" "$work/cert.pem" "$work/key.pem" >"$work/cimd.log" 2>&1 &
cimd_pid=$!

password="interop-$(openssl rand -hex 8)"
echo "$password" | "$work/passgate" user add alice --password-stdin --data-dir "$work/data" --create >/dev/null

# A fresh passgate per scenario: the default --token-limit (10 per 15 min per
# client IP) is kept, and each scenario stays under it.
start_passgate() {
	stop "$passgate_pid"
	SSL_CERT_FILE="$work/cert.pem" "$work/passgate" serve --data-dir "$work/data" \
		--issuer "$base" --resource "$base/mcp" --http-listen "127.0.0.1:$pg_port" \
		--grpc-listen '' --metrics-listen '' "$@" >>"$work/passgate.log" 2>&1 &
	passgate_pid=$!
	wait_http "$base/healthz"
}
wait_http "http://127.0.0.1:$mcp_port/" 2>/dev/null || true

status=0
run() { # NAME CMD...
	local name=$1; shift
	echo
	echo "######## $name"
	if "$@" >"$work/$name.log" 2>&1; then
		echo "ok: $(grep -c '^PASS' "$work/$name.log") checks passed"
	else
		status=1
		grep -E '^FAIL' "$work/$name.log" || tail -20 "$work/$name.log"
		echo "FAILED (full transcript: KEEP=1 $0, then $work/$name.log)"
	fi
	[ -n "${VERBOSE:-}" ] && cat "$work/$name.log"
	return 0
}

start_passgate
run public-client node "$here/client.mjs" "$base/mcp" alice "$password"
start_passgate
run client-secret-basic node "$here/client.mjs" "$base/mcp" alice "$password" --auth client_secret_basic
start_passgate
run client-secret-post node "$here/client.mjs" "$base/mcp" alice "$password" --auth client_secret_post
start_passgate --cimd-allow-loopback-http
run cimd node "$here/client.mjs" "$base/mcp" alice "$password" --cimd "https://127.0.0.1:$cimd_port/client.json"
start_passgate
run errors node "$here/errors.mjs" "$base/mcp" --exhaust-token-limit

echo
[ "$status" = 0 ] && echo "ALL SCENARIOS PASSED" || echo "SOME SCENARIOS FAILED"
exit "$status"
