#!/usr/bin/env bash
# Set up (first run) and run every check: ruff, mypy (strict on gateway/ and plugins/), pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k streaming
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" "dev"
cd "$root"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; python -m pytest "$@"
