#!/usr/bin/env bash
# Runs every passgate test: go mod tidy -diff, vet, staticcheck, the unit and
# conformance tests on SQLite and PostgreSQL, the end-to-end tests through
# real nginx, Caddy and headless Chromium, and a short run of every fuzz
# target. This script is the only place that installs anything (nginx,
# caddy, chromium, envsubst, PostgreSQL's binaries, as root); the tests
# never do: a missing tool skips its tests with a message, or fails them
# with CI=true (internal/testing/e2etest NeedTool). deploy/kittest, a nested
# module, tests the Helm chart, the Kubernetes examples and a GoReleaser
# snapshot with tools pinned in its go.mod. PostgreSQL comes from
# TEST_DATABASE_URL or 127.0.0.1:5432; with CI=true a missing PostgreSQL
# fails the run. There are no build tags: `go test ./...` runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"

# PostgreSQL runs on these machines from boot; start the local cluster if it
# is installed but stopped.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 -t 3; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "== starting the local PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi

need_apt=()
need_nginx=
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_nginx=1
[ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-dejavu-core)
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
command -v envsubst >/dev/null 2>&1 || need_apt+=(gettext-base)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ] || [ -n "$need_nginx" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    # nginx-light has auth_request; releases without it have it in nginx.
    # (apt-cache knows the package only after the update.)
    if [ -n "$need_nginx" ]; then
      if apt-cache show nginx-light >/dev/null 2>&1; then need_apt+=(nginx-light); else need_apt+=(nginx); fi
    fi
    echo "== installing ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "== missing ${need_apt[*]}${need_nginx:+ nginx} and not root: the tests that need them will skip (or fail with CI=true)"
  fi
fi

# deploy TestTypeScriptSDKThroughNginx and TestStepUpWithTypeScriptClient*
# run the MCP TypeScript SDK clients in interop/ts-sdk with node (>= 20);
# their packages are pinned in package-lock.json. node_modules is
# reinstalled whenever the lock file changed since the last install (a
# copy of it is kept as the stamp).
if command -v npm >/dev/null 2>&1; then
  if ! cmp -s interop/ts-sdk/package-lock.json interop/ts-sdk/node_modules/.passgate-installed-lock.json; then
    echo "== npm ci in interop/ts-sdk"
    (cd interop/ts-sdk && npm ci --no-audit --no-fund && cp package-lock.json node_modules/.passgate-installed-lock.json)
  fi
else
  echo "== npm is missing: the TypeScript SDK tests will skip (or fail with CI=true)"
fi

echo "== go mod tidy -diff"
go mod tidy -diff

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt -l lists:"; echo "$unformatted"; exit 1; fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
go tool staticcheck ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== operator's kit (deploy/kittest: Helm chart, Kubernetes examples, release snapshot)"
# deploy/kittest is a Go module of its own, so passgate's go.mod stays free
# of the Kubernetes, Helm, Istio, Envoy Gateway and GoReleaser dependency
# graphs (`go test ./...` above does not enter it). The tools it pins (helm,
# goreleaser, cyclonedx-gomod) are built once per go.mod/go.sum into
# PASSGATE_KIT_TOOLS, which later runs on the same machine reuse.
kit_start=$SECONDS
kit_sum=$(cat deploy/kittest/go.mod deploy/kittest/go.sum | sha256sum | cut -c1-16)
export PASSGATE_KIT_TOOLS="${PASSGATE_KIT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/passgate/kit-tools/$kit_sum}"
(cd deploy/kittest && go mod tidy -diff && go vet ./... && "$(go -C ../.. tool -n staticcheck)" ./...)
if [ ! -x "$PASSGATE_KIT_TOOLS/helm" ] || [ ! -x "$PASSGATE_KIT_TOOLS/goreleaser" ] || [ ! -x "$PASSGATE_KIT_TOOLS/cyclonedx-gomod" ]; then
  echo "-- building helm, goreleaser and cyclonedx-gomod into $PASSGATE_KIT_TOOLS (once per deploy/kittest/go.sum)"
  rm -rf "$PASSGATE_KIT_TOOLS.tmp"
  go -C deploy/kittest build -o "$PASSGATE_KIT_TOOLS.tmp/" \
    helm.sh/helm/v3/cmd/helm github.com/goreleaser/goreleaser/v2 github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod
  rm -rf "$PASSGATE_KIT_TOOLS" && mv "$PASSGATE_KIT_TOOLS.tmp" "$PASSGATE_KIT_TOOLS"
fi
echo "-- goreleaser check and snapshot build"
PATH="$PASSGATE_KIT_TOOLS:$PATH" goreleaser check
if ! PATH="$PASSGATE_KIT_TOOLS:$PATH" goreleaser release --snapshot --clean --skip=publish,sign,docker >/tmp/passgate-goreleaser.log 2>&1; then
  cat /tmp/passgate-goreleaser.log; exit 1
fi
(cd deploy/kittest && go test -count=1 ./...)
echo "   (operator's kit: $((SECONDS - kit_start))s)"

echo "== fuzz (short)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "-- $pkg $f"
    if ! go test -run '^$' -fuzz "^${f}\$" -fuzztime "${FUZZTIME:-5s}" "$pkg" >/tmp/passgate-fuzz.log 2>&1; then
      # Go 1.26's fuzz coordinator can report a bare "context deadline
      # exceeded" when -fuzztime ends while a worker is mid-input on a busy
      # machine (go.dev/issue/75804, fixed in Go 1.27). That, and only
      # that (no failing input written), is retried once with a count
      # budget, which has no deadline to race; a real finding fails.
      if grep -q 'Failing input written' /tmp/passgate-fuzz.log ||
         ! grep -qx '    context deadline exceeded' /tmp/passgate-fuzz.log; then
        cat /tmp/passgate-fuzz.log; exit 1
      fi
      echo "   (fuzz coordinator deadline race; retrying with a count budget)"
      if ! go test -run '^$' -fuzz "^${f}\$" -fuzztime "${FUZZCOUNT:-2000x}" "$pkg" >/tmp/passgate-fuzz.log 2>&1; then
        cat /tmp/passgate-fuzz.log; exit 1
      fi
    fi
  done
done
echo "== all tests passed"
