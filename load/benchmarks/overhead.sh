#!/usr/bin/env bash
# One command: install the benchmark's tools (nginx, wrk, redis-server) and the project, then run the
# overhead benchmark. Arguments go to overhead.py (e.g. --duration 20).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null \
    || ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light wrk redis-server >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/overhead.py "$@"
