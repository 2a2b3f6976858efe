#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds passgate and its load harness
# (cmd/passgate-bench), installs nginx when missing, and runs the harness on
# loopback, which rewrites the generated section of docs/benchmarks.md.
# About 20 minutes (the 10M growth point and the 1M cleanup are 8 of them); pass
# -quick for a run of about 4 minutes (shorter phases, one round, memory at
# 100k tokens, growth to 100k tokens). Other flags go to passgate-bench
# (see `passgate-bench -h`), e.g. -perf /tmp/perf to record passgate with
# Linux perf. PostgreSQL comes from BENCH_POSTGRES_URL or 127.0.0.1:5432
# (a database is created and dropped); without it only SQLite is measured.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing nginx"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  else
    echo "== nginx missing and not root: the nginx scenario will be skipped"
  fi
fi

# wrk generates the HTTP load (passgate-bench -generator auto picks it up):
# its C event loop takes less of the two shared cores than a Go client, so
# the servers, not the generator, set the numbers (issue 21).
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing wrk"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "== wrk missing and not root: HTTP load comes from passgate-bench's own Go client"
  fi
fi

pg_url="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
backends="sqlite,postgres"
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -d "$pg_url"; then
  echo "== no PostgreSQL answering at ${pg_url%%\?*}: measuring SQLite only"
  backends="sqlite"
fi

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
echo "== go build"
go build -o "$bin/passgate" ./cmd/passgate
go build -o "$bin/passgate-bench" ./cmd/passgate-bench

echo "== passgate-bench"
"$bin/passgate-bench" -passgate "$bin/passgate" -postgres "$pg_url" -backends "$backends" \
  -out docs/benchmarks.md -label "scripts/bench.sh${*:+ $*}" "$@"
