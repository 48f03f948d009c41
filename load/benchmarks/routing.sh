#!/usr/bin/env bash
# One command: set up the project (with the report extra) and run the routing
# benchmark. Arguments go to routing.py (e.g. --quick, --only kill).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" "report"
cd "$root"
python load/benchmarks/routing.py "$@"
