#!/usr/bin/env bash
# Set up (first run) and run every check: ruff, mypy (strict on gateway/ and plugins/), pytest.
# Installs what the tests need: the Python dev dependencies, redis-server and osls (npm).
# Extra arguments go to pytest, e.g. scripts/test.sh -k streaming
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" "dev"
# The cache tests start a real redis-server on a free port.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "== installing redis-server"
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
# The dashboard test runs headless Chromium; the alert rules are checked with promtool
# (Debian's prometheus package); the rehearsal puts nginx in front of the replicas.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v promtool >/dev/null || missing+=(prometheus)
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The serverless.yml test packages it with osls (pinned in infra/serverless; node >= 20.19).
if [ ! -x "$root/infra/serverless/node_modules/.bin/osls" ]; then
  echo "== installing osls (infra/serverless)"
  npm ci --prefix "$root/infra/serverless" --no-audit --no-fund --loglevel=error >/dev/null
fi
cd "$root"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; python -m pytest "$@"
