#!/usr/bin/env bash
# Regenerates docs/screenshots/*.png: every page (login, login error,
# consent, connected apps, logout, signed out, error, and the second-factor,
# enrolment, recovery-code and account pages) at a phone (375x812)
# and a desktop (1280x800) viewport, light and dark, taken in headless
# Chromium against the real passgate binary. Installs chromium when
# missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/screenshots}"
mkdir -p "$out"
rm -f "$out"/*.png
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! PASSGATE_SCREENSHOTS="$(cd "$out" && pwd)" go test -count=1 -timeout 10m -run '^TestScreenshots$' -v ./internal/testing/browsertest/ >"$log" 2>&1; then
  cat "$log"; exit 1
fi
grep -E '^(--- |ok)|wrote' "$log" || true
n=$(ls "$out"/*.png 2>/dev/null | wc -l)
echo "== $n screenshots in $out"
[ "$n" -gt 0 ]
