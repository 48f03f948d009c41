#!/usr/bin/env bash
# One command: install redis-server and the project, then measure governance accuracy across
# two gateway replicas (RPM limit, budget overshoot). Arguments go to governance.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/governance.py "$@"
