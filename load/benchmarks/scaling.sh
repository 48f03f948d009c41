#!/usr/bin/env bash
# One command: install the benchmark's tools (nginx, wrk, redis-server) and the project, then
# measure N = 1 and 2 governed gateway replicas behind the rehearsal's nginx. Arguments go to
# scaling.py (e.g. --duration 20 --rounds 3); writes load/results/scaling.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null \
    || ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light wrk redis-server >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/scaling.py "$@"
