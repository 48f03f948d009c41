#!/usr/bin/env bash
# Set up (first run) and run every check: ruff, mypy (strict on gateway/ and plugins/), pytest.
# Installs what the tests need: the Python dev dependencies and redis-server.
# Extra arguments go to pytest, e.g. scripts/test.sh -k streaming
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" "dev"
# The cache tests start a real redis-server on a free port.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "== installing redis-server"
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
cd "$root"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; python -m pytest "$@"
