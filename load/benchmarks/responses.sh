#!/usr/bin/env bash
# One command: install the benchmark's tools (nginx, wrk) and the project, then run the
# responses benchmark. Arguments go to responses.py (e.g. --duration 20).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light wrk >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/responses.py "$@"
